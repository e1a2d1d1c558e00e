/**
 * build:negative-bank — rebuilds assets/negative-bank (the open-set bank, see src/ml/open-set/negative-bank.ts)
 * for the current embedding, and NOTICE's list of its images. Run it whenever the pack key changes (a test
 * fails until then). Needs apt-get (Debian packages are downloaded and unpacked into a temp folder, not
 * installed); only derived int8 vectors are written, never an image. Reproducible: each package's version
 * is pinned below (the build fails when apt offers another one), images are picked in sorted path order
 * and the coreset is deterministic.
 *
 * Images (only licences that let us ship derived vectors: public domain, CC0, CC-BY with the attribution in
 * NOTICE, BSD/Apache; share-alike and GPL images are left out):
 * - gcompris-qt-data: activity photos whose README says public domain, CC0 or CC-BY;
 * - python3-skimage: its public-domain and CC0 sample photos;
 * - opencv-doc (Apache-2.0 and BSD-3-Clause): the tutorials' figures and screenshots (its sample photos are
 *   left to the benchmarks as unrelated test photos);
 * - python-sklearn-doc, python-skimage-doc (BSD-3-Clause): the documentation's plots and processed photos;
 * - openclipart-png (public domain): drawings, at most OPENCLIPART_PER_FOLDER of each folder.
 *
 * Synthetic copies (BANK_VARIANTS: grey 28×28, greyscale, 48 px, 2× centre crop; the open-set study's fix
 * (a)) of every image are embedded too, and a coreset of them is kept: greedy k-centre (farthest-first)
 * selection, each pick the copy farthest from the real images and the copies already kept, so the budget
 * covers the regions the real images leave empty (Sener & Savarese 2018, "Active learning for convolutional
 * neural networks: a core-set approach").
 *
 * Synthetic copies are off by default: measured with bench:accuracy (01:00 UTC 2026-12-07, load 20–34), 1,600
 * of them on top of the 2,602 real images cost GCompris-5 top-1 0.938 → 0.929 and recall 0.925 → 0.921 and trained
 * 60 % more rows, for open-set rates that the real images alone already bring down (thumbnails 43 % → 0 %).
 *
 * Flags: --synthetic <n> (coreset size, default 0: none; 1600 was measured), --copies <k> (copies made of each image,
 * default 1: image i gets variants i·k … i·k+k−1 of BANK_VARIANTS, cycling, so each variant covers a quarter
 * of the images; 4 makes every copy of every image, at four times the embedding time), --encoding int8|float16|float32 (default
 * int8), --out <dir> (default assets/negative-bank; NOTICE is only rewritten for the default).
 * Embeddings are cached by image hash under the temp folder, so a rebuild with other flags takes seconds.
 * --order-only recomputes only the manifest's farthest-first `coreset` order from the vectors already
 * stored (training uses a prefix of it: trainingBank), without downloading or embedding anything.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { gcomprisPhotos } from '../bench/lib/gcompris';
import { unpackDebianPackage, unpackedVersion } from '../bench/lib/debian-package';
import { modelsDir } from '../bench/lib/repo';
import { createLogger } from '../src/logger';
import { openEmbedder } from '../src/ml/open-embedder';
import { ImageDecodeError } from '../src/ml/decode-image';
import { encodeFloat16 } from '../src/ml/open-set/float16';
import { encodeInt8Vectors } from '../src/ml/open-set/int8';
import {
  BANK_ENCODINGS,
  BANK_MANIFEST,
  BANK_VARIANTS,
  NEGATIVE_BANK_DIR,
  SHIPPABLE_LICENCE,
  bankManifestSchema,
  loadNegativeBank,
  projectRoot,
  type BankEncoding,
  type BankManifest,
} from '../src/ml/open-set/negative-bank';
import { farthestFirstOrder } from '../src/ml/open-set/coreset';
import type { Embedder } from '../src/ml/embedder';

/** The Debian (bookworm) package versions the shipped bank was built from. */
const PACKAGES = {
  'gcompris-qt-data': '3.1-2',
  'python3-skimage': '0.19.3-8',
  'opencv-doc': '4.6.0+dfsg-12',
  'python-sklearn-doc': '1.2.1+dfsg-1',
  'python-skimage-doc': '0.19.3-8',
  'openclipart-png': '1:0.18+dfsg-19',
} as const;
type PackageName = keyof typeof PACKAGES;

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

/** Doxygen's own pictures in opencv-doc's HTML (class graphs, navigation icons, rendered formulas). */
const DOXYGEN_CHROME =
  /^(struct|class|namespace|inherit|form_|dir_|group_|union|bc_|nav|tab|sync_|splitbar|closed|open|doc|folder|arrow|mag|bdwn|ftv2|search)|(graph|__incl|__dep_incl|_coll_graph|_inherit_graph)/i;
/** Openclipart folders of abstract fills and UI chrome rather than pictures of things. */
const OPENCLIPART_SKIPPED = /^(gradients|patterns|buttons|led|stars|white|borders|backgrounds)$/i;
const OPENCLIPART_PER_FOLDER = 12;
const DOC_FIGURES_MAX = 400;
/** Images smaller than this on a side are icons or glyphs, not pictures. */
const MIN_SIDE = 64;

const NOTICE_BEGIN = '<!-- negative-bank:begin -->';
const NOTICE_END = '<!-- negative-bank:end -->';

type Photo = BankManifest['photos'][number];
interface SourceImage {
  manifest: Photo;
  bytes: Buffer;
}

function unpack(name: PackageName): string {
  const root = unpackDebianPackage(name);
  const version = unpackedVersion(name);
  if (version !== PACKAGES[name]) {
    throw new Error(
      `${name} ${version} is not the pinned ${PACKAGES[name]}: update PACKAGES (and NOTICE) deliberately, or rebuild with the pinned version`,
    );
  }
  return root;
}

function listFiles(dir: string, pattern: RegExp): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((file) => pattern.test(file)).sort();
}

/** Every `step`-th element, so a cap keeps a spread of the sorted list rather than its start. */
function spread<T>(items: T[], max: number): T[] {
  if (items.length <= max) return items;
  return Array.from({ length: max }, (_, i) => items[Math.floor((i * items.length) / max)]);
}

async function bigEnough(bytes: Buffer): Promise<boolean> {
  try {
    const { width = 0, height = 0 } = await sharp(bytes).metadata();
    return Math.min(width, height) >= MIN_SIDE;
  } catch {
    return false;
  }
}

async function collectImages(): Promise<SourceImage[]> {
  const images: SourceImage[] = [];
  const add = (source: string, licence: string, kind: Photo['kind'], topic: string, bytes: Buffer, extra = {}) => {
    if (!SHIPPABLE_LICENCE.test(licence)) return;
    images.push({ manifest: { source, licence, kind, topic, ...extra }, bytes });
  };

  unpack('gcompris-qt-data');
  for (const photo of gcomprisPhotos()) {
    add(
      `gcompris-qt-data:${photo.path}`,
      photo.licence,
      'photo',
      photo.path.split('/').slice(-2, -1)[0],
      photo.read(),
      {
        copyright: photo.copyright,
        origin: photo.origin,
      },
    );
  }

  const skimageData = path.join(unpack('python3-skimage'), 'usr/lib/python3/dist-packages/skimage/data');
  for (const [file, { licence, copyright }] of Object.entries(SKIMAGE_PHOTOS)) {
    add(
      `python3-skimage:skimage/data/${file}`,
      licence,
      'photo',
      'samples',
      fs.readFileSync(path.join(skimageData, file)),
      {
        copyright,
      },
    );
  }

  const opencvLicence = 'Apache-2.0 AND BSD-3-Clause';
  const opencvDoc = path.join(unpack('opencv-doc'), 'usr/share/doc/opencv-doc');
  const tutorialFigures: Array<{ file: string; bytes: Buffer }> = [];
  for (const file of listFiles(path.join(opencvDoc, 'opencv4', 'html'), /\.(jpe?g|png)$/i)) {
    if (DOXYGEN_CHROME.test(path.basename(file)) || file.startsWith('search')) continue;
    const bytes = fs.readFileSync(path.join(opencvDoc, 'opencv4', 'html', file));
    if (await bigEnough(bytes)) tutorialFigures.push({ file, bytes });
  }
  for (const { file, bytes } of spread(tutorialFigures, DOC_FIGURES_MAX)) {
    add(`opencv-doc:opencv4/html/${file}`, opencvLicence, 'figure', 'tutorials', bytes);
  }

  for (const name of ['python-sklearn-doc', 'python-skimage-doc'] as const) {
    const imagesDir = path.join(unpack(name), 'usr/share/doc', name, 'html', '_images');
    const figures: Array<{ file: string; bytes: Buffer }> = [];
    for (const file of listFiles(imagesDir, /\.(jpe?g|png)$/i)) {
      if (/thumb/i.test(file)) continue; // gallery thumbnails repeat the figures
      const bytes = fs.readFileSync(path.join(imagesDir, file));
      if (await bigEnough(bytes)) figures.push({ file, bytes });
    }
    for (const { file, bytes } of spread(figures, DOC_FIGURES_MAX)) {
      add(`${name}:html/_images/${file}`, 'BSD-3-Clause', 'figure', 'documentation', bytes);
    }
  }

  const clipart = path.join(unpack('openclipart-png'), 'usr/share/openclipart/png');
  const byFolder = new Map<string, string[]>();
  for (const file of listFiles(clipart, /\.png$/i)) {
    const folder = path.dirname(file);
    if (folder.split('/').some((part) => OPENCLIPART_SKIPPED.test(part))) continue;
    byFolder.set(folder, [...(byFolder.get(folder) ?? []), file]);
  }
  for (const [folder, files] of [...byFolder].sort(([a], [b]) => a.localeCompare(b))) {
    for (const file of spread(files, OPENCLIPART_PER_FOLDER)) {
      const bytes = fs.readFileSync(path.join(clipart, file));
      if (await bigEnough(bytes)) add(`openclipart-png:png/${file}`, 'Public Domain', 'drawing', folder, bytes);
    }
  }

  // The same bytes under two names count once.
  const seen = new Set<string>();
  return images.filter((image) => {
    const hash = createHash('sha256').update(image.bytes).digest('hex');
    if (seen.has(hash)) return false;
    seen.add(hash);
    return true;
  });
}

/** A synthetic copy of an image (see BANK_VARIANTS), as PNG bytes. */
async function syntheticCopy(bytes: Buffer, variant: (typeof BANK_VARIANTS)[number]): Promise<Buffer> {
  const image = sharp(bytes).rotate().flatten({ background: '#ffffff' });
  switch (variant) {
    case 'grey28':
      return image.resize(28, 28, { fit: 'fill' }).greyscale().png().toBuffer();
    case 'greyscale':
      return image.resize(640, 640, { fit: 'inside', withoutEnlargement: true }).greyscale().png().toBuffer();
    case 'low48':
      return image.resize(48, 48, { fit: 'inside' }).png().toBuffer();
    case 'zoom2': {
      const { width = 0, height = 0 } = await sharp(bytes).rotate().metadata();
      const [w, h] = [Math.max(1, Math.round(width / 2)), Math.max(1, Math.round(height / 2))];
      return image
        .extract({ left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h })
        .resize(w * 2, h * 2)
        .png()
        .toBuffer();
    }
  }
}

/**
 * The embeddings of the images (undefined for one that does not decode), cached on disk by the hash of
 * the bytes and the pack key, so rebuilds only embed what changed.
 */
async function embedAll(embedder: Embedder, images: Array<{ name: string; bytes: Buffer }>, label: string) {
  const cacheDir = path.join(os.tmpdir(), 'wvr-negative-bank-cache', embedder.packKey.replace(/[^\w.@+-]/g, '_'));
  fs.mkdirSync(cacheDir, { recursive: true });
  const cachePath = (bytes: Buffer) => path.join(cacheDir, createHash('sha256').update(bytes).digest('hex'));
  const out = new Array<Float32Array | undefined>(images.length);
  const todo: number[] = [];
  images.forEach((image, i) => {
    const file = cachePath(image.bytes);
    if (fs.existsSync(file)) {
      const cached = fs.readFileSync(file);
      out[i] = new Float32Array(Uint8Array.from(cached).buffer);
    } else todo.push(i);
  });
  const started = Date.now();
  for (let start = 0; start < todo.length; start += 64) {
    const chunk = todo.slice(start, start + 64);
    const analyses = await embedder.analyze(chunk.map((i) => images[i]));
    analyses.forEach((analysis, k) => {
      const i = chunk[k];
      if (analysis instanceof ImageDecodeError) {
        console.warn(`left out: ${analysis.message}`);
        return;
      }
      out[i] = analysis.embedding;
      const { buffer, byteOffset, byteLength } = analysis.embedding;
      fs.writeFileSync(cachePath(images[i].bytes), Buffer.from(buffer, byteOffset, byteLength));
    });
    const done = Math.min(todo.length, start + 64);
    console.warn(
      `${label}: embedded ${done}/${todo.length} (${(done / ((Date.now() - started) / 1000)).toFixed(1)}/s)`,
    );
  }
  return out;
}

function dot(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i += 1) sum += a[i] * b[i];
  return sum;
}

/**
 * Greedy k-centre: `budget` indices of `candidates`, each the one whose nearest neighbour among `fixed`
 * and the picks so far is farthest (cosine distance of unit vectors). Ties go to the lower index.
 */
function farthestFirst(candidates: Float32Array[], fixed: Float32Array[], budget: number): number[] {
  const nearest = candidates.map((c) => fixed.reduce((best, f) => Math.max(best, dot(c, f)), -Infinity));
  const picked: number[] = [];
  const taken = new Set<number>();
  while (picked.length < Math.min(budget, candidates.length)) {
    let best = -1;
    for (let i = 0; i < candidates.length; i += 1) {
      if (!taken.has(i) && (best < 0 || nearest[i] < nearest[best])) best = i;
    }
    picked.push(best);
    taken.add(best);
    for (let i = 0; i < candidates.length; i += 1) {
      if (!taken.has(i)) nearest[i] = Math.max(nearest[i], dot(candidates[i], candidates[best]));
    }
  }
  return picked;
}

function encodeRows(rows: Float32Array[], encoding: BankEncoding, dim: number): Buffer {
  if (encoding === 'int8') return encodeInt8Vectors(rows, dim);
  if (encoding === 'float16') return Buffer.concat(rows.map((row) => encodeFloat16(row)));
  return Buffer.concat(rows.map((row) => Buffer.from(row.buffer, row.byteOffset, row.byteLength)));
}

function noticeSection(manifest: BankManifest, vectorsFile: string): string {
  const packages = Object.entries(PACKAGES)
    .map(([name, version]) => `${name} ${version}`)
    .join(', ');
  const lines = manifest.photos.map(
    (p) => `- ${p.source} — ${p.licence}${p.copyright ? `, © ${p.copyright}` : ''}${p.origin ? ` (${p.origin})` : ''}`,
  );
  return [
    NOTICE_BEGIN,
    'Open-set negative bank (`assets/negative-bank/`)',
    '------------------------------------------------',
    '',
    `The file ${vectorsFile} holds ${manifest.encoding} embeddings (vectors of ${manifest.dim} numbers computed by this`,
    `service's networks, pack ${manifest.packKey}) of each image below${
      manifest.synthetic.length
        ? ` and of ${manifest.synthetic.length} synthetic copies of some of them (shrunk, greyscale, zoomed)`
        : ''
    };`,
    'no image is part of this repository, only these vectors.',
    `The images come from the Debian packages ${packages},`,
    'under the licences stated there for each file. Only images in the public domain or under CC0, CC-BY,',
    'BSD or Apache licences were used; share-alike and GPL images were left out. openclipart-png: Creative',
    'Commons public-domain dedication; opencv-doc: Apache-2.0 and BSD-3-Clause (Copyright the OpenCV authors);',
    'python-sklearn-doc: BSD-3-Clause (Copyright the scikit-learn developers); python-skimage-doc and',
    'python3-skimage: BSD-3-Clause (Copyright the scikit-image team) unless stated below.',
    '',
    ...lines,
    NOTICE_END,
  ].join('\n');
}

/** The manifest as JSON with one image or synthetic item a line: compact, and diffs show what changed. */
function manifestText(manifest: BankManifest): string {
  const { photos, synthetic, coreset, ...head } = manifest;
  const list = (items: unknown[]) => `[\n${items.map((item) => JSON.stringify(item)).join(',\n')}\n]`;
  const order = coreset ? `,"coreset":${JSON.stringify(coreset)}` : '';
  return `${JSON.stringify(head).slice(0, -1)},"photos":${list(photos)},"synthetic":${list(synthetic)}${order}}\n`;
}

function flag(args: string[], name: string): string | undefined {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
}

/** The manifest with the farthest-first order of the rows as stored (decoded as the service loads them). */
async function withCoreset(manifest: BankManifest, dir: string): Promise<BankManifest> {
  const bank = loadNegativeBank(manifest.packKey, dir);
  if (!bank) throw new Error(`${dir}: no bank for ${manifest.packKey}`);
  return { ...manifest, coreset: await farthestFirstOrder(bank.embeddings, 2) };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--order-only')) {
    const dir = path.join(projectRoot(), NEGATIVE_BANK_DIR);
    const manifestPath = path.join(dir, BANK_MANIFEST);
    // Checked, but written back as read (the schema's parse would reorder each photo's keys).
    const stored = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as BankManifest;
    bankManifestSchema.parse(stored);
    fs.writeFileSync(manifestPath, manifestText(await withCoreset(stored, dir)));
    console.log(JSON.stringify({ script: 'build-negative-bank', order_only: true, items: stored.photos.length }));
    return;
  }
  const budget = Number(flag(args, '--synthetic') ?? 0);
  const perImage = Math.min(BANK_VARIANTS.length, Number(flag(args, '--copies') ?? 1));
  const encoding = (flag(args, '--encoding') ?? 'int8') as BankEncoding;
  if (!BANK_ENCODINGS.includes(encoding)) throw new Error(`--encoding: one of ${BANK_ENCODINGS.join(', ')}`);
  const outArg = flag(args, '--out');
  const dir = outArg ? path.resolve(outArg) : path.join(projectRoot(), NEGATIVE_BANK_DIR);
  const started = Date.now();

  const images = await collectImages();
  const embedder = await openEmbedder(modelsDir(), 2, createLogger('warn', 'bank'));
  const embedded = await embedAll(
    embedder,
    images.map((image) => ({ name: image.manifest.source, bytes: image.bytes })),
    'images',
  );
  const kept = images.map((image, i) => ({ image, embedding: embedded[i] })).filter((item) => item.embedding);
  const copies: Array<{ photo: number; variant: (typeof BANK_VARIANTS)[number]; name: string; bytes: Buffer }> = [];
  if (budget > 0) {
    for (const [photo, { image }] of kept.entries()) {
      for (let j = 0; j < perImage; j += 1) {
        const variant = BANK_VARIANTS[(photo * perImage + j) % BANK_VARIANTS.length];
        try {
          copies.push({
            photo,
            variant,
            name: `${image.manifest.source}#${variant}`,
            bytes: await syntheticCopy(image.bytes, variant),
          });
        } catch (error) {
          console.warn(`no ${variant} copy of ${image.manifest.source}: ${(error as Error).message}`);
        }
      }
    }
  }
  const copyEmbeddings = await embedAll(embedder, copies, 'synthetic copies');
  await embedder.close();
  const candidates = copies.map((copy, i) => ({ ...copy, embedding: copyEmbeddings[i] })).filter((c) => c.embedding);
  const picks = farthestFirst(
    candidates.map((c) => c.embedding!),
    kept.map((k) => k.embedding!),
    budget,
  ).sort((a, b) => a - b);

  const manifest: BankManifest = {
    format: 2,
    packKey: embedder.packKey,
    dim: embedder.dim,
    encoding,
    vectors: `bank.${encoding === 'int8' ? 'i8' : encoding === 'float16' ? 'f16' : 'f32'}`,
    photos: kept.map((k) => k.image.manifest),
    synthetic: picks.map((i) => [candidates[i].photo, candidates[i].variant]),
  };
  const rows = [...kept.map((k) => k.embedding!), ...picks.map((i) => candidates[i].embedding!)];
  fs.mkdirSync(dir, { recursive: true });
  for (const file of fs.readdirSync(dir)) if (/^bank\.(i8|f16|f32)$/.test(file)) fs.rmSync(path.join(dir, file));
  fs.writeFileSync(path.join(dir, manifest.vectors), encodeRows(rows, encoding, manifest.dim));
  fs.writeFileSync(path.join(dir, BANK_MANIFEST), manifestText(manifest));
  // The order is computed from the rows as written (int8), as the service decodes them.
  fs.writeFileSync(path.join(dir, BANK_MANIFEST), manifestText(await withCoreset(manifest, dir)));

  if (!outArg) {
    const noticePath = path.join(projectRoot(), 'NOTICE');
    const notice = fs.readFileSync(noticePath, 'utf8');
    const section = noticeSection(manifest, manifest.vectors);
    const begin = notice.indexOf(NOTICE_BEGIN);
    const updated =
      begin >= 0
        ? notice.slice(0, begin) + section + notice.slice(notice.indexOf(NOTICE_END) + NOTICE_END.length)
        : `${notice.trimEnd()}\n\n${section}\n`;
    fs.writeFileSync(noticePath, updated);
  }
  const count = (key: (p: Photo) => string) =>
    manifest.photos.reduce<Record<string, number>>((acc, p) => ({ ...acc, [key(p)]: (acc[key(p)] ?? 0) + 1 }), {});
  console.log(
    JSON.stringify({
      script: 'build-negative-bank',
      packKey: manifest.packKey,
      dim: manifest.dim,
      encoding,
      images: manifest.photos.length,
      synthetic: manifest.synthetic.length,
      synthetic_candidates: candidates.length,
      copies_per_image: perImage,
      by_kind: count((p) => p.kind),
      by_package: count((p) => p.source.split(':')[0]),
      by_licence: count((p) => p.licence),
      bytes: fs.statSync(path.join(dir, manifest.vectors)).size + fs.statSync(path.join(dir, BANK_MANIFEST)).size,
      seconds: Math.round((Date.now() - started) / 1000),
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
