/** @jest-environment ./test/ml/typed-array-environment.ts */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as tfTypes from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { ensureBundledPack, BUNDLED_PACK_VERSION } from '../../src/ml/bundled-pack';
import { EMBEDDING_TAPS, EXPLICIT_OUTPUT } from '../../src/ml/convert/bundled-backbone';
import { LayerConversionError } from '../../src/ml/convert/errors';
import { parseKerasGraph, type KerasModelTopology } from '../../src/ml/convert/keras-topology';
import { convertKerasToOnnx } from '../../src/ml/convert/layers-to-onnx';
import { readNsfwjsMobilenetV2 } from '../../src/ml/convert/nsfwjs-model';
import { decodeTfjsWeights, loadTfjsCpu } from '../../src/ml/convert/tfjs';
import { decodeImage } from '../../src/ml/decode-image';
import { loadBestPack, loadPack, listPacks, PackError } from '../../src/ml/model-pack';
import { tfjsReference } from './tfjs-reference';
import { DARKNET_PHOTO_NAMES, darknetPhoto, darknetPhotosInstalled } from '../support/darknet-photos';
import { PID_SCOPE } from '../../src/lib/process-tag';

const modelsDir = process.env.MODELS_DIR ?? path.resolve(__dirname, '..', '..', 'models');
const SIZE = 224;

let tf: typeof tfTypes;
beforeAll(async () => {
  tf = await loadTfjsCpu();
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i += 1) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** NHWC → NCHW for a batch of [h, w, c] images. */
function toNchw(nhwc: Float32Array, batch: number, height: number, width: number, channels: number): Float32Array {
  const out = new Float32Array(nhwc.length);
  for (let n = 0; n < batch; n += 1)
    for (let y = 0; y < height; y += 1)
      for (let x = 0; x < width; x += 1)
        for (let c = 0; c < channels; c += 1) {
          out[((n * channels + c) * height + y) * width + x] = nhwc[((n * height + y) * width + x) * channels + c];
        }
  return out;
}

async function saveArtifacts(model: tfTypes.LayersModel): Promise<tfTypes.io.ModelArtifacts> {
  let saved: tfTypes.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return saved!;
}

function convertLayersModel(
  artifacts: tfTypes.io.ModelArtifacts,
  outputs: Array<{ layer: string; name: string; globalAveragePool?: boolean }>,
): Uint8Array {
  const weights = decodeTfjsWeights(tf, artifacts.weightData as ArrayBuffer, artifacts.weightSpecs!);
  const graph = parseKerasGraph(artifacts.modelTopology as KerasModelTopology, 'test model');
  return convertKerasToOnnx(graph, weights, { graphName: 'test', inputName: 'input', outputs });
}

describe('TF.js layers → ONNX converter on a small model covering every supported layer', () => {
  /**
   * Zero padding absorbed by a convolution and materialised for a pooling, BatchNorm folded into
   * Conv2D and DepthwiseConv2D (multiplier 2), ReLU with and without max_value, Add, "same" average
   * pooling, Flatten of a map larger than 1×1, Dense with relu and softmax, Dropout.
   */
  function buildModel(): tfTypes.LayersModel {
    const L = tf.layers;
    const input = tf.input({ shape: [13, 11, 3], name: 'image' });
    const padded = L.zeroPadding2d({
      padding: [
        [0, 1],
        [0, 1],
      ],
      name: 'pad',
    }).apply(input) as tfTypes.SymbolicTensor;
    const conv = L.conv2d({
      filters: 8,
      kernelSize: 3,
      strides: 2,
      padding: 'valid',
      useBias: false,
      name: 'conv',
    }).apply(padded);
    const convBn = L.batchNormalization({ name: 'conv_bn' }).apply(conv);
    const convRelu = L.reLU({ maxValue: 6, name: 'conv_relu' }).apply(convBn) as tfTypes.SymbolicTensor;
    const dw = L.depthwiseConv2d({
      kernelSize: 3,
      depthMultiplier: 2,
      padding: 'same',
      useBias: true,
      name: 'dw',
    }).apply(convRelu);
    const dwBn = L.batchNormalization({ name: 'dw_bn' }).apply(dw);
    const dwRelu = L.reLU({ name: 'dw_relu' }).apply(dwBn) as tfTypes.SymbolicTensor;
    const project = L.conv2d({ filters: 16, kernelSize: 1, padding: 'same', useBias: false, name: 'project' }).apply(
      convRelu,
    );
    const projectBn = L.batchNormalization({ name: 'project_bn' }).apply(project) as tfTypes.SymbolicTensor;
    const sum = L.add({ name: 'sum' }).apply([dwRelu, projectBn]) as tfTypes.SymbolicTensor;
    const sumPadded = L.zeroPadding2d({ padding: 1, name: 'sum_pad' }).apply(sum) as tfTypes.SymbolicTensor;
    const strided = L.conv2d({
      filters: 4,
      kernelSize: 3,
      strides: 2,
      padding: 'same',
      name: 'strided',
      activation: 'relu',
    }).apply(sumPadded);
    const pooled = L.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same', name: 'pool' }).apply(sumPadded);
    const flat = L.flatten({ name: 'flat' }).apply(pooled);
    const hidden = L.dense({ units: 10, activation: 'relu', name: 'hidden' }).apply(flat);
    const dropped = L.dropout({ rate: 0.5, name: 'drop' }).apply(hidden);
    const probs = L.dense({ units: 4, activation: 'softmax', name: 'probs' }).apply(dropped) as tfTypes.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: [probs, strided as tfTypes.SymbolicTensor] });
    // Non-trivial weights everywhere, BatchNorm statistics included (variances and scales positive).
    model.setWeights(
      model.weights.map((w, i) => {
        const positive = /moving_variance|gamma/.test(w.originalName);
        return tf.randomUniform(w.shape as number[], positive ? 0.5 : -0.5, positive ? 1.5 : 0.5, 'float32', 1000 + i);
      }),
    );
    return model;
  }

  it('matches TF.js on every output within 1e-5', async () => {
    const model = buildModel();
    const onnxModel = convertLayersModel(await saveArtifacts(model), [
      { layer: 'probs', name: 'probs' },
      { layer: 'strided', name: 'strided_pool', globalAveragePool: true },
      { layer: 'sum', name: 'sum' },
    ]);
    const batch = 3;
    const nhwc = tf.randomUniform([batch, 13, 11, 3], 0, 1, 'float32', 7);
    const tap = tf.model({
      inputs: model.inputs,
      outputs: [...model.outputs, model.getLayer('sum').output as tfTypes.SymbolicTensor],
    });
    const [probs, strided, sum] = tap.predict(nhwc) as tfTypes.Tensor[];

    const session = await ort.InferenceSession.create(onnxModel);
    const input = toNchw(nhwc.dataSync() as Float32Array, batch, 13, 11, 3);
    const result = await session.run({ input: new ort.Tensor('float32', input, [batch, 3, 13, 11]) });
    await session.release();

    expect(result.probs.dims).toEqual([batch, 4]);
    expect(maxAbsDiff(result.probs.data as Float32Array, probs.dataSync())).toBeLessThan(1e-5);
    expect(result.strided_pool.dims).toEqual([batch, 4]);
    expect(maxAbsDiff(result.strided_pool.data as Float32Array, strided.mean([1, 2]).dataSync())).toBeLessThan(1e-5);
    const [, height, width, channels] = sum.shape;
    expect(result.sum.dims).toEqual([batch, channels, height, width]);
    const sumNchw = toNchw(sum.dataSync() as Float32Array, batch, height, width, channels);
    expect(maxAbsDiff(result.sum.data as Float32Array, sumNchw)).toBeLessThan(1e-5);
  });

  it('names the layer and the reason when a layer is not supported', async () => {
    const input = tf.input({ shape: [8, 8, 3] });
    const pooled = tf.layers.maxPooling2d({ poolSize: 2, name: 'max_pool' }).apply(input) as tfTypes.SymbolicTensor;
    const artifacts = await saveArtifacts(tf.model({ inputs: input, outputs: pooled }));
    expect(() => convertLayersModel(artifacts, [{ layer: 'max_pool', name: 'out' }])).toThrow(LayerConversionError);
    expect(() => convertLayersModel(artifacts, [{ layer: 'max_pool', name: 'out' }])).toThrow(
      'layer max_pool (MaxPooling2D): unsupported layer type',
    );
  });

  it('refuses a BatchNormalization it cannot fold', async () => {
    const input = tf.input({ shape: [4, 4, 2] });
    const normed = tf.layers.batchNormalization({ name: 'lonely_bn' }).apply(input) as tfTypes.SymbolicTensor;
    const artifacts = await saveArtifacts(tf.model({ inputs: input, outputs: normed }));
    expect(() => convertLayersModel(artifacts, [{ layer: 'lonely_bn', name: 'out' }])).toThrow(
      /layer lonely_bn \(BatchNormalization\): only supported directly after/,
    );
  });
});

describe('bundled backbone (nsfwjs MobileNetV2) against TF.js', () => {
  const runOrSkip = darknetPhotosInstalled(DARKNET_PHOTO_NAMES) ? it : it.skip;

  runOrSkip(`all four outputs match TF.js within 1e-4 on the darknet photos`, async () => {
    const pack = await loadPack(modelsDir, 'bundled');
    const decoded = await Promise.all(
      DARKNET_PHOTO_NAMES.map(darknetPhoto).map(async ({ name, bytes }) => decodeImage(bytes, name, SIZE)),
    );
    const batch = decoded.length;
    // nsfwjs feeds pixels divided by 255; so does the pack (mean 0, std 1).
    const nhwc = new Float32Array(batch * SIZE * SIZE * 3);
    decoded.forEach((image, n) => image.rgb.forEach((v, i) => (nhwc[n * SIZE * SIZE * 3 + i] = v / 255)));

    const session = await ort.InferenceSession.create(pack.modelPath);
    const result = await session.run({
      [pack.manifest.input.name]: new ort.Tensor('float32', toNchw(nhwc, batch, SIZE, SIZE, 3), [batch, 3, SIZE, SIZE]),
    });
    await session.release();

    const artifacts = readNsfwjsMobilenetV2();
    const [headLayer] = parseKerasGraph(artifacts.modelTopology, 'nsfwjs').outputLayers;
    const expected = await tfjsReference(artifacts, nhwc, batch, SIZE, [
      ...EMBEDDING_TAPS.map((tap) => tap.layer),
      headLayer,
    ]);

    EMBEDDING_TAPS.forEach((tap, i) => {
      expect(result[tap.output].dims).toEqual([batch, tap.dim]);
      expect(maxAbsDiff(result[tap.output].data as Float32Array, expected[i])).toBeLessThanOrEqual(1e-4);
    });
    expect(result[EXPLICIT_OUTPUT].dims).toEqual([batch, 5]);
    expect(
      maxAbsDiff(result[EXPLICIT_OUTPUT].data as Float32Array, expected[EMBEDDING_TAPS.length]),
    ).toBeLessThanOrEqual(1e-4);
  });

  it('labels the explicit head in nsfwjs order', async () => {
    const { manifest } = await loadPack(modelsDir, 'bundled');
    expect(manifest.heads.explicit).toEqual({
      output: EXPLICIT_OUTPUT,
      labels: ['drawing', 'hentai', 'neutral', 'porn', 'sexy'],
    });
    expect(manifest.embedding).toEqual({ outputs: EMBEDDING_TAPS.map((tap) => tap.output), dim: 1920 });
    expect(manifest.input).toEqual({ name: 'input', size: 224, mean: [0, 0, 0], std: [1, 1, 1] });
  });
});

describe('ensureBundledPack', () => {
  let scratch: string;
  beforeEach(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'bundled-pack-'));
  });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('converts once and then reuses the pack without rewriting it', async () => {
    const first = await ensureBundledPack(scratch);
    expect(first.version).toBe(BUNDLED_PACK_VERSION);
    const modelFile = path.join(scratch, 'bundled', 'model.onnx');
    const before = fs.statSync(modelFile);
    const second = await ensureBundledPack(scratch);
    expect(second).toEqual(first);
    const after = fs.statSync(modelFile);
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    // Nothing but the pack is left behind.
    expect(fs.readdirSync(scratch)).toEqual(['bundled']);
  });

  it('replaces a pack of an older version or with a broken manifest, and survives concurrent callers', async () => {
    // What a process of this machine killed mid-conversion leaves behind.
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    fs.mkdirSync(path.join(scratch, `.bundled-staging-${os.hostname()}@${PID_SCOPE}.${deadPid}-0123abcd`));
    const dir = path.join(scratch, 'bundled');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'manifest.json'), '{"id": "bundled", "version": 0');
    fs.writeFileSync(path.join(dir, 'model.onnx'), 'half a model');
    const manifests = await Promise.all([ensureBundledPack(scratch), ensureBundledPack(scratch)]);
    for (const manifest of manifests) expect(manifest.version).toBe(BUNDLED_PACK_VERSION);
    const pack = await loadPack(scratch, 'bundled');
    expect(fs.statSync(pack.modelPath).size).toBeGreaterThan(5_000_000);
    expect(fs.readdirSync(scratch)).toEqual(['bundled']);
    await expect(ort.InferenceSession.create(pack.modelPath).then((s) => s.release())).resolves.toBeUndefined();
  });
});

describe('model packs', () => {
  let scratch: string;
  beforeEach(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'packs-'));
    fs.cpSync(path.join(modelsDir, 'bundled'), path.join(scratch, 'bundled'), { recursive: true });
  });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  const manifestFile = (id = 'bundled'): string => path.join(scratch, id, 'manifest.json');
  const editManifest = (edit: (m: Record<string, any>) => void): void => {
    const manifest = JSON.parse(fs.readFileSync(manifestFile(), 'utf8'));
    edit(manifest);
    fs.writeFileSync(manifestFile(), JSON.stringify(manifest));
  };

  it('reports a manifest that is not JSON with its path and the reason', async () => {
    fs.writeFileSync(manifestFile(), '{ not json');
    await expect(loadPack(scratch, 'bundled')).rejects.toThrow(PackError);
    await expect(loadPack(scratch, 'bundled')).rejects.toThrow(`model pack ${manifestFile()}: not valid JSON`);
  });

  it('reports which manifest fields are wrong', async () => {
    editManifest((m) => {
      delete m.input.size;
      m.embedding.outputs = [];
    });
    await expect(loadPack(scratch, 'bundled')).rejects.toThrow(
      /invalid manifest: input\.size: .*; embedding\.outputs: /,
    );
  });

  it('reports a missing model file and a missing pack', async () => {
    fs.rmSync(path.join(scratch, 'bundled', 'model.onnx'));
    await expect(loadPack(scratch, 'bundled')).rejects.toThrow('model.onnx is missing');
    await expect(loadPack(scratch, 'imagenet')).rejects.toThrow('not installed (no manifest.json)');
  });

  it('lists valid packs and prefers a valid imagenet pack', async () => {
    expect((await listPacks(scratch)).map((m) => m.id)).toEqual(['bundled']);
    expect((await loadBestPack(scratch)).manifest.id).toBe('bundled');

    const imagenetDir = path.join(scratch, 'imagenet');
    fs.mkdirSync(imagenetDir);
    fs.writeFileSync(
      path.join(imagenetDir, 'model.onnx'),
      'stand-in bytes: packs are validated without loading the model',
    );
    const imagenet = {
      id: 'imagenet',
      version: 1,
      model: 'model.onnx',
      input: { name: 'input', size: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
      embedding: { outputs: ['pool'], dim: 1280 },
      heads: { imagenet: { output: 'logits', labelsFile: 'labels.json' } },
    };
    fs.writeFileSync(path.join(imagenetDir, 'manifest.json'), JSON.stringify(imagenet));
    // Its labels file is missing: not valid, so not preferred.
    expect((await loadBestPack(scratch)).manifest.id).toBe('bundled');
    fs.writeFileSync(path.join(imagenetDir, 'labels.json'), '[]');
    expect((await listPacks(scratch)).map((m) => m.id)).toEqual(['bundled', 'imagenet']);
    expect((await loadBestPack(scratch)).manifest).toEqual(imagenet);
  });
});
