/**
 * build:negative-bank — rebuilds assets/negative-bank (the open-set bank, see src/ml/open-set/negative-bank.ts)
 * for the current embedding, and NOTICE's list of its photos. Run it whenever the pack key changes (a test
 * fails until then). Needs apt-get (Debian packages are downloaded and unpacked into a temp folder, not
 * installed); only derived float16 vectors are written, never a photo.
 *
 * Photos: GCompris activity photos whose README says public domain, CC0 or CC-BY (attribution in NOTICE),
 * and scikit-image's sample photos that are public domain or CC0.
 */
import fs from 'node:fs';
import path from 'node:path';
import { gcomprisPhotos } from '../bench/lib/gcompris';
import { unpackDebianPackage, unpackedVersion } from '../bench/lib/debian-package';
import { modelsDir } from '../bench/lib/repo';
import { createLogger } from '../src/logger';
import { openEmbedder } from '../src/ml/open-embedder';
import { ImageDecodeError } from '../src/ml/decode-image';
import { encodeFloat16 } from '../src/ml/open-set/float16';
import {
  BANK_MANIFEST,
  BANK_VECTORS,
  NEGATIVE_BANK_DIR,
  projectRoot,
  type BankManifest,
} from '../src/ml/open-set/negative-bank';

/** Licences that let the project ship vectors derived from a photo (CC-BY with the attribution in NOTICE). */
const SHIPPABLE = /^(public domain|cc0-1\.0|cc-by[- ]\d\.\d)$/i;

/** scikit-image 0.19 sample photos and the licence its data module states for each. */
const SKIMAGE_PHOTOS: Record<string, { licence: string; copyright: string }> = {
  'astronaut.png': { licence: 'Public Domain', copyright: 'NASA' },
  'camera.png': { licence: 'CC0-1.0', copyright: 'Lav Varshney' },
  'chelsea.png': { licence: 'CC0-1.0', copyright: 'Stefan van der Walt' },
  'coffee.png': { licence: 'CC0-1.0', copyright: 'Rachel Michetti' },
  'rocket.jpg': { licence: 'Public Domain', copyright: 'SpaceX' },
  'hubble_deep_field.jpg': { licence: 'Public Domain', copyright: 'NASA' },
  'coins.png': { licence: 'Public Domain', copyright: 'Walters Art Museum' },
  'brick.png': { licence: 'CC0-1.0', copyright: 'CC0Textures' },
  'grass.png': { licence: 'CC0-1.0', copyright: 'CC0Textures' },
  'gravel.png': { licence: 'CC0-1.0', copyright: 'CC0Textures' },
};

const NOTICE_BEGIN = '<!-- negative-bank:begin -->';
const NOTICE_END = '<!-- negative-bank:end -->';

interface SourcePhoto {
  manifest: BankManifest['photos'][number];
  bytes: Buffer;
}

function collectPhotos(): SourcePhoto[] {
  const photos: SourcePhoto[] = [];
  const gcompris = `gcompris-qt-data`;
  for (const photo of gcomprisPhotos()) {
    if (!SHIPPABLE.test(photo.licence)) continue;
    photos.push({
      manifest: {
        source: `${gcompris}:${photo.path}`,
        licence: photo.licence,
        copyright: photo.copyright,
        origin: photo.origin,
      },
      bytes: photo.read(),
    });
  }
  const skimageData = path.join(
    unpackDebianPackage('python3-skimage'),
    'usr',
    'lib',
    'python3',
    'dist-packages',
    'skimage',
    'data',
  );
  for (const [file, { licence, copyright }] of Object.entries(SKIMAGE_PHOTOS)) {
    photos.push({
      manifest: { source: `python3-skimage:skimage/data/${file}`, licence, copyright },
      bytes: fs.readFileSync(path.join(skimageData, file)),
    });
  }
  return photos;
}

function noticeSection(manifest: BankManifest): string {
  const packages = `gcompris-qt-data ${unpackedVersion('gcompris-qt-data')}, python3-skimage ${unpackedVersion('python3-skimage')}`;
  const lines = manifest.photos.map(
    (p) => `- ${p.source} — ${p.licence}${p.copyright ? `, © ${p.copyright}` : ''}${p.origin ? ` (${p.origin})` : ''}`,
  );
  return [
    NOTICE_BEGIN,
    'Open-set negative bank (`assets/negative-bank/`)',
    '------------------------------------------------',
    '',
    `The file bank.f16 holds one float16 embedding (a vector of ${manifest.dim} numbers computed by this service's`,
    `networks, pack ${manifest.packKey}) of each photo below; no photo is part of this repository. The photos come from the`,
    `Debian packages ${packages}, under the licences stated there for each file:`,
    '',
    ...lines,
    NOTICE_END,
  ].join('\n');
}

async function main(): Promise<void> {
  const photos = collectPhotos();
  const embedder = await openEmbedder(modelsDir(), 2, createLogger('warn', 'bank'));
  const analyses = await embedder.analyze(photos.map((p) => ({ name: p.manifest.source, bytes: p.bytes })));
  await embedder.close();
  const kept: SourcePhoto[] = [];
  const vectors: Float32Array[] = [];
  analyses.forEach((analysis, i) => {
    if (analysis instanceof ImageDecodeError) console.warn(`left out: ${analysis.message}`);
    else {
      kept.push(photos[i]);
      vectors.push(analysis.embedding);
    }
  });
  const manifest: BankManifest = {
    format: 1,
    packKey: embedder.packKey,
    dim: embedder.dim,
    photos: kept.map((p) => p.manifest),
  };
  const dir = path.join(projectRoot(), NEGATIVE_BANK_DIR);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, BANK_VECTORS), Buffer.concat(vectors.map((v) => encodeFloat16(v))));
  fs.writeFileSync(path.join(dir, BANK_MANIFEST), `${JSON.stringify(manifest, null, 1)}\n`);

  const noticePath = path.join(projectRoot(), 'NOTICE');
  const notice = fs.readFileSync(noticePath, 'utf8');
  const section = noticeSection(manifest);
  const begin = notice.indexOf(NOTICE_BEGIN);
  const updated =
    begin >= 0
      ? notice.slice(0, begin) + section + notice.slice(notice.indexOf(NOTICE_END) + NOTICE_END.length)
      : `${notice.trimEnd()}\n\n${section}\n`;
  fs.writeFileSync(noticePath, updated);
  console.log(
    JSON.stringify({
      script: 'build-negative-bank',
      packKey: manifest.packKey,
      dim: manifest.dim,
      photos: kept.length,
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
