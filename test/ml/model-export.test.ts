import fs from 'node:fs';
import path from 'node:path';
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { decodeImage } from '../../src/ml/decode-image';
import { ensureDetectorPack } from '../../src/ml/detector/detector-pack';
import { buildClassifierOnnx, encodeOnnx, packEmbeddingSource } from '../../src/ml/export/classifier-onnx';
import { ModelExportError } from '../../src/ml/export';
import { onnxToCoreMlClassifier } from '../../src/ml/export/onnx-to-coreml';
import { scoreHead, type TrainedHead } from '../../src/ml/heads';
import { OnnxGraphBuilder } from '../../src/ml/onnx/onnx-graph-builder';
import type { PackManifest } from '../../src/ml/types';
import { decodeMlModel, runNeuralNetworkClassifier, withCoreMlSpec } from '../support/coreml-reference';
import { darknetPhoto, darknetPhotoPath } from '../support/darknet-photos';

const SIZE = 32;

/** Deterministic values in [-scale, scale). */
function random(seed: number): (count: number, scale?: number) => Float32Array {
  let state = seed;
  return (count, scale = 1) =>
    Float32Array.from({ length: count }, () => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return (state / 2147483648 - 0.5) * 2 * scale;
    });
}

/**
 * A small backbone written the way src/ml/detector/centernet-converter.ts writes CenterNet's
 * MobileNetV3: NHWC 0–255 input transposed to NCHW, SAME_UPPER strided and depthwise convolutions,
 * Clip(0, 6), HardSwish and HardSigmoid (folded) as well as TF's unfolded hard-swish
 * (c·x)·relu6(x + 3), a squeeze-excite gate, a residual Add; plus the bundled converter's explicit
 * pads, per-channel constants, pooling and Flatten. Two pooled taps make a 14-d embedding.
 */
function centernetLikePack(options: { extraOp?: string } = {}): { model: Uint8Array; manifest: PackManifest } {
  const r = random(11);
  const g = new OnnxGraphBuilder('centernet_like', 14);
  const w = (name: string, dims: number[], scale = 0.4) =>
    g.initializer({
      name,
      dims,
      data: r(
        dims.reduce((a, b) => a * b, 1),
        scale,
      ),
    });
  const scalar = (name: string, value: number) => g.initializer({ name, dims: [], data: Float32Array.of(value) });
  const images = g.input('images', [1, SIZE, SIZE, 3]);
  const x = g.node('Transpose', [images], { perm: [0, 3, 1, 2] });
  const scaled = g.node('Mul', [x, scalar('inv255', 1 / 255)]);
  const c1 = g.node('Conv', [scaled, w('c1/W', [8, 3, 3, 3]), w('c1/B', [8], 0.1)], {
    kernel_shape: [3, 3],
    strides: [2, 2],
    dilations: [1, 1],
    group: 1,
    auto_pad: 'SAME_UPPER',
  });
  const h1 = g.node('HardSwish', [c1]);
  const dw = g.node('Conv', [h1, w('dw/W', [8, 1, 3, 3]), w('dw/B', [8], 0.1)], {
    kernel_shape: [3, 3],
    strides: [1, 1],
    dilations: [1, 1],
    group: 8,
    auto_pad: 'SAME_UPPER',
  });
  const r6 = g.node('Clip', [dw, scalar('zero', 0), scalar('six', 6)]);
  const squeezed = g.node('GlobalAveragePool', [r6]);
  const s1 = g.node('Relu', [
    g.node('Conv', [squeezed, w('se1/W', [4, 8, 1, 1]), w('se1/B', [4], 0.1)], { kernel_shape: [1, 1] }),
  ]);
  const gate = g.node('HardSigmoid', [g.node('Conv', [s1, w('se2/W', [8, 4, 1, 1])], { kernel_shape: [1, 1] })], {
    alpha: 0.166626,
    beta: 0.499878,
  });
  const excited = g.node('Mul', [r6, gate]);
  const residual = g.node('Add', [
    g.node('Conv', [excited, w('pw/W', [8, 8, 1, 1]), w('pw/B', [8], 0.1)], { kernel_shape: [1, 1] }),
    h1,
  ]);
  // TF's hard-swish as the converter leaves it unfolded: (c·x)·relu6(x + 3).
  const shifted = g.node('Clip', [
    g.node('Add', [residual, scalar('three', 3)]),
    scalar('zero2', 0),
    scalar('six2', 6),
  ]);
  const hardSwish = g.node('Mul', [g.node('Mul', [scalar('sixth', 0.166626), residual]), shifted]);
  let tapSource = hardSwish;
  if (options.extraOp) tapSource = g.node(options.extraOp, [hardSwish]);
  const tap1 = g.node('Flatten', [g.node('GlobalAveragePool', [tapSource])], { axis: 1 });
  // The bundled converter's side: explicit (dilated) pads, channel constants, pooling.
  const c3 = g.node('Conv', [hardSwish, w('c3/W', [6, 8, 3, 3])], {
    kernel_shape: [3, 3],
    strides: [1, 1],
    dilations: [2, 2],
    pads: [2, 1, 2, 3],
    group: 1,
  });
  const biased = g.node('Add', [c3, w('c3/channel_bias', [6, 1, 1], 0.2)]);
  const gained = g.node('Div', [g.node('Mul', [biased, w('c3/channel_gain', [1, 6, 1, 1], 1)]), scalar('two', 2)]);
  const flipped = g.node('Sub', [scalar('half', 0.5), g.node('Sigmoid', [gained])]);
  const maxed = g.node('MaxPool', [g.node('Relu', [flipped])], { kernel_shape: [2, 2], strides: [2, 2] });
  const averaged = g.node('AveragePool', [maxed], { kernel_shape: [3, 3], strides: [1, 1], pads: [1, 1, 1, 1] });
  const tap2 = g.node('ReduceMean', [g.node('Sub', [averaged, maxed])], { axes: [2, 3], keepdims: 0 });
  g.node('Identity', [tap1], {}, 'tap_a');
  g.node('Identity', [tap2], {}, 'tap_b');
  g.output('tap_a', [1, 8]);
  g.output('tap_b', [1, 6]);
  // A detector-style head the export must prune away.
  const [topValues] = g.nodeWithOutputs(
    'TopK',
    [g.node('Flatten', [c1], { axis: 1 }), g.initializer({ name: 'k', dims: [1], data: BigInt64Array.of(5n) })],
    2,
    { axis: -1 },
  );
  g.output(g.node('Identity', [topValues], {}, 'detections'), [1, 5]);
  const manifest: PackManifest = {
    id: 'bundled',
    version: 1,
    model: 'model.onnx',
    input: { name: 'images', size: SIZE, mean: [0, 0, 0], std: [1 / 255, 1 / 255, 1 / 255] },
    embedding: { outputs: ['tap_a', 'tap_b'], dim: 14 },
    heads: {},
  };
  return { model: g.toBuffer(), manifest };
}

function head(dim: number, classes: string[]): TrainedHead {
  const r = random(5);
  return {
    formatVersion: 1,
    packKey: 'bundled@1',
    dim,
    classes,
    center: r(dim, 0.05),
    weights: r(dim * classes.length, 3),
    bias: r(classes.length, 0.5),
    platt: classes.map((_, i) => ({ a: 1 + 0.3 * i, b: -0.2 * i })),
    evaluation: { method: 'k-fold', folds: 5, examples: 0, classes: [] },
    trainedAt: '2026-11-30T00:00:00.000Z',
  };
}

/** A second, NCHW network with ImageNet normalisation: conv, ReLU, pooled to 8 values. */
function smallNchwNetwork(size: number): {
  model: Uint8Array;
  input: { name: string; size: number; mean: [number, number, number]; std: [number, number, number] };
} {
  const r = random(17);
  const g = new OnnxGraphBuilder('small_nchw', 13);
  const x = g.input('input', ['N', 3, size, size]);
  const conv = g.node(
    'Conv',
    [
      x,
      g.initializer({ name: 'W', dims: [8, 3, 3, 3], data: r(216, 0.5) }),
      g.initializer({ name: 'B', dims: [8], data: r(8, 0.1) }),
    ],
    { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] },
  );
  g.node('Flatten', [g.node('GlobalAveragePool', [g.node('Relu', [conv])])], { axis: 1 }, 'pooled');
  g.output('pooled', ['N', 8]);
  return {
    model: g.toBuffer(),
    input: { name: 'input', size, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  };
}

const INFO = { classifierId: 'synthetic_1', name: 'synthetic', versionId: 3, created: '2026-11-30T00:00:00.000Z' };

function pictures(count: number, size = SIZE): Uint8Array[] {
  const r = random(23);
  return Array.from({ length: count }, () =>
    Uint8Array.from(r(size * size * 3, 1), (v) => Math.round((v + 1) * 127.5)),
  );
}

/** A CenterNet-style pack (NHWC 0–255) and a small NCHW ImageNet-normalised network composed into one classifier. */
function composedClassifier(known?: TrainedHead['known'], classes = ['alpha', 'beta']) {
  const first = centernetLikePack();
  const second = smallNchwNetwork(SIZE);
  const sources = [
    packEmbeddingSource(first.model, first.manifest),
    { model: second.model, input: second.input, outputs: ['pooled'], dim: 8 },
  ];
  const trained = { ...head(22, classes), ...(known ? { known } : {}) };
  return { first, second, sources, classes, trained, built: buildClassifierOnnx(sources, trained, INFO) };
}

/** The head's scores of each picture as the Embedder sees it: each network on its own input, each tap L2-normalised, concatenated, normalised. */
async function embedderScores(
  composed: ReturnType<typeof composedClassifier>,
  rgbs: Uint8Array[],
): Promise<number[][]> {
  return (await embedderEmbeddings(composed, rgbs)).map((embedding) => scoreHead(composed.trained, embedding));
}

/** Each picture's embedding as the Embedder computes it. */
async function embedderEmbeddings(
  { first, second }: ReturnType<typeof composedClassifier>,
  rgbs: Uint8Array[],
): Promise<Float32Array[]> {
  const [net1, net2] = await Promise.all([
    ort.InferenceSession.create(first.model),
    ort.InferenceSession.create(second.model),
  ]);
  const plane = SIZE * SIZE;
  const embeddings: Float32Array[] = [];
  for (const rgb of rgbs) {
    const nhwc = Float32Array.from(rgb);
    const nchw = new Float32Array(3 * plane);
    for (let c = 0; c < 3; c++)
      for (let p = 0; p < plane; p++)
        nchw[c * plane + p] = (rgb[p * 3 + c] / 255 - second.input.mean[c]) / second.input.std[c];
    const out1 = await net1.run({ images: new ort.Tensor('float32', nhwc, [1, SIZE, SIZE, 3]) });
    const out2 = await net2.run({ input: new ort.Tensor('float32', nchw, [1, 3, SIZE, SIZE]) });
    const parts = [out1.tap_a.data, out1.tap_b.data, out2.pooled.data] as Float32Array[];
    const unit = (v: Float32Array) => {
      const n = Math.hypot(...v);
      return Array.from(v, (x) => x / n);
    };
    embeddings.push(Float32Array.from(unit(Float32Array.from(parts.flatMap(unit)))));
  }
  await Promise.all([net1.release(), net2.release()]);
  return embeddings;
}

describe('ONNX → Core ML mapping of the ops the backbone converters emit', () => {
  withCoreMlSpec.each([
    ['0–255 pixels (CenterNet)', [0, 0, 0], [1 / 255, 1 / 255, 1 / 255]],
    ["ImageNet's per-channel mean and std", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]],
  ] as Array<[string, [number, number, number], [number, number, number]]>)(
    'maps a CenterNet-style graph with %s input; Core ML scores match onnxruntime on the exported ONNX within 1e-5',
    async (_, mean, std) => {
      const { model, manifest: pack } = centernetLikePack();
      const manifest = { ...pack, input: { ...pack.input, mean, std } };
      const classes = ['alpha', 'beta', 'gamma'];
      const built = buildClassifierOnnx([packEmbeddingSource(model, manifest)], head(14, classes), INFO);
      const onnxBytes = encodeOnnx(built.model);
      expect(built.model.graph!.node!.some((n) => n.opType === 'TopK')).toBe(false); // pruned
      const exported = onnxToCoreMlClassifier(built.model, {
        classes,
        input: built.input,
        shortDescription: 's',
        versionString: '3',
        metadata: {},
      });
      const coreMl = await decodeMlModel(exported.bytes);
      const layerTypes = new Set(coreMl.neuralNetworkClassifier.layers.map((l: any) => l.layer));
      // The NHWC round trip (export transpose + the pack's own) cancels: nothing is permuted.
      expect(layerTypes.has('permute')).toBe(false);
      const { scaler } = coreMl.neuralNetworkClassifier.preprocessing[0];
      const uniform = std.every((v) => v === std[0]);
      // One scale for all channels in Core ML's scaler; a per-channel std adds a Scale layer.
      expect(scaler.channelScale).toBeCloseTo(uniform ? 1 / (255 * std[0]) : 1 / 255, 6);
      expect(
        [scaler.redBias, scaler.greenBias, scaler.blueBias]
          .map((b: number, c) => b - (uniform ? -mean[c] / std[c] : -mean[c]))
          .every((d) => Math.abs(d) < 1e-6),
      ).toBe(true);
      expect(coreMl.neuralNetworkClassifier.layers[0].layer === 'scale').toBe(!uniform);

      const session = await ort.InferenceSession.create(onnxBytes);
      for (const rgb of pictures(3)) {
        const nchw = new Float32Array(3 * SIZE * SIZE);
        for (let c = 0; c < 3; c++)
          for (let p = 0; p < SIZE * SIZE; p++) nchw[c * SIZE * SIZE + p] = (rgb[p * 3 + c] / 255 - mean[c]) / std[c];
        const out = await session.run({ image: new ort.Tensor('float32', nchw, [1, 3, SIZE, SIZE]) });
        const expected = out.scores.data as Float32Array;
        const probabilities = runNeuralNetworkClassifier(coreMl, rgb, SIZE);
        classes.forEach((cls, k) => expect(Math.abs(probabilities.get(cls)! - expected[k])).toBeLessThan(1e-5));
        // Scores away from 0 and 1, so the comparison says something.
        expect(Math.max(...expected)).toBeLessThan(0.999);
        expect(Math.min(...expected)).toBeGreaterThan(0.001);
      }
      await session.release();
    },
  );

  it('refuses an op it has no mapping for, naming the node', () => {
    const { model, manifest } = centernetLikePack({ extraOp: 'Tanh' });
    const built = buildClassifierOnnx([packEmbeddingSource(model, manifest)], head(14, ['a', 'b']), INFO);
    const convert = () =>
      onnxToCoreMlClassifier(built.model, {
        classes: ['a', 'b'],
        input: built.input,
        shortDescription: 's',
        versionString: '3',
        metadata: {},
      });
    expect(convert).toThrow(ModelExportError);
    expect(convert).toThrow(/node Tanh_node__\d+ \(Tanh\): unsupported op/);
  });

  it('refuses a head that does not fit the pack, and a manifest naming tensors the model lacks', () => {
    const { model, manifest } = centernetLikePack();
    expect(() => buildClassifierOnnx([packEmbeddingSource(model, manifest)], head(20, ['a']), INFO)).toThrow(
      /expects 20-d embeddings, the embedding networks make 14-d ones/,
    );
    const wrong = { ...manifest, embedding: { outputs: ['tap_a', 'nowhere'], dim: 14 } };
    expect(() => buildClassifierOnnx([packEmbeddingSource(model, wrong)], head(14, ['a']), INFO)).toThrow(
      /computes no tensor nowhere/,
    );
  });

  withCoreMlSpec(
    'maps the real CenterNet/MobileNetV3 backbone as centernet-converter converts it, up to its last hard-swish taps',
    async () => {
      // The detector pack's converted graph, its taps as the "sharper eyes" embedding takes them: pooled
      // hard-swish maps of the late backbone. Its convolutions take any input size; 128 keeps the
      // test's JS interpreter quick.
      const size = 128;
      const { modelPath } = await ensureDetectorPack(
        process.env.MODELS_DIR ?? path.resolve(__dirname, '..', '..', 'models'),
      );
      const detector = onnx.ModelProto.decode(fs.readFileSync(modelPath));
      const graph = detector.graph!;
      graph.input![0].type!.tensorType!.shape!.dim = [1, size, size, 3].map((d) => ({ dimValue: d }));
      const taps = graph
        .node!.filter((n) => n.opType === 'HardSwish')
        .slice(-3)
        .map((n) => n.output![0]);
      taps.forEach((tap, i) => {
        graph.node!.push({
          opType: 'GlobalAveragePool',
          input: [tap],
          output: [`tap${i}_pool`],
          name: `tap${i}_pool_node`,
        });
        graph.node!.push({
          opType: 'Flatten',
          input: [`tap${i}_pool`],
          output: [`tap${i}`],
          name: `tap${i}_node`,
          attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }],
        });
        graph.output!.push({ name: `tap${i}`, type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT } } });
      });
      const model = onnx.ModelProto.encode(detector).finish();
      // Each tap's channels: the output channels of the convolution its hard-swish follows.
      const producer = (tensor: string) => graph.node!.find((n) => n.output!.includes(tensor))!;
      const weight = (name: string) => graph.initializer!.find((t) => t.name === name)!;
      const dim = taps.reduce(
        (sum, tap) => sum + Number(weight(producer(producer(tap).input![0]).input![1]).dims![0]),
        0,
      );
      const manifest: PackManifest = {
        id: 'bundled',
        version: 1,
        model: 'model.onnx',
        input: { name: 'images', size, mean: [0, 0, 0], std: [1 / 255, 1 / 255, 1 / 255] },
        embedding: { outputs: taps.map((_, i) => `tap${i}`), dim },
        heads: {},
      };
      const classes = ['cars', 'trucks'];
      const built = buildClassifierOnnx([packEmbeddingSource(model, manifest)], head(dim, classes), INFO);
      const coreMl = await decodeMlModel(
        onnxToCoreMlClassifier(built.model, {
          classes,
          input: built.input,
          shortDescription: 's',
          versionString: '3',
          metadata: {},
        }).bytes,
      );
      expect(coreMl.neuralNetworkClassifier.layers.some((l: any) => l.layer === 'permute')).toBe(false);
      const session = await ort.InferenceSession.create(encodeOnnx(built.model));
      const rgb = fs.existsSync(darknetPhotoPath('dog'))
        ? (await decodeImage(darknetPhoto('dog').bytes, 'dog.jpg', size)).rgb
        : pictures(1, size)[0];
      const nchw = new Float32Array(3 * size * size);
      for (let c = 0; c < 3; c++) for (let p = 0; p < size * size; p++) nchw[c * size * size + p] = rgb[p * 3 + c];
      const expected = (await session.run({ image: new ort.Tensor('float32', nchw, [1, 3, size, size]) })).scores
        .data as Float32Array;
      const probabilities = runNeuralNetworkClassifier(coreMl, rgb, size);
      classes.forEach((cls, k) => expect(Math.abs(probabilities.get(cls)! - expected[k])).toBeLessThan(1e-5));
      expect(Math.max(...expected)).toBeLessThan(0.999);
      expect(Math.min(...expected)).toBeGreaterThan(0.001);
      await session.release();
    },
  );

  it('composes two embedding networks (NHWC 0–255 and NCHW ImageNet-normalised) into one ONNX export that scores like the Embedder', async () => {
    const composed = composedClassifier();
    const rgbs = pictures(2);
    const expected = await embedderScores(composed, rgbs);
    const session = await ort.InferenceSession.create(encodeOnnx(composed.built.model));
    const plane = SIZE * SIZE;
    for (const [n, rgb] of rgbs.entries()) {
      // The export takes the picture once, with the first network's normalisation (0–255 here).
      const pixels = new Float32Array(3 * plane);
      for (let c = 0; c < 3; c++) for (let p = 0; p < plane; p++) pixels[c * plane + p] = rgb[p * 3 + c];
      const exported = (await session.run({ image: new ort.Tensor('float32', pixels, [1, 3, SIZE, SIZE]) })).scores
        .data as Float32Array;
      expected[n].forEach((score, k) => expect(Math.abs(exported[k] - score)).toBeLessThan(1e-5));
    }
    await session.release();

    const { sources, trained } = composed;
    const otherSize = smallNchwNetwork(48);
    expect(() =>
      buildClassifierOnnx(
        [sources[0], { ...sources[1], model: otherSize.model, input: otherSize.input }],
        trained,
        INFO,
      ),
    ).toThrow(/input sizes \(32, 48\) are not whole fractions of the largest/);
  });

  withCoreMlSpec(
    'maps the two composed embedding networks to a Core ML export that scores like the Embedder',
    async () => {
      const composed = composedClassifier();
      const { classes, built } = composed;
      const coreMl = await decodeMlModel(
        onnxToCoreMlClassifier(built.model, {
          classes,
          input: built.input,
          shortDescription: 's',
          versionString: '3',
          metadata: {},
        }).bytes,
      );
      const rgbs = pictures(2);
      const expected = await embedderScores(composed, rgbs);
      for (const [n, rgb] of rgbs.entries()) {
        const probabilities = runNeuralNetworkClassifier(coreMl, rgb, SIZE);
        classes.forEach((cls, k) => expect(Math.abs(probabilities.get(cls)! - expected[n][k])).toBeLessThan(1e-5));
      }
    },
  );

  describe('with the "any of my classes" head', () => {
    const classes = ['alpha', 'beta', 'gamma'];
    const rgbs = pictures(6);
    /** Known weights, and a threshold that half the pictures fall below. */
    async function withKnown() {
      const weights = random(31)(22, 3);
      const plain = composedClassifier(undefined, classes);
      const decisions = (await embedderEmbeddings(plain, rgbs)).map((e) =>
        e.reduce((z, v, k) => z + weights[k] * (v - plain.trained.center[k]), 0),
      );
      const sorted = [...decisions].sort((a, b) => a - b);
      const threshold = (sorted[2] + sorted[3]) / 2;
      return { composed: composedClassifier({ weights, bias: 0, threshold }, classes), decisions, threshold };
    }

    it('carries its rejection in the ONNX graph: scores as the service, every class below 0.5 for pictures it rejects', async () => {
      const { composed, decisions, threshold } = await withKnown();
      expect(composed.built.model.graph!.node!.some((n) => n.output?.[0] === 'export/known/margin')).toBe(true);
      const expected = await embedderScores(composed, rgbs);
      const session = await ort.InferenceSession.create(encodeOnnx(composed.built.model));
      const plane = SIZE * SIZE;
      for (const [n, rgb] of rgbs.entries()) {
        const pixels = new Float32Array(3 * plane);
        for (let c = 0; c < 3; c++) for (let p = 0; p < plane; p++) pixels[c * plane + p] = rgb[p * 3 + c];
        const exported = (await session.run({ image: new ort.Tensor('float32', pixels, [1, 3, SIZE, SIZE]) })).scores
          .data as Float32Array;
        expected[n].forEach((score, k) => expect(Math.abs(exported[k] - score)).toBeLessThan(1e-5));
        if (decisions[n] < threshold) expect(Math.max(...exported)).toBeLessThan(0.5);
        // The ranking is the plain head's.
        const plain = scoreHead(
          { ...composed.trained, known: undefined },
          (await embedderEmbeddings(composed, [rgb]))[0],
        );
        expect(
          Array.from(exported)
            .map((_, k) => k)
            .sort((a, b) => exported[b] - exported[a]),
        ).toEqual(plain.map((_, k) => k).sort((a, b) => plain[b] - plain[a]));
      }
      await session.release();
      // Core ML maps every op of it (decoding and running the .mlmodel needs Apple's spec: the test below).
      const coreMl = onnxToCoreMlClassifier(composed.built.model, {
        classes,
        input: composed.built.input,
        shortDescription: 's',
        versionString: '3',
        metadata: {},
      });
      expect(coreMl.bytes.length).toBeGreaterThan(0);
    });

    withCoreMlSpec('carries its rejection in the Core ML export too', async () => {
      const { composed } = await withKnown();
      const coreMl = await decodeMlModel(
        onnxToCoreMlClassifier(composed.built.model, {
          classes,
          input: composed.built.input,
          shortDescription: 's',
          versionString: '3',
          metadata: {},
        }).bytes,
      );
      const expected = await embedderScores(composed, rgbs);
      for (const [n, rgb] of rgbs.entries()) {
        const probabilities = runNeuralNetworkClassifier(coreMl, rgb, SIZE);
        classes.forEach((cls, k) => expect(Math.abs(probabilities.get(cls)! - expected[n][k])).toBeLessThan(1e-5));
      }
    });
  });
});
