import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { ImageDecodeError } from '../../src/ml/decode-image';
import { Embedder, type ImageAnalysis } from '../../src/ml/embedder';
import { explicitClasses } from '../../src/ml/explicit-classifier';
import { ensureDetectorPack } from '../../src/ml/detector/detector-pack';
import { loadPack, PackError, type LoadedPack } from '../../src/ml/model-pack';
import type { ImageInput } from '../../src/ml/types';
import type { AnalysisPart } from '../../src/ml/embedder';
import { DARKNET_PHOTO_NAMES, darknetPhoto, darknetPhotosInstalled } from '../support/darknet-photos';

const modelsDir = process.env.MODELS_DIR ?? path.resolve(__dirname, '..', '..', 'models');
const hasDog = darknetPhotosInstalled();
const withDog = hasDog ? it : it.skip;

/** Vertical stripes in two colours. */
function stripesSvg(width: number, height: number, period: number, colors: [string, string]): Buffer {
  const bars = Array.from(
    { length: Math.ceil(width / period) },
    (_, i) => `<rect x="${i * period}" y="0" width="${period / 2}" height="${height}" fill="${colors[i % 2]}"/>`,
  );
  return Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="${colors[1]}"/>${bars.join('')}</svg>`,
  );
}

/** A simple "scene": sky, ground, sun and a house. */
function sceneSvg(width: number, height: number): Buffer {
  return Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 400 300">
    <rect width="400" height="180" fill="#6aaee8"/><rect y="180" width="400" height="120" fill="#3f8f3a"/>
    <circle cx="330" cy="60" r="35" fill="#ffd83a"/><rect x="90" y="120" width="140" height="110" fill="#b5452c"/>
    <polygon points="80,125 160,60 240,125" fill="#5a2a1a"/><rect x="140" y="170" width="35" height="60" fill="#3a2516"/></svg>`);
}

async function png(svg: Buffer): Promise<Buffer> {
  return sharp(svg).png().toBuffer();
}

async function jpeg(svg: Buffer): Promise<Buffer> {
  return sharp(svg).jpeg({ quality: 90 }).toBuffer();
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  for (let i = 0; i < a.length; i += 1) dot += a[i] * b[i];
  return dot; // both are unit vectors
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i += 1) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

function analysis(result: ImageAnalysis | ImageDecodeError): ImageAnalysis {
  if (result instanceof ImageDecodeError) throw result;
  return result;
}

const ALL_PARTS: AnalysisPart[] = ['objects', 'explicit', 'imagenetLogits', 'colors'];

let pack: LoadedPack;
let embedder: Embedder;
let images: ImageInput[];

beforeAll(async () => {
  pack = await loadPack(modelsDir, 'bundled');
  embedder = await Embedder.create(pack, { threads: 1 });
  images = [
    { name: 'stripes.png', bytes: await png(stripesSvg(300, 200, 20, ['#000000', '#ffffff'])) },
    { name: 'scene.jpg', bytes: await jpeg(sceneSvg(640, 480)) },
    { name: 'red-stripes.jpg', bytes: await jpeg(stripesSvg(500, 500, 60, ['#d01010', '#f0f0f0'])) },
    { name: 'scene-small.png', bytes: await png(sceneSvg(200, 150)) },
    { name: 'tall-stripes.png', bytes: await png(stripesSvg(120, 400, 8, ['#1030c0', '#e0e000'])) },
  ];
  if (hasDog) images.push(darknetPhoto('dog'));
});

afterAll(async () => {
  await embedder.close();
});

describe('Embedder on the bundled pack', () => {
  it('gives unit-norm embeddings of the pack dimension, the explicit score, colours and the original size', async () => {
    expect(embedder.dim).toBe(1920);
    expect(embedder.packKey).toBe(`bundled@${pack.manifest.version}`);
    const results = (await embedder.analyze(images, undefined, { parts: ALL_PARTS })).map(analysis);
    expect(results).toHaveLength(images.length);
    for (const result of results) {
      expect(result.embedding).toBeInstanceOf(Float32Array);
      expect(result.embedding).toHaveLength(1920);
      expect(Math.sqrt(cosine(result.embedding, result.embedding))).toBeCloseTo(1, 5);
      expect(result.explicit).toBeGreaterThanOrEqual(0);
      expect(result.explicit).toBeLessThanOrEqual(1);
      expect(result.imagenetLogits).toBeUndefined();
      expect(explicitClasses(result)).toEqual([{ class: 'explicit', score: result.explicit }]);
    }
    expect(results.slice(0, 5).map((r) => [r.width, r.height])).toEqual([
      [300, 200],
      [640, 480],
      [500, 500],
      [200, 150],
      [120, 400],
    ]);
    // Red-and-white stripes are named by their colours.
    expect(results[2].colors!.map((c) => c.class)).toContain('red color');
  });

  withDog('scores a dog photo as not explicit', async () => {
    const [dog] = (await embedder.analyze([darknetPhoto('dog')], undefined, { parts: ['explicit'] })).map(analysis);
    expect(dog.explicit).toBeLessThan(0.2);
    expect([dog.width, dog.height]).toEqual([768, 576]);
  });

  it('is deterministic', async () => {
    const first = (await embedder.analyze(images, undefined, { parts: ['explicit'] })).map(analysis);
    const second = (await embedder.analyze(images, undefined, { parts: ['explicit'] })).map(analysis);
    first.forEach((result, i) => {
      expect(Buffer.from(second[i].embedding.buffer)).toEqual(Buffer.from(result.embedding.buffer));
      expect(second[i].explicit).toBe(result.explicit);
    });
  });

  it('gives the same embeddings whatever the batch size', async () => {
    const single = await Embedder.create(pack, { threads: 1, batchSize: 1 });
    try {
      const one = (await single.analyze(images, undefined, { parts: ['explicit'] })).map(analysis);
      const sixteen = (await embedder.analyze(images, undefined, { parts: ['explicit'] })).map(analysis);
      one.forEach((result, i) => {
        expect(maxAbsDiff(result.embedding, sixteen[i].embedding)).toBeLessThanOrEqual(1e-5);
        expect(Math.abs(result.explicit! - sixteen[i].explicit!)).toBeLessThanOrEqual(1e-5);
      });
    } finally {
      await single.close();
    }
  });

  it('puts a decode error in the slot of a broken image only', async () => {
    const scene = images[1];
    const truncated = { name: 'zip/broken.jpg', bytes: scene.bytes.subarray(0, Math.floor(scene.bytes.length / 3)) };
    const text = { name: 'notes.txt', bytes: Buffer.from('not an image at all') };
    const results = await embedder.analyze([images[0], truncated, scene, text, images[2]]);
    expect(results[1]).toBeInstanceOf(ImageDecodeError);
    expect((results[1] as ImageDecodeError).fileName).toBe('zip/broken.jpg');
    expect(results[3]).toBeInstanceOf(ImageDecodeError);
    expect((results[3] as ImageDecodeError).fileName).toBe('notes.txt');
    const alone = (await embedder.analyze([images[0], scene, images[2]])).map(analysis);
    [results[0], results[2], results[4]].map(analysis).forEach((result, i) => {
      expect(maxAbsDiff(result.embedding, alone[i].embedding)).toBeLessThanOrEqual(1e-5);
    });
  });

  it('handles an empty list and concurrent calls', async () => {
    expect(await embedder.analyze([])).toEqual([]);
    const [a, b] = await Promise.all([embedder.analyze(images.slice(0, 3)), embedder.analyze(images.slice(2))]);
    const sequential = (await embedder.analyze(images)).map(analysis);
    expect(maxAbsDiff(analysis(a[2]).embedding, sequential[2].embedding)).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(analysis(b[0]).embedding, sequential[2].embedding)).toBeLessThanOrEqual(1e-5);
    expect(
      maxAbsDiff(analysis(b[b.length - 1]).embedding, sequential[images.length - 1].embedding),
    ).toBeLessThanOrEqual(1e-5);
  });

  it('places a picture closer to its resized copy than to a different picture', async () => {
    const scene = await jpeg(sceneSvg(640, 480));
    const resized = await sharp(scene).resize(560, 420).jpeg({ quality: 80 }).toBuffer();
    const stripes = await png(stripesSvg(640, 480, 24, ['#202020', '#f8f8f8']));
    const [original, copy, other] = (
      await embedder.analyze([
        { name: 'scene.jpg', bytes: scene },
        { name: 'scene-resized.jpg', bytes: resized },
        { name: 'stripes.png', bytes: stripes },
      ])
    ).map(analysis);
    // Post-ReLU features are all non-negative, so even unrelated pictures have cosines of 0.7–0.85.
    expect(cosine(original.embedding, copy.embedding)).toBeGreaterThan(0.98);
    expect(cosine(original.embedding, copy.embedding) - cosine(original.embedding, other.embedding)).toBeGreaterThan(
      0.1,
    );
  });

  withDog('places the dog photo closer to its resized copy than to stripes', async () => {
    const dog = darknetPhoto('dog').bytes;
    const resized = await sharp(dog).resize(700).jpeg({ quality: 85 }).toBuffer();
    const stripes = await png(stripesSvg(768, 576, 32, ['#303030', '#e8e8e8']));
    const [original, copy, other] = (
      await embedder.analyze([
        { name: 'dog.jpg', bytes: dog },
        { name: 'dog-resized.jpg', bytes: resized },
        { name: 'stripes.png', bytes: stripes },
      ])
    ).map(analysis);
    expect(cosine(original.embedding, copy.embedding)).toBeGreaterThan(0.98);
    expect(cosine(original.embedding, copy.embedding) - cosine(original.embedding, other.embedding)).toBeGreaterThan(
      0.1,
    );
  });
});

describe('Embedder on the bundled pack with the CenterNet detector', () => {
  let both: Embedder;
  beforeAll(async () => {
    both = await Embedder.create(pack, { threads: 1, detector: await ensureDetectorPack(modelsDir) });
  });
  afterAll(async () => {
    await both?.close();
  });

  it("concatenates both networks' taps, keeps the pack's own embedding and explicit score, and names objects", async () => {
    const alone = (await embedder.analyze(images, undefined, { parts: ALL_PARTS })).map(analysis);
    const joined = (await both.analyze(images, undefined, { parts: ALL_PARTS })).map(analysis);
    expect(both.dim).toBe(embedder.dim + 528 + 720 + 480);
    expect(both.packOnlyKey).toBe(embedder.packKey);
    joined.forEach((a, i) => {
      expect(a.embedding).toHaveLength(both.dim);
      expect(Math.hypot(...a.embedding)).toBeCloseTo(1, 5);
      // Each of the six taps was unit-normalised before the whole: each weighs 1/√6 of it.
      const packShare = Math.hypot(...a.embedding.subarray(0, embedder.dim));
      expect(packShare).toBeCloseTo(Math.sqrt(3 / 6), 5);
      // One square feeds both networks: the pack sees CenterNet's stretched square (2×2 block means),
      // the same picture as its own cover-cropped decode for a square image, a little wider otherwise.
      expect(a.packEmbedding!.key).toBe(embedder.packKey);
      expect(cosine(a.packEmbedding!.embedding, alone[i].embedding)).toBeGreaterThan(
        a.width === a.height ? 0.995 : 0.9,
      );
      expect(Math.abs(a.explicit! - alone[i].explicit!)).toBeLessThan(0.05);
      expect(a.colors![0].class).toBe(alone[i].colors![0].class);
      expect(Array.isArray(a.objects)).toBe(true);
      expect({ width: a.width, height: a.height }).toEqual({ width: alone[i].width, height: alone[i].height });
    });
    if (hasDog)
      expect(joined[joined.length - 1].objects!.filter((c) => c.score >= 0.5).map((c) => c.class)).toContain('car');
  });

  it('gives the same results whatever the batch size, and a decode error in the slot of a broken image only', async () => {
    const single = await Embedder.create(pack, {
      threads: 1,
      batchSize: 1,
      detector: await ensureDetectorPack(modelsDir),
    });
    try {
      const inputs = [
        images[0],
        { name: 'broken.jpg', bytes: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]) },
        images[1],
      ];
      const [a, b] = await Promise.all([
        both.analyze(inputs, undefined, { parts: ['objects'] }),
        single.analyze(inputs, undefined, { parts: ['objects'] }),
      ]);
      expect(a[1]).toBeInstanceOf(ImageDecodeError);
      expect(b[1]).toBeInstanceOf(ImageDecodeError);
      for (const k of [0, 2]) {
        expect(maxAbsDiff(analysis(a[k]).embedding, analysis(b[k]).embedding)).toBeLessThan(1e-5);
        expect(analysis(a[k]).objects).toEqual(analysis(b[k]).objects);
      }
    } finally {
      await single.close();
    }
  });

  withDog(
    'gives the same embeddings on real photos whether or not the detection head and the explicit head run',
    async () => {
      const photos = DARKNET_PHOTO_NAMES.map(darknetPhoto);
      const full = (await both.analyze(photos, undefined, { parts: ALL_PARTS })).map(analysis);
      // Interleaved with the full runs, so the cut graphs and the whole ones share the threads as in service.
      const [embeddingOnly, again] = await Promise.all([
        both.analyze(photos),
        both.analyze(photos, undefined, { parts: ALL_PARTS }),
      ]);
      embeddingOnly.map(analysis).forEach((a, i) => {
        expect(maxAbsDiff(a.embedding, full[i].embedding)).toBeLessThanOrEqual(1e-5);
        expect(maxAbsDiff(a.packEmbedding!.embedding, full[i].packEmbedding!.embedding)).toBeLessThanOrEqual(1e-5);
        // Only what was asked for is there.
        expect([a.objects, a.explicit, a.colors, a.imagenetLogits]).toEqual([
          undefined,
          undefined,
          undefined,
          undefined,
        ]);
        expect(full[i].objects!.length).toBeGreaterThan(0);
        expect(analysis(again[i]).objects).toEqual(full[i].objects);
      });
    },
  );
});

describe('Embedder lifecycle', () => {
  it('refuses work once closed', async () => {
    const closing = await Embedder.create(pack, { threads: 1 });
    await closing.close();
    await expect(closing.analyze(images.slice(0, 1))).rejects.toThrow('the embedder is closed');
  });

  it('refuses a pack whose manifest names outputs the model lacks', async () => {
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'embedder-pack-'));
    try {
      fs.cpSync(pack.dir, path.join(scratch, 'bundled'), { recursive: true });
      const manifestPath = path.join(scratch, 'bundled', 'manifest.json');
      const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
      manifest.embedding.outputs = ['block_10_expand_pool', 'no_such_output'];
      fs.writeFileSync(manifestPath, JSON.stringify(manifest));
      const broken = await loadPack(scratch, 'bundled');
      await expect(Embedder.create(broken, { threads: 1 })).rejects.toThrow(PackError);
      await expect(Embedder.create(broken, { threads: 1 })).rejects.toThrow(
        'the model lacks no_such_output named in the manifest',
      );
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  });
});
