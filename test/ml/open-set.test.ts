import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { classImages, noiseImage, solidColorJpeg, textImage } from '../../fixtures/images';
import { ImageDecodeError } from '../../src/ml/decode-image';
import { ensureDetectorPack } from '../../src/ml/detector/detector-pack';
import { Embedder } from '../../src/ml/embedder';
import { scoreHead, trainHead, type TrainedHead } from '../../src/ml/heads';
import { loadPack } from '../../src/ml/model-pack';
import {
  BANK_MANIFEST,
  bankManifestSchema,
  bankRowBytes,
  loadNegativeBank,
  NEGATIVE_BANK_DIR,
  projectRoot,
  SHIPPABLE_LICENCE,
  trainingBank,
  type NegativeBank,
} from '../../src/ml/open-set/negative-bank';
import type { ImageInput } from '../../src/ml/types';
import { darknetPhotosInstalled, PHOTOS } from '../support/darknet-photos';

const modelsDir = process.env.MODELS_DIR ?? path.resolve(__dirname, '..', '..', 'models');
const hasPhotos = darknetPhotosInstalled();

let embedder: Embedder;
let bank: NegativeBank;

async function embed(images: ImageInput[]): Promise<Float32Array[]> {
  return (await embedder.analyze(images)).map((a) => {
    if (a instanceof ImageDecodeError) throw a;
    return a.embedding;
  });
}

const named = (buffers: Buffer[], prefix: string): ImageInput[] =>
  buffers.map((bytes, i) => ({ name: `${prefix}-${i}.jpg`, bytes }));

beforeAll(async () => {
  embedder = await Embedder.create(await loadPack(modelsDir, 'bundled'), {
    threads: 1,
    detector: await ensureDetectorPack(modelsDir),
  });
  bank = loadNegativeBank(embedder.packKey)!;
});
afterAll(async () => {
  await embedder?.close();
});

describe('the shipped open-set bank', () => {
  it('is built for the embedding the service runs (rebuild it with npm run build:negative-bank when this fails)', () => {
    expect(bank).toBeDefined();
    expect(bank.dim).toBe(embedder.dim);
    for (const embedding of bank.embeddings) expect(Math.hypot(...embedding)).toBeCloseTo(1, 2);
  });

  it('holds at least 2,000 real images of many packages, and the vectors file has exactly one row per manifest item', () => {
    const dir = path.join(projectRoot(), NEGATIVE_BANK_DIR);
    const manifest = bankManifestSchema.parse(JSON.parse(fs.readFileSync(path.join(dir, BANK_MANIFEST), 'utf8')));
    expect(manifest.packKey).toBe(embedder.packKey);
    const rows = manifest.photos.length + manifest.synthetic.length;
    expect(fs.statSync(path.join(dir, manifest.vectors)).size).toBe(
      rows * bankRowBytes(manifest.encoding, manifest.dim),
    );
    expect(bank.embeddings).toHaveLength(rows);
    for (const field of [bank.sources, bank.variants, bank.packages, bank.kinds]) expect(field).toHaveLength(rows);
    const real = bank.variants.filter((v) => v === 'original').length;
    expect(real).toBe(manifest.photos.length);
    expect(real).toBeGreaterThanOrEqual(2000);
    expect(new Set(bank.packages).size).toBeGreaterThanOrEqual(5);
    expect(new Set(bank.kinds)).toEqual(new Set(['photo', 'drawing', 'figure']));
    // A synthetic copy carries its original's source, so leaving a source out leaves its copies out too.
    manifest.synthetic.forEach(([photo, variant], i) => {
      expect(bank.sources[manifest.photos.length + i]).toBe(manifest.photos[photo].source);
      expect(bank.variants[manifest.photos.length + i]).toBe(variant);
    });
  });

  it('is found by the compiled build too, as npm start runs it (dist/ holds a package.json of its own but no assets)', () => {
    const compiled = path.join(projectRoot(), 'dist', 'src', 'ml', 'open-set', 'negative-bank.js');
    // npm test compiles to dist/ before jest runs.
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        `const b = require(${JSON.stringify(compiled)}).loadNegativeBank(${JSON.stringify(embedder.packKey)}); console.log(b ? b.embeddings.length : 0)`,
      ],
      { encoding: 'utf8' },
    );
    expect(Number(out.trim())).toBe(bank.embeddings.length);
  });

  it('lists every photo with a licence that lets the project ship derived vectors, and NOTICE names each', () => {
    const dir = path.join(projectRoot(), NEGATIVE_BANK_DIR);
    const manifest = bankManifestSchema.parse(JSON.parse(fs.readFileSync(path.join(dir, BANK_MANIFEST), 'utf8')));
    const notice = fs.readFileSync(path.join(projectRoot(), 'NOTICE'), 'utf8');
    for (const photo of manifest.photos) {
      expect(photo.licence).toMatch(SHIPPABLE_LICENCE);
      expect(photo.licence).not.toMatch(/sa|gpl|gfdl/i);
      expect(notice).toContain(photo.source);
    }
    expect(loadNegativeBank('imagenet@1+centernet@2')).toBeUndefined(); // another embedding: no bank rather than a wrong one
  });
});

describe('a classifier of red circles and blue squares, trained with the bank and the k-NN gate', () => {
  let head: TrainedHead;
  let heldOut: { circles: Float32Array[]; squares: Float32Array[] };

  beforeAll(async () => {
    const [circles, squares, heldCircles, heldSquares] = await Promise.all([
      classImages('red-circles', 20, 51).then((b) => embed(named(b, 'circle'))),
      classImages('blue-squares', 20, 52).then((b) => embed(named(b, 'square'))),
      classImages('red-circles', 10, 61).then((b) => embed(named(b, 'held-circle'))),
      classImages('blue-squares', 10, 62).then((b) => embed(named(b, 'held-square'))),
    ]);
    heldOut = { circles: heldCircles, squares: heldSquares };
    head = await trainHead(
      {
        classes: ['circles', 'squares'],
        embeddings: [...circles, ...squares],
        positives: [...circles.map(() => [0]), ...squares.map(() => [1])],
        implicitNegatives: trainingBank(bank).embeddings,
      },
      { packKey: embedder.packKey, threads: 1 },
    );
  });

  it('still recognises held-out images of its classes', () => {
    const own = [
      ...heldOut.circles.map((e) => scoreHead(head, e)[0]),
      ...heldOut.squares.map((e) => scoreHead(head, e)[1]),
    ];
    expect(own.filter((score) => score >= 0.5).length / own.length).toBeGreaterThanOrEqual(0.9);
    // Evaluation counts the user's examples only, not the bank.
    expect(head.evaluation.examples).toBe(40);
  });

  (hasPhotos ? it : it.skip)('scores real photos of other things below 0.5', async () => {
    const photos = fs
      .readdirSync(PHOTOS)
      .filter((f) => f.endsWith('.jpg'))
      .map((f) => ({ name: f, bytes: fs.readFileSync(path.join(PHOTOS, f)) }));
    expect(photos.length).toBeGreaterThanOrEqual(7);
    const yes = (await embed(photos)).flatMap((embedding, i) =>
      scoreHead(head, embedding).flatMap((score, c) =>
        score < 0.5 ? [] : [`${photos[i].name}: ${head.classes[c]} ${score}`],
      ),
    );
    expect(yes).toEqual([]);
  });

  it('gives finite scores below 0.5 to bad inputs: smaller than the input, a 20:1 panorama, a greyscale scan, an all-black frame, random noise', async () => {
    const stripe = await sharp({
      create: { width: 2000, height: 100, channels: 3, background: { r: 90, g: 140, b: 200 } },
    })
      .composite([{ input: await solidColorJpeg({ r: 40, g: 120, b: 40 }, 2000, 40), top: 60, left: 0 }])
      .jpeg()
      .toBuffer();
    const scan = await sharp(await textImage({ text: 'Invoice 2026', size: 600 }))
      .greyscale()
      .jpeg()
      .toBuffer();
    const inputs = [
      {
        name: 'tiny.png',
        bytes: await sharp({ create: { width: 12, height: 9, channels: 3, background: { r: 200, g: 180, b: 40 } } })
          .png()
          .toBuffer(),
      },
      { name: 'panorama.jpg', bytes: stripe },
      { name: 'scan.jpg', bytes: scan },
      { name: 'black.jpg', bytes: await solidColorJpeg({ r: 0, g: 0, b: 0 }, 640, 480) },
      { name: 'noise.png', bytes: await noiseImage({ size: 320, seed: 9 }) },
    ];
    const wrong = (await embed(inputs)).flatMap((embedding, i) =>
      scoreHead(head, embedding).flatMap((score, c) =>
        Number.isFinite(score) && score < 0.5 ? [] : [`${inputs[i].name}: ${head.classes[c]} ${score}`],
      ),
    );
    expect(wrong).toEqual([]);
  });
});

describe('a classifier whose classes are unusual: photos of text', () => {
  const WORDS = [
    'Invoice',
    'Receipt',
    'Total due',
    'Order 1042',
    'Page 3',
    'Summary',
    'Notice',
    'Agenda',
    'Minutes',
    'Budget',
  ];
  const pages = (count: number, offset: number, dark: boolean) =>
    Promise.all(
      Array.from({ length: count }, (_, i) =>
        textImage({
          text: `${WORDS[(i + offset) % WORDS.length]} ${2026 + i}`,
          size: 200 + ((i * 37) % 120),
          fg: dark ? { r: 245, g: 245, b: 235 } : { r: 10 + i, g: 10, b: 30 },
          bg: dark ? { r: 20, g: 30 + 2 * i, b: 70 } : { r: 255, g: 252 - i, b: 245 },
          format: 'jpeg',
        }),
      ),
    );

  it('still says yes to its own held-out images (recall ≥ 0.9) with the bank and every open-set mechanism on', async () => {
    const [light, dark, heldLight, heldDark] = await Promise.all([
      pages(12, 0, false).then((b) => embed(named(b, 'light'))),
      pages(12, 0, true).then((b) => embed(named(b, 'dark'))),
      pages(10, 5, false).then((b) => embed(named(b, 'held-light'))),
      pages(10, 5, true).then((b) => embed(named(b, 'held-dark'))),
    ]);
    const head = await trainHead(
      {
        classes: ['printed pages', 'dark slides'],
        embeddings: [...light, ...dark],
        positives: [...light.map(() => [0]), ...dark.map(() => [1])],
        implicitNegatives: trainingBank(bank).embeddings,
      },
      { packKey: embedder.packKey, threads: 1 },
    );
    const own = [...heldLight.map((e) => scoreHead(head, e)[0]), ...heldDark.map((e) => scoreHead(head, e)[1])];
    expect(own.filter((score) => score >= 0.5).length / own.length).toBeGreaterThanOrEqual(0.9);
    expect(head.evaluation.open_set!.recall).toBeGreaterThanOrEqual(0.9);
  });
});
