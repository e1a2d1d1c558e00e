import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BUNDLED_PACK_VERSION, ensureBundledPack } from '../../src/ml/bundled-pack';
import { DETECTOR_PACK_VERSION, ensureDetectorPack } from '../../src/ml/detector/detector-pack';

/**
 * Cached embeddings and trained heads record the pack key `bundled@<version>` and trust it to name
 * one model for ever. This tripwire holds the SHA-256 of the converted model for each version: a
 * change of the conversion that forgot to bump BUNDLED_PACK_VERSION fails here, before a cache
 * could serve embeddings of the old model as if they were of the new one.
 */
const MODEL_SHA256_BY_VERSION: Record<number, string> = {
  1: '538e98936bd08506ab510d084c26cc89b2888301574fefd64fba5c337f4304ec',
};

describe('the bundled pack key names one model', () => {
  it('the converted model hashes to the value recorded for its version', async () => {
    const modelsDir = process.env.MODELS_DIR ?? path.resolve(__dirname, '..', '..', 'models');
    const manifest = await ensureBundledPack(modelsDir);
    const bytes = fs.readFileSync(path.join(modelsDir, 'bundled', manifest.model));
    expect(manifest.version).toBe(BUNDLED_PACK_VERSION);
    expect(crypto.createHash('sha256').update(bytes).digest('hex')).toBe(MODEL_SHA256_BY_VERSION[BUNDLED_PACK_VERSION]);
  });
});

/** The same tripwire for the CenterNet pack: its version is part of the embedding's key (`bundled@1+centernet@<version>`). */
const DETECTOR_SHA256_BY_VERSION: Record<number, string> = {
  2: '231069d8c6eae774b5ad6f48cb5924f6365a86ab0ca36ff5e11a29a171870a18',
};

describe('the detector pack key names one model', () => {
  it('the converted model hashes to the value recorded for its version', async () => {
    const modelsDir = process.env.MODELS_DIR ?? path.resolve(__dirname, '..', '..', 'models');
    const pack = await ensureDetectorPack(modelsDir);
    expect(pack.key).toBe(`centernet@${DETECTOR_PACK_VERSION}`);
    const bytes = fs.readFileSync(pack.modelPath);
    expect(crypto.createHash('sha256').update(bytes).digest('hex')).toBe(
      DETECTOR_SHA256_BY_VERSION[DETECTOR_PACK_VERSION],
    );
  });
});
