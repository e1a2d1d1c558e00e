import fs from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';

/**
 * Apple's own Core ML specification (the .proto files of the `mlmodel/format` folder of
 * https://github.com/apple/coremltools, BSD-3), which the project does not ship: the project writes
 * .mlmodel files with its own encoder and the tests check them against it. COREML_SPEC_DIR names
 * that folder.
 */
const SPEC_DIR = process.env.COREML_SPEC_DIR || undefined;
const MODEL_PROTO = SPEC_DIR && path.join(SPEC_DIR, 'Model.proto');
const HOW_TO_ENABLE =
  "set COREML_SPEC_DIR to a copy of the mlmodel/format folder of Apple's coremltools (https://github.com/apple/coremltools, BSD-3)";
// Skipped only where nobody asked for the checks: under CI, or with a COREML_SPEC_DIR that holds no specification, they fail instead.
const skipped = SPEC_DIR === undefined && !process.env.CI;
if (skipped) console.warn(`SKIPPED the checks of Core ML exports against Apple's specification: ${HOW_TO_ENABLE}.`);

/** `it` for a test that decodes an export with Apple's specification; `it.skip` where it is not set up. */
export const withCoreMlSpec: jest.It = skipped ? it.skip : it;

let modelType: Promise<protobuf.Type> | undefined;

export function appleModelType(): Promise<protobuf.Type> {
  if (!MODEL_PROTO) throw new Error(`Apple's Core ML specification is needed under CI: ${HOW_TO_ENABLE}`);
  if (!fs.existsSync(MODEL_PROTO))
    throw new Error(`Apple's Core ML specification is not in COREML_SPEC_DIR (no ${MODEL_PROTO}): ${HOW_TO_ENABLE}`);
  modelType ??= protobuf.load(MODEL_PROTO).then((root) => root.lookupType('CoreML.Specification.Model'));
  return modelType;
}

/** Decodes an .mlmodel with Apple's schema into a plain object (int64 as numbers, enums by name, defaults filled in). */
export async function decodeMlModel(bytes: Uint8Array): Promise<any> {
  const type = await appleModelType();
  return type.toObject(type.decode(bytes), {
    longs: Number,
    enums: String,
    defaults: true,
    arrays: true,
    oneofs: true,
  });
}

/** A [C, H, W] blob in double precision. */
interface Blob {
  c: number;
  h: number;
  w: number;
  data: Float64Array;
}

const blob = (c: number, h: number, w: number): Blob => ({ c, h, w, data: new Float64Array(c * h * w) });

/**
 * A small reference interpreter of the Core ML NeuralNetwork layers the exporter emits (legacy,
 * rank-5 semantics, one image at a time), written from the spec's formulas in NeuralNetwork.proto.
 * Any other layer type fails the test.
 */
export function runNeuralNetworkClassifier(model: any, rgb: Uint8Array, size: number): Map<string, number> {
  const nn = model.neuralNetworkClassifier;
  const input = model.description.input[0];
  const blobs = new Map<string, Blob>();
  const scaler = nn.preprocessing.find((p: any) => p.featureName === input.name)?.scaler;
  if (!scaler) throw new Error('no image scaler for the input');
  const image = blob(3, size, size);
  const biases = [scaler.redBias, scaler.greenBias, scaler.blueBias];
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < size * size; p++)
      image.data[c * size * size + p] = scaler.channelScale * rgb[p * 3 + c] + biases[c];
  }
  blobs.set(input.name, image);
  for (const layer of nn.layers) {
    const inputs = layer.input.map((name: string) => {
      const b = blobs.get(name);
      if (!b) throw new Error(`layer ${layer.name}: input ${name} not computed yet`);
      return b;
    });
    blobs.set(layer.output[0], runLayer(layer, inputs));
  }
  const probs = blobs.get(nn.labelProbabilityLayerName);
  if (!probs) throw new Error(`no blob ${nn.labelProbabilityLayerName}`);
  const labels: string[] = nn.stringClassLabels.vector;
  if (probs.data.length !== labels.length)
    throw new Error(`${probs.data.length} probabilities for ${labels.length} labels`);
  return new Map(labels.map((label, i) => [label, probs.data[i]]));
}

function runLayer(layer: any, inputs: Blob[]): Blob {
  const [x] = inputs;
  switch (layer.layer) {
    case 'convolution':
      return convolution(layer.convolution, x);
    case 'pooling':
      return pooling(layer.pooling, x);
    case 'activation':
      return activation(layer.activation, x);
    case 'unary': {
      const u = layer.unary;
      if (u.type !== 'THRESHOLD') throw new Error(`unary ${u.type} is not in the reference`);
      const scale = u.scale === 0 ? 1 : u.scale;
      const data = new Float64Array(x.data.length);
      for (let i = 0; i < data.length; i++) {
        const v = scale * x.data[i] + u.shift;
        data[i] = v > u.alpha ? v : u.alpha;
      }
      return { ...x, data };
    }
    case 'add':
    case 'multiply': {
      const add = layer.layer === 'add';
      if (inputs.length === 1) {
        const { alpha } = layer[layer.layer];
        const data = new Float64Array(x.data.length);
        for (let i = 0; i < data.length; i++) data[i] = add ? x.data[i] + alpha : x.data[i] * alpha;
        return { ...x, data };
      }
      return inputs.slice(1).reduce((acc, b) => broadcast(acc, b, add), x);
    }
    case 'scale': {
      const s = layer.scale;
      let y = withParam(x, s.shapeScale, s.scale.floatValue, (v, p) => v * p);
      if (s.hasBias) y = withParam(y, s.shapeBias, s.bias.floatValue, (v, p) => v + p);
      return y;
    }
    case 'bias':
      return withParam(x, layer.bias.shape, layer.bias.bias.floatValue, (v, p) => v + p);
    case 'l2normalize': {
      const epsilon = layer.l2normalize.epsilon === 0 ? 1e-6 : layer.l2normalize.epsilon;
      let sum = 0;
      for (const v of x.data) sum += v * v;
      const norm = Math.sqrt(sum + epsilon);
      return map(x, (v) => v / norm);
    }
    case 'flatten': {
      if (layer.flatten.mode !== 'CHANNEL_FIRST') throw new Error('flatten CHANNEL_LAST is not in the reference');
      return { c: x.data.length, h: 1, w: 1, data: Float64Array.from(x.data) };
    }
    case 'concat': {
      if (layer.concat.sequenceConcat) throw new Error('sequence concat is not in the reference');
      const out = blob(
        inputs.reduce((n, b) => n + b.c, 0),
        x.h,
        x.w,
      );
      let at = 0;
      for (const b of inputs) {
        out.data.set(b.data, at);
        at += b.data.length;
      }
      return out;
    }
    case 'innerProduct': {
      const p = layer.innerProduct;
      const [inC, outC] = [p.inputChannels, p.outputChannels];
      if (x.data.length !== inC) throw new Error(`innerProduct ${layer.name}: ${x.data.length} inputs for ${inC}`);
      const out = blob(outC, 1, 1);
      for (let o = 0; o < outC; o++) {
        let z = p.hasBias ? p.bias.floatValue[o] : 0;
        for (let i = 0; i < inC; i++) z += p.weights.floatValue[o * inC + i] * x.data[i];
        out.data[o] = z;
      }
      return out;
    }
    case 'softmax': {
      const max = Math.max(...x.data);
      const exps = Array.from(x.data, (v) => Math.exp(v - max));
      const sum = exps.reduce((a, b) => a + b, 0);
      return { ...x, data: Float64Array.from(exps, (e) => e / sum) };
    }
    case 'padding': {
      const [hEdges, wEdges] = layer.padding.paddingAmounts.borderAmounts;
      const value = layer.padding.constant.value;
      const out = blob(
        x.c,
        x.h + hEdges.startEdgeSize + hEdges.endEdgeSize,
        x.w + wEdges.startEdgeSize + wEdges.endEdgeSize,
      );
      out.data.fill(value);
      for (let c = 0; c < x.c; c++)
        for (let y = 0; y < x.h; y++)
          for (let xx = 0; xx < x.w; xx++)
            out.data[(c * out.h + y + hEdges.startEdgeSize) * out.w + xx + wEdges.startEdgeSize] =
              x.data[(c * x.h + y) * x.w + xx];
      return out;
    }
    case 'permute': {
      const axis: number[] = layer.permute.axis;
      if (axis[0] !== 0) throw new Error('permuting the sequence axis is not in the reference');
      const dims = [x.c, x.h, x.w];
      const outDims = [dims[axis[1] - 1], dims[axis[2] - 1], dims[axis[3] - 1]];
      const out = blob(outDims[0], outDims[1], outDims[2]);
      const index = [0, 0, 0];
      for (index[0] = 0; index[0] < outDims[0]; index[0]++)
        for (index[1] = 0; index[1] < outDims[1]; index[1]++)
          for (index[2] = 0; index[2] < outDims[2]; index[2]++) {
            const src = [0, 0, 0];
            for (let k = 0; k < 3; k++) src[axis[k + 1] - 1] = index[k];
            out.data[(index[0] * out.h + index[1]) * out.w + index[2]] = x.data[(src[0] * x.h + src[1]) * x.w + src[2]];
          }
      return out;
    }
    default:
      throw new Error(`layer ${layer.name}: ${layer.layer} is not in the reference interpreter`);
  }
}

function map(x: Blob, f: (v: number) => number): Blob {
  const data = new Float64Array(x.data.length);
  for (let i = 0; i < data.length; i++) data[i] = f(x.data[i]);
  return { ...x, data };
}

/** Activations with a loop per type: a closure per element is many times slower in jest's VM context. */
function activation(params: any, x: Blob): Blob {
  const src = x.data;
  const data = new Float64Array(src.length);
  switch (params.NonlinearityType) {
    case 'ReLU':
      for (let i = 0; i < src.length; i++) data[i] = src[i] > 0 ? src[i] : 0;
      break;
    case 'linear': {
      const { alpha, beta } = params.linear;
      for (let i = 0; i < src.length; i++) data[i] = alpha * src[i] + beta;
      break;
    }
    case 'sigmoid':
      for (let i = 0; i < src.length; i++) data[i] = 1 / (1 + Math.exp(-src[i]));
      break;
    case 'sigmoidHard': {
      const { alpha, beta } = params.sigmoidHard;
      for (let i = 0; i < src.length; i++) {
        const v = alpha * src[i] + beta;
        data[i] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
      break;
    }
    default:
      throw new Error(`activation ${params.NonlinearityType} is not in the reference`);
  }
  return { ...x, data };
}

/** Elementwise with a parameter of shape [1], [C], [1, H, W] or [C, H, W]. */
function withParam(x: Blob, shape: number[], values: number[], f: (v: number, p: number) => number): Blob {
  const count = shape.reduce((a, b) => a * b, 1);
  if (values.length !== count) throw new Error(`parameter of shape [${shape}] holds ${values.length} values`);
  const plane = x.h * x.w;
  const data = new Float64Array(x.data.length);
  for (let i = 0; i < data.length; i++) {
    const p = count === 1 ? 0 : shape.length === 1 ? Math.floor(i / plane) : shape[0] === 1 ? i % plane : i;
    data[i] = f(x.data[i], values[p]);
  }
  return { ...x, data };
}

/** Legacy broadcasting: b is [C,H,W], [C,1,1], [1,H,W] or [1,1,1] against a. */
function broadcast(a: Blob, b: Blob, add: boolean): Blob {
  const out = blob(a.c, a.h, a.w);
  for (let c = 0; c < a.c; c++)
    for (let y = 0; y < a.h; y++)
      for (let x = 0; x < a.w; x++) {
        const bv = b.data[((b.c === 1 ? 0 : c) * b.h + (b.h === 1 ? 0 : y)) * b.w + (b.w === 1 ? 0 : x)];
        const i = (c * a.h + y) * a.w + x;
        out.data[i] = add ? a.data[i] + bv : a.data[i] * bv;
      }
  return out;
}

function edges(padding: any): [number, number, number, number] {
  const amounts = padding?.paddingAmounts?.borderAmounts ?? [];
  const [h, w] = [
    amounts[0] ?? { startEdgeSize: 0, endEdgeSize: 0 },
    amounts[1] ?? { startEdgeSize: 0, endEdgeSize: 0 },
  ];
  return [h.startEdgeSize, w.startEdgeSize, h.endEdgeSize, w.endEdgeSize];
}

function convolution(p: any, x: Blob): Blob {
  if (p.ConvolutionPaddingType !== 'valid' || p.isDeconvolution)
    throw new Error('only valid-padded convolution is in the reference');
  const [kh, kw] = p.kernelSize;
  const [sh, sw] = p.stride.length ? p.stride : [1, 1];
  const [dh, dw] = p.dilationFactor.length ? p.dilationFactor : [1, 1];
  const [top, left, bottom, right] = edges(p.valid);
  const groups = p.nGroups || 1;
  const outC = p.outputChannels;
  const kc = p.kernelChannels;
  if (kc * groups !== x.c) throw new Error(`convolution: ${kc}x${groups} kernel channels for ${x.c} inputs`);
  const oh = Math.floor((x.h + top + bottom - ((kh - 1) * dh + 1)) / sh) + 1;
  const ow = Math.floor((x.w + left + right - ((kw - 1) * dw + 1)) / sw) + 1;
  const out = blob(outC, oh, ow);
  const weights = Float64Array.from(p.weights.floatValue as number[]);
  if (weights.length !== outC * kc * kh * kw)
    throw new Error(`convolution: ${weights.length} weights for [${outC}, ${kc}, ${kh}, ${kw}]`);
  const perGroupOut = outC / groups;
  const bias = (o: number): number => (p.hasBias ? p.bias.floatValue[o] : 0);
  if (kh === 1 && kw === 1 && sh === 1 && sw === 1 && top + left + bottom + right === 0) {
    pointwise(x, out, weights, kc, perGroupOut, bias);
    return out;
  }
  for (let o = 0; o < outC; o++) {
    const g = Math.floor(o / perGroupOut);
    const acc = out.data.subarray(o * oh * ow, (o + 1) * oh * ow);
    if (p.hasBias) acc.fill(p.bias.floatValue[o]);
    for (let ic = 0; ic < kc; ic++) {
      const plane = x.data.subarray((g * kc + ic) * x.h * x.w, (g * kc + ic + 1) * x.h * x.w);
      for (let ky = 0; ky < kh; ky++)
        for (let kx = 0; kx < kw; kx++) {
          const wv = weights[((o * kc + ic) * kh + ky) * kw + kx];
          if (wv === 0) continue;
          // Output columns whose input column lies inside the picture (the rest read padding zeros).
          const shift = kx * dw - left;
          const xFrom = Math.max(0, Math.ceil(-shift / sw));
          const xTo = Math.min(ow, Math.floor((x.w - 1 - shift) / sw) + 1);
          for (let y = 0; y < oh; y++) {
            const iy = y * sh + ky * dh - top;
            if (iy < 0 || iy >= x.h) continue;
            const row = iy * x.w + shift;
            const outRow = y * ow;
            for (let xx = xFrom; xx < xTo; xx++) acc[outRow + xx] += wv * plane[row + xx * sw];
          }
        }
    }
  }
  return out;
}

/** Pixels per tile of a pointwise convolution: four outputs' accumulators of one tile stay in the L1 cache. */
const POINTWISE_TILE = 512;

/**
 * A 1×1 convolution (stride 1, no padding): out[o] = bias[o] + Σ_ic w[o, ic] · x[g·kc + ic], summed in the
 * order of ic, so bit for bit what one multiply-add per input plane gives. Four outputs of a group at a
 * time over a tile of pixels: each input value read once for four outputs, and the accumulators stay in
 * cache (over whole planes, the memory traffic made this most of the interpreter's time).
 */
function pointwise(
  x: Blob,
  out: Blob,
  weights: Float64Array,
  kc: number,
  perGroupOut: number,
  bias: (o: number) => number,
): void {
  const pixels = x.h * x.w;
  const src = x.data;
  const dst = out.data;
  const acc = [0, 1, 2, 3].map(() => new Float64Array(POINTWISE_TILE));
  const [a0, a1, a2, a3] = acc;
  for (let start = 0; start < pixels; start += POINTWISE_TILE) {
    const n = Math.min(POINTWISE_TILE, pixels - start);
    for (let o = 0; o < out.c;) {
      const g = Math.floor(o / perGroupOut);
      const inputs = g * kc;
      // Outputs of this group still to do, at most four.
      const block = Math.min(4, (g + 1) * perGroupOut - o);
      for (let b = 0; b < 4; b++) acc[b].fill(b < block ? bias(o + b) : 0, 0, n);
      for (let ic = 0; ic < kc; ic++) {
        const from = (inputs + ic) * pixels + start;
        const w0 = weights[o * kc + ic];
        if (block === 4) {
          const w1 = weights[(o + 1) * kc + ic];
          const w2 = weights[(o + 2) * kc + ic];
          const w3 = weights[(o + 3) * kc + ic];
          for (let i = 0; i < n; i++) {
            const v = src[from + i];
            a0[i] += w0 * v;
            a1[i] += w1 * v;
            a2[i] += w2 * v;
            a3[i] += w3 * v;
          }
        } else {
          for (let b = 0; b < block; b++) {
            const wv = weights[(o + b) * kc + ic];
            const a = acc[b];
            for (let i = 0; i < n; i++) a[i] += wv * src[from + i];
          }
        }
      }
      for (let b = 0; b < block; b++) dst.set(acc[b].subarray(0, n), (o + b) * pixels + start);
      o += block;
    }
  }
}

function pooling(p: any, x: Blob): Blob {
  const max = p.type === 'MAX';
  if (p.type !== 'MAX' && p.type !== 'AVERAGE') throw new Error(`pooling ${p.type} is not in the reference`);
  if (p.globalPooling) {
    const out = blob(x.c, 1, 1);
    const plane = x.h * x.w;
    for (let c = 0; c < x.c; c++) {
      const values = x.data.subarray(c * plane, (c + 1) * plane);
      out.data[c] = max ? Math.max(...values) : values.reduce((a, b) => a + b, 0) / plane;
    }
    return out;
  }
  if (p.PoolingPaddingType !== 'valid') throw new Error('only valid-padded pooling is in the reference');
  const [kh, kw] = p.kernelSize;
  const [sh, sw] = p.stride;
  const [top, left, bottom, right] = edges(p.valid);
  const oh = Math.floor((x.h + top + bottom - kh) / sh) + 1;
  const ow = Math.floor((x.w + left + right - kw) / sw) + 1;
  const out = blob(x.c, oh, ow);
  for (let c = 0; c < x.c; c++)
    for (let y = 0; y < oh; y++)
      for (let xx = 0; xx < ow; xx++) {
        let acc = max ? -Infinity : 0;
        let count = 0;
        for (let ky = 0; ky < kh; ky++)
          for (let kx = 0; kx < kw; kx++) {
            const iy = y * sh + ky - top;
            const ix = xx * sw + kx - left;
            const inside = iy >= 0 && iy < x.h && ix >= 0 && ix < x.w;
            if (!inside && (max || p.avgPoolExcludePadding)) continue;
            const v = inside ? x.data[(c * x.h + iy) * x.w + ix] : 0;
            acc = max ? Math.max(acc, v) : acc + v;
            count++;
          }
        out.data[(c * oh + y) * ow + xx] = max ? acc : acc / count;
      }
  return out;
}
