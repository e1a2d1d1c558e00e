import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { corruptJpeg, noiseImage } from '../../fixtures/images';
import { ModelConversionError } from '../../src/ml/convert/errors';
import { decodeImageStretched, ImageDecodeError } from '../../src/ml/decode-image';
import { defaultClasses } from '../../src/ml/default-classifier';
import { BUNDLED_IMAGENET_CLASSES } from '../../src/ml/imagenet/imagenet-labels';
import {
  CENTERNET_INPUT_SIZE,
  CENTERNET_TAPS,
  convertCenternet,
  UnsupportedTfOpError,
} from '../../src/ml/detector/centernet-converter';
import { COCO_CLASSES } from '../../src/ml/detector/coco-labels';
import { CENTERNET_SOURCE_SHA256, ensureDetectorPack, type DetectorPack } from '../../src/ml/detector/detector-pack';
import { readTfjsGraphModel } from '../../src/ml/detector/tfjs-graph-model';
import { Embedder, type ImageAnalysis } from '../../src/ml/embedder';
import { loadPack } from '../../src/ml/model-pack';
import type { BuiltinClass } from '../../src/ml/types';
import { darknetPhoto, darknetPhotosInstalled, PHOTOS } from '../support/darknet-photos';

const modelsDir = process.env.MODELS_DIR ?? path.resolve(__dirname, '..', '..', 'models');
const HUMAN_MODELS = path.join(path.dirname(require.resolve('@vladmandic/human')), '..', 'models');
const hasPhotos = darknetPhotosInstalled();
const withPhotos = hasPhotos ? describe : describe.skip;

type Row = [number, number, number, number, number, number];

function rows(detections: ArrayLike<number>): Row[] {
  return Array.from(
    { length: detections.length / 6 },
    (_, i) => Array.from({ length: 6 }, (__, j) => detections[i * 6 + j]) as Row,
  );
}

/** Highest raw score per class index. */
function bestPerClass(detections: Row[]): Map<number, number> {
  const best = new Map<number, number>();
  for (const row of detections) best.set(row[5], Math.max(best.get(row[5]) ?? 0, row[4]));
  return best;
}

/**
 * The original TF.js graph model (pure-JS cpu backend) on one NHWC image of `size` pixels: the given
 * nodes' outputs, 4-D ones globally average-pooled. It runs in a worker thread: jest routes every global
 * lookup of test-realm code through a Proxy, which makes TF.js's kernels far slower.
 */
function tfjsGraphOutputs(nhwc: Float32Array, size: number, nodes: string[]): Promise<Float32Array[]> {
  const source = `
    const fs = require('node:fs');
    const path = require('node:path');
    const { parentPort, workerData } = require('node:worker_threads');
    const tf = require(workerData.tfjsPath);
    tf.enableProdMode();
    (async () => {
      await tf.setBackend('cpu');
      const json = JSON.parse(fs.readFileSync(path.join(workerData.dir, 'centernet.json'), 'utf8'));
      // The backbone is fully convolutional: let it take another size (the detection tail assumes 512).
      const input = json.modelTopology.node.find((node) => node.name === 'tower_0/images');
      input.attr.shape.shape.dim = [1, -1, -1, 3].map((size) => ({ size: String(size) }));
      const bin = fs.readFileSync(path.join(workerData.dir, 'centernet.bin'));
      const model = await tf.loadGraphModel(tf.io.fromMemory({
        modelTopology: json.modelTopology,
        format: json.format,
        weightSpecs: json.weightsManifest.flatMap((group) => group.weights),
        weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
      }));
      const { nhwc, size, nodes } = workerData;
      const outputs = [model.execute(tf.tensor4d(nhwc, [1, size, size, 3]), nodes)].flat();
      parentPort.postMessage(outputs.map((out) => (out.rank === 4 ? out.mean([1, 2]) : out).dataSync()));
    })(); // a rejection ends the worker with an 'error' event
  `;
  const workerData = { tfjsPath: require.resolve('@tensorflow/tfjs'), dir: HUMAN_MODELS, nhwc, size, nodes };
  const worker = new Worker(source, { eval: true, workerData });
  return new Promise((resolve, reject) => {
    worker.once('message', (outputs: Float32Array[]) => {
      resolve(outputs);
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`TF.js reference worker exited with code ${code}`)));
  });
}

async function tfjsDetections(nhwc: Float32Array): Promise<Float32Array> {
  const [detections] = await tfjsGraphOutputs(nhwc, 512, ['tower_0/detections']);
  return detections;
}

async function onnxOutputs(
  model: Uint8Array | string,
  nhwc: Float32Array,
  size: number,
): Promise<Record<string, Float32Array>> {
  const session =
    typeof model === 'string' ? await ort.InferenceSession.create(model) : await ort.InferenceSession.create(model);
  try {
    const output = await session.run({
      images: new ort.Tensor('float32', Float32Array.from(nhwc), [1, size, size, 3]),
    });
    return Object.fromEntries(Object.entries(output).map(([name, tensor]) => [name, tensor.data as Float32Array]));
  } finally {
    await session.release();
  }
}

async function onnxDetections(model: Uint8Array | string, nhwc: Float32Array): Promise<Float32Array> {
  return (await onnxOutputs(model, nhwc, 512)).detections;
}

function unit(values: Float32Array): Float32Array {
  const norm = Math.hypot(...values);
  return values.map((v) => v / norm);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  return a.reduce((max, v, i) => Math.max(max, Math.abs(v - b[i])), 0);
}

async function tempDir(prefix: string): Promise<string> {
  return fs.promises.mkdtemp(path.join(os.tmpdir(), prefix));
}

const photo = darknetPhoto;

function scoreOf(classes: BuiltinClass[], name: string): number {
  return classes.find((c) => c.class === name)?.score ?? 0;
}

/** Every class under a supercategory is matched by the supercategory itself, scoring at least as high. */
function expectParentsCoverChildren(classes: BuiltinClass[]): void {
  for (const child of classes) {
    const [parentName, childName] = (child.type_hierarchy ?? '').split('/').slice(1);
    if (childName === undefined) continue;
    const parent = classes.find((c) => c.class === parentName);
    expect(parent).toMatchObject({ type_hierarchy: `/${parentName}` });
    expect(parent!.score).toBeGreaterThanOrEqual(child.score);
  }
}

describe('COCO labels', () => {
  test('80 classes; official spellings; person is its own supercategory', () => {
    expect(COCO_CLASSES).toHaveLength(80);
    expect(new Set(COCO_CLASSES.map((c) => c.name)).size).toBe(80);
    expect(COCO_CLASSES[0]).toEqual({ name: 'person', supercategory: 'person', type_hierarchy: '/person' });
    expect(COCO_CLASSES[2]).toEqual({ name: 'car', supercategory: 'vehicle', type_hierarchy: '/vehicle/car' });
    expect(COCO_CLASSES[16].type_hierarchy).toBe('/animal/dog');
    expect(COCO_CLASSES.map((c) => c.name)).toEqual(
      expect.arrayContaining(['motorcycle', 'airplane', 'couch', 'potted plant', 'dining table', 'tv']),
    );
  });

  (hasPhotos ? test : test.skip)("the class order is darknet's coco.names order, up to COCO's spellings", () => {
    const respelled: Record<string, string> = {
      motorbike: 'motorcycle',
      aeroplane: 'airplane',
      sofa: 'couch',
      pottedplant: 'potted plant',
      diningtable: 'dining table',
      tvmonitor: 'tv',
    };
    const darknet = fs.readFileSync(path.join(PHOTOS, 'coco.names'), 'utf8').trim().split('\n');
    expect(COCO_CLASSES.map((c) => c.name)).toEqual(darknet.map((name) => respelled[name] ?? name));
  });
});

describe('CenterNet conversion', () => {
  test('an op the converter does not know is refused with a typed error naming the node and the op', async () => {
    const graph = await readTfjsGraphModel(path.join(HUMAN_MODELS, 'centernet.json'));
    const sigmoid = graph.nodes.find((node) => node.op === 'Sigmoid')!;
    const altered = {
      ...graph,
      nodes: graph.nodes.map((node) => (node === sigmoid ? { ...node, op: 'Softplus' } : node)),
    };
    const attempt = (): Uint8Array => convertCenternet(altered, { foldHardActivations: true });
    expect(attempt).toThrow(UnsupportedTfOpError);
    expect(attempt).toThrow(`node ${sigmoid.name}: unsupported op Softplus`);
  });

  test('an input size that is not a multiple of 32 from 128 to 1024 is refused', async () => {
    const graph = await readTfjsGraphModel(path.join(HUMAN_MODELS, 'centernet.json'));
    for (const inputSize of [300, 96, 2048]) {
      expect(() => convertCenternet(graph, { foldHardActivations: true, inputSize })).toThrow(/multiple of 32/);
    }
  });

  test('ensureDetectorPack converts once, then reuses the pack; an outdated pack is replaced', async () => {
    const dir = await tempDir('wvr-detector-');
    try {
      const first = await ensureDetectorPack(dir);
      expect(first.modelPath).toBe(path.join(dir, 'detector', 'model.onnx'));
      const converted = fs.statSync(first.modelPath);
      const second = await ensureDetectorPack(dir);
      expect(second).toEqual(first);
      expect(fs.statSync(second.modelPath).mtimeMs).toBe(converted.mtimeMs);
      expect(fs.readdirSync(dir)).toEqual(['detector']); // no staging left behind

      const manifestPath = path.join(dir, 'detector', 'manifest.json');
      const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
      fs.writeFileSync(manifestPath, JSON.stringify({ ...manifest, version: 0 }));
      fs.writeFileSync(first.modelPath, 'stale');
      const third = await ensureDetectorPack(dir);
      expect(fs.statSync(third.modelPath).size).toBe(converted.size);
      expect(JSON.parse(fs.readFileSync(manifestPath, 'utf8')).version).toBe(manifest.version);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a source file whose SHA-256 differs from the known one is refused, and nothing is installed', async () => {
    const source = await tempDir('wvr-centernet-src-');
    const dir = await tempDir('wvr-detector-');
    try {
      for (const file of Object.keys(CENTERNET_SOURCE_SHA256))
        fs.copyFileSync(path.join(HUMAN_MODELS, file), path.join(source, file));
      const bin = fs.readFileSync(path.join(source, 'centernet.bin'));
      bin[1000] ^= 0x01;
      fs.writeFileSync(path.join(source, 'centernet.bin'), bin);
      const attempt = ensureDetectorPack(dir, { sourceDir: source });
      await expect(attempt).rejects.toBeInstanceOf(ModelConversionError);
      await expect(attempt).rejects.toThrow(`${path.join(source, 'centernet.bin')}: SHA-256 is`);
      expect(fs.readdirSync(dir)).toEqual([]);
    } finally {
      fs.rmSync(source, { recursive: true, force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the embedder's CenterNet pass", () => {
  let embedder: Embedder;
  let detectorPack: DetectorPack;

  /** COCO classes per image, in input order, from one analysis pass; an undecodable image gets its ImageDecodeError. */
  async function detect(
    images: Array<{ name: string; bytes: Buffer }>,
  ): Promise<Array<BuiltinClass[] | ImageDecodeError>> {
    const analyses = await embedder.analyze(images, undefined, { parts: ['objects'] });
    return analyses.map((a: ImageAnalysis | ImageDecodeError) => (a instanceof ImageDecodeError ? a : a.objects!));
  }

  beforeAll(async () => {
    detectorPack = await ensureDetectorPack(modelsDir);
    embedder = await Embedder.create(await loadPack(modelsDir, 'bundled'), { threads: 1, detector: detectorPack });
  });
  afterAll(async () => {
    await embedder?.close();
  });

  test('an image that cannot be decoded gets an ImageDecodeError in its slot; the others are detected', async () => {
    const noise = await noiseImage({ size: 160, seed: 5, format: 'jpeg' });
    const results = await detect([
      { name: 'noise.jpg', bytes: noise },
      { name: 'broken.jpg', bytes: await corruptJpeg() },
      { name: 'text.txt', bytes: Buffer.from('not an image') },
      { name: 'noise-again.jpg', bytes: noise },
    ]);
    expect(results).toHaveLength(4);
    expect(results[1]).toBeInstanceOf(ImageDecodeError);
    expect((results[1] as ImageDecodeError).fileName).toBe('broken.jpg');
    expect(results[2]).toBeInstanceOf(ImageDecodeError);
    expect(results[0]).toEqual(results[3]);
    // Colour noise shows no object: guesses stay below the default threshold.
    expect((results[0] as BuiltinClass[]).length).toBeGreaterThan(0);
    expect((results[0] as BuiltinClass[]).filter((c) => c.score >= 0.5)).toEqual([]);
    expect(await detect([])).toEqual([]);
  });

  test("the pack key names both networks, and the embedding holds both networks' taps", async () => {
    expect(detectorPack.inputSize).toBe(CENTERNET_INPUT_SIZE);
    expect(embedder.packKey).toBe(`bundled@1+${detectorPack.key}`);
    expect(embedder.packOnlyKey).toBe('bundled@1');
    expect(embedder.dim).toBe(1920 + 528 + 720 + 480);
  });

  withPhotos('on the darknet sample photos', () => {
    test("the converted model matches TF.js's own run of the original graph on dog.jpg", async () => {
      const { rgb } = await decodeImageStretched(photo('dog').bytes, 'dog.jpg', 512);
      const nhwc = Float32Array.from(rgb);
      const graph = await readTfjsGraphModel(path.join(HUMAN_MODELS, 'centernet.json'));
      const [reference, exact, folded] = await Promise.all([
        tfjsDetections(nhwc),
        onnxDetections(convertCenternet(graph, { foldHardActivations: false }), nhwc),
        onnxDetections(convertCenternet(graph, { foldHardActivations: true }), nhwc),
      ]);
      const referenceBest = bestPerClass(rows(reference));
      expect(referenceBest.get(2)).toBeGreaterThan(0.5); // car: the comparison covers real detections
      for (const [model, tolerance] of [
        [exact, 1e-4],
        [folded, 2e-3],
      ] as const) {
        const best = bestPerClass(rows(model));
        for (const [classIndex, score] of referenceBest) {
          if (score >= 0.05) expect(Math.abs((best.get(classIndex) ?? 0) - score)).toBeLessThanOrEqual(tolerance);
        }
      }
      // The exact graph reproduces TF.js's rows, boxes included.
      rows(exact)
        .slice(0, 10)
        .forEach((row, i) =>
          row.forEach((value, j) => expect(Math.abs(value - rows(reference)[i][j])).toBeLessThan(j < 4 ? 0.01 : 1e-4)),
        );
    });

    test(`the backbone taps at ${CENTERNET_INPUT_SIZE} px match TF.js's backbone on real photos within 1e-4`, async () => {
      const graph = await readTfjsGraphModel(path.join(HUMAN_MODELS, 'centernet.json'));
      const size = CENTERNET_INPUT_SIZE;
      const exactModel = convertCenternet(graph, { foldHardActivations: false, inputSize: size, taps: true });
      for (const name of ['dog', 'eagle'] as const) {
        const { rgb } = await decodeImageStretched(photo(name).bytes, `${name}.jpg`, size);
        const nhwc = Float32Array.from(rgb);
        const [reference, exact, shipped] = await Promise.all([
          tfjsGraphOutputs(
            nhwc,
            size,
            CENTERNET_TAPS.map((tap) => tap.node),
          ),
          onnxOutputs(exactModel, nhwc, size),
          onnxOutputs(detectorPack.modelPath, nhwc, size),
        ]);
        CENTERNET_TAPS.forEach((tap, i) => {
          expect(exact[tap.output]).toHaveLength(tap.dim);
          // Raw pools (magnitudes up to a few units) and the unit vectors the embedding is made of.
          expect(maxAbsDiff(exact[tap.output], reference[i])).toBeLessThanOrEqual(
            1e-4 * Math.max(1, ...reference[i].map(Math.abs)),
          );
          expect(maxAbsDiff(unit(exact[tap.output]), unit(reference[i]))).toBeLessThanOrEqual(1e-4);
          // The shipped graph folds hard-swish (exact 1/6 instead of TF's float16 0.166626).
          expect(maxAbsDiff(unit(shipped[tap.output]), unit(reference[i]))).toBeLessThanOrEqual(2e-3);
        });
      }
    });

    test('names the objects of each photo above the default threshold, and nothing in The Scream', async () => {
      const names = ['dog', 'person', 'eagle', 'giraffe', 'kite', 'scream'] as const;
      const results = await detect(names.map((name) => photo(name)));
      const [dog, person, eagle, giraffe, kite, scream] = results.map((r) => {
        if (r instanceof ImageDecodeError) throw r;
        expectParentsCoverChildren(r);
        return r;
      });
      const above = (classes: BuiltinClass[]): string[] => classes.filter((c) => c.score >= 0.5).map((c) => c.class);
      expect(above(dog)).toEqual(expect.arrayContaining(['car', 'bicycle', 'vehicle']));
      // The fitted calibration (object-calibration.json) puts the dog's raw 0.43 just under 0.5.
      expect(scoreOf(dog, 'dog')).toBeGreaterThan(0.4);
      expect(dog.find((c) => c.class === 'dog')).toMatchObject({ type_hierarchy: '/animal/dog' });
      expect(scoreOf(dog, 'vehicle')).toBe(Math.max(scoreOf(dog, 'car'), scoreOf(dog, 'bicycle')));
      expect(above(person)).toContain('person');
      expect(above(eagle)).toContain('bird');
      expect(above(giraffe)).toContain('giraffe');
      expect(above(kite)).toEqual(expect.arrayContaining(['kite', 'person']));
      expect(above(scream)).toEqual([]);
    });

    test("defaultClasses merges the detector's classes with colours and ImageNet's, the higher score winning a shared name", async () => {
      const [objects] = (await detect([photo('dog')])) as BuiltinClass[][];
      const colors = [{ class: 'yellow color', score: 0.7, type_hierarchy: '/colors/yellow color' }];
      const merged = defaultClasses({ colors, objects });
      expect(merged.map((c) => c.class)).toEqual(expect.arrayContaining(['yellow color', 'dog', 'car', 'vehicle']));
      expect(merged.find((c) => c.class === 'dog')).toEqual(objects.find((c) => c.class === 'dog'));
      expect(merged.map((c) => c.score)).toEqual([...merged.map((c) => c.score)].sort((a, b) => b - a));

      // ImageNet all but sure of a beagle: its 'dog' node outscores the detector's dog; the detector's car stays.
      const imagenetLogits = new Float32Array(1000);
      imagenetLogits[BUNDLED_IMAGENET_CLASSES.findIndex((c) => c.label === 'beagle')] = 12;
      const withImagenet = defaultClasses({ colors, objects, imagenetLogits });
      const dogs = withImagenet.filter((c) => c.class === 'dog');
      expect(dogs).toHaveLength(1);
      expect(dogs[0].type_hierarchy).toBe('/animal/mammal/dog');
      expect(dogs[0].score).toBeGreaterThan(scoreOf(objects, 'dog'));
      expect(withImagenet.find((c) => c.class === 'car')).toEqual(objects.find((c) => c.class === 'car'));
    });
  });
});
