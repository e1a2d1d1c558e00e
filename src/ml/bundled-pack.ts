import fs from 'node:fs/promises';
import path from 'node:path';
import {
  BUNDLED_INPUT_NAME,
  BUNDLED_INPUT_SIZE,
  convertBundledBackbone,
  EMBEDDING_TAPS,
  EXPLICIT_OUTPUT,
} from './convert/bundled-backbone';
import { loadPack, PackError } from './model-pack';
import { installPackAtomically } from './pack-install';
import type { PackManifest } from './types';

/** Bump whenever the conversion's output changes: cached embeddings are keyed by `bundled@<version>`. */
export const BUNDLED_PACK_VERSION = 1;
const MODEL_FILE = 'model.onnx';

/**
 * Makes sure `<modelsDir>/bundled` holds the converted nsfwjs backbone of the current version,
 * converting and installing it atomically when it does not.
 */
export async function ensureBundledPack(modelsDir: string): Promise<PackManifest> {
  const current = await currentPack(modelsDir);
  if (current) return current;
  let manifest: PackManifest | undefined;
  await installPackAtomically({
    modelsDir,
    name: 'bundled',
    isCurrent: async () => (await currentPack(modelsDir)) !== undefined,
    write: async (staging) => {
      const { model, explicitLabels } = await convertBundledBackbone();
      manifest = bundledManifest(explicitLabels);
      await fs.writeFile(path.join(staging, MODEL_FILE), model);
      await fs.writeFile(path.join(staging, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    },
  });
  return (await currentPack(modelsDir)) ?? manifest!;
}

async function currentPack(modelsDir: string): Promise<PackManifest | undefined> {
  try {
    const { manifest } = await loadPack(modelsDir, 'bundled');
    return manifest.version === BUNDLED_PACK_VERSION ? manifest : undefined;
  } catch (error) {
    if (error instanceof PackError) return undefined;
    throw error;
  }
}

function bundledManifest(explicitLabels: string[]): PackManifest {
  return {
    id: 'bundled',
    version: BUNDLED_PACK_VERSION,
    model: MODEL_FILE,
    input: { name: BUNDLED_INPUT_NAME, size: BUNDLED_INPUT_SIZE, mean: [0, 0, 0], std: [1, 1, 1] },
    embedding: {
      outputs: EMBEDDING_TAPS.map((tap) => tap.output),
      dim: EMBEDDING_TAPS.reduce((sum, tap) => sum + tap.dim, 0),
    },
    heads: { explicit: { output: EXPLICIT_OUTPUT, labels: explicitLabels } },
  };
}
