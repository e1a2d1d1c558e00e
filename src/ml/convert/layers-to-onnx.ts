import { OnnxGraphBuilder } from '../onnx/onnx-graph-builder';
import { LayerConversionError } from './errors';
import type { KerasGraph, KerasLayer } from './keras-topology';

export interface WeightTensor {
  shape: number[];
  data: Float32Array;
}

export interface OnnxOutputSpec {
  /** Keras layer whose output becomes a graph output. */
  layer: string;
  /** Name of the ONNX graph output. */
  name: string;
  /** Global-average-pool the [N,C,H,W] activation to [N,C] inside the graph. */
  globalAveragePool?: boolean;
}

export interface LayersToOnnxOptions {
  graphName: string;
  /** Name of the ONNX input: float [N,C,H,W] (NCHW, where Keras used NHWC). */
  inputName: string;
  outputs: OnnxOutputSpec[];
}

/** Spatial padding [top, left, bottom, right], ONNX `pads` order for 2-D ops. */
type Pads = [number, number, number, number];

/** An ONNX tensor standing for a Keras layer's output. Shapes leave out the batch: [C,H,W] or [F]. */
interface Value {
  tensor: string;
  shape: number[];
  /** Zero padding a ZeroPadding2D asked for, not yet applied: convolutions absorb it into their own `pads`. */
  pendingPads?: Pads;
  /** The tensor with `pendingPads` applied, once some non-convolution consumer needed it. */
  padded?: Value;
}

const CONVOLUTIONS = new Set(['Conv2D', 'DepthwiseConv2D']);

/**
 * Converts a Keras functional model (channels_last, as TF.js stores it) to an ONNX model
 * (NCHW, opset 13). Walks the layers in the model's order following `inbound_nodes`;
 * folds each BatchNormalization into the convolution before it, and each ZeroPadding2D into
 * the convolution after it. Throws LayerConversionError for anything it cannot express.
 */
export function convertKerasToOnnx(
  graph: KerasGraph,
  weights: Map<string, WeightTensor>,
  options: LayersToOnnxOptions,
): Uint8Array {
  const converter = new KerasToOnnx(graph, weights, options.inputName, new OnnxGraphBuilder(options.graphName));
  for (const layer of graph.layers) converter.convertLayer(layer);
  return converter.finish(options.outputs);
}

class KerasToOnnx {
  private readonly values = new Map<string, Value>();
  /** BatchNormalization layers already folded into their convolution. */
  private readonly foldedNorms = new Set<string>();
  private readonly scalars = new Map<number, string>();

  constructor(
    private readonly graph: KerasGraph,
    private readonly weights: Map<string, WeightTensor>,
    private readonly inputName: string,
    private readonly builder: OnnxGraphBuilder,
  ) {}

  convertLayer(layer: KerasLayer): void {
    if (layer.config.data_format !== undefined && layer.config.data_format !== 'channels_last') {
      throw new LayerConversionError(
        layer.name,
        layer.className,
        `data_format ${String(layer.config.data_format)} is not supported`,
      );
    }
    switch (layer.className) {
      case 'InputLayer':
        return this.set(layer, this.inputLayer(layer));
      case 'ZeroPadding2D':
        return this.set(layer, this.zeroPadding(layer));
      case 'Conv2D':
      case 'DepthwiseConv2D':
        return this.convolution(layer);
      case 'BatchNormalization':
        if (this.foldedNorms.has(layer.name)) return;
        throw new LayerConversionError(
          layer.name,
          layer.className,
          'only supported directly after a linear Conv2D/DepthwiseConv2D that feeds nothing else',
        );
      case 'ReLU':
        return this.set(layer, this.relu(layer));
      case 'Add':
        return this.set(layer, this.add(layer));
      case 'AveragePooling2D':
        return this.set(layer, this.averagePooling(layer));
      case 'Flatten':
        return this.set(layer, this.flatten(layer));
      case 'Dense':
        return this.set(layer, this.dense(layer));
      case 'Dropout':
        // Inference-time identity.
        return this.set(layer, this.singleInput(layer, { allowPendingPads: true }));
      default:
        throw new LayerConversionError(layer.name, layer.className, 'unsupported layer type');
    }
  }

  finish(outputs: OnnxOutputSpec[]): Uint8Array {
    for (const spec of outputs) {
      const layer = this.graph.byName.get(spec.layer);
      const source = layer && this.values.get(layer.name);
      if (!layer || !source) throw new LayerConversionError(spec.layer, 'output', 'no such layer in the model');
      const value = this.materialise(source);
      if (spec.globalAveragePool) {
        if (value.shape.length !== 3)
          throw new LayerConversionError(spec.layer, layer.className, 'global average pool needs a [C,H,W] activation');
        const pooled = this.builder.node('GlobalAveragePool', [value.tensor]);
        this.builder.node('Flatten', [pooled], { axis: 1 }, spec.name);
        this.builder.output(spec.name, ['N', value.shape[0]]);
      } else {
        this.builder.node('Identity', [value.tensor], {}, spec.name);
        this.builder.output(spec.name, ['N', ...value.shape]);
      }
    }
    return this.builder.toBuffer();
  }

  private set(layer: KerasLayer, value: Value): void {
    this.values.set(layer.name, value);
  }

  private inputLayer(layer: KerasLayer): Value {
    const shape = layer.config.batch_input_shape;
    if (!Array.isArray(shape) || shape.length !== 4 || !shape.slice(1).every((d) => Number.isInteger(d))) {
      throw new LayerConversionError(
        layer.name,
        layer.className,
        `expected batch_input_shape [null,H,W,C], got ${JSON.stringify(shape)}`,
      );
    }
    const [, height, width, channels] = shape as number[];
    this.builder.input(this.inputName, ['N', channels, height, width]);
    return { tensor: this.inputName, shape: [channels, height, width] };
  }

  private zeroPadding(layer: KerasLayer): Value {
    const input = this.singleInput(layer, { allowPendingPads: false });
    const padding = layer.config.padding;
    const pads = parseZeroPadding(padding);
    if (!pads)
      throw new LayerConversionError(layer.name, layer.className, `unsupported padding ${JSON.stringify(padding)}`);
    const [channels, height, width] = input.shape;
    return {
      tensor: input.tensor,
      shape: [channels, height + pads[0] + pads[2], width + pads[1] + pads[3]],
      pendingPads: pads,
    };
  }

  private convolution(layer: KerasLayer): void {
    const input = this.singleInput(layer, { allowPendingPads: true });
    const [inChannels, paddedHeight, paddedWidth] = input.shape;
    const depthwise = layer.className === 'DepthwiseConv2D';
    const kernel = this.weight(layer, depthwise ? 'depthwise_kernel' : 'kernel');
    const [kh, kw, kernelIn, kernelOut] = kernel.shape;
    if (kernel.shape.length !== 4 || kernelIn !== inChannels) {
      throw new LayerConversionError(
        layer.name,
        layer.className,
        `kernel shape ${JSON.stringify(kernel.shape)} does not fit ${inChannels} input channels`,
      );
    }
    const outChannels = depthwise ? inChannels * kernelOut : kernelOut;
    const onnxKernel = depthwise ? depthwiseKernelToOnnx(kernel) : convKernelToOnnx(kernel);
    const bias = layer.config.use_bias
      ? Float32Array.from(this.weight(layer, 'bias').data)
      : new Float32Array(outChannels);

    const strides = intPair(layer, 'strides');
    const dilations = intPair(layer, 'dilation_rate');
    // TF computes "same" padding on the zero-padded size; ONNX takes both paddings as one.
    let same: Pads = [0, 0, 0, 0];
    if (layer.config.padding === 'same') {
      const [top, bottom] = samePadding(paddedHeight, kh, strides[0], dilations[0]);
      const [left, right] = samePadding(paddedWidth, kw, strides[1], dilations[1]);
      same = [top, left, bottom, right];
    } else if (layer.config.padding !== 'valid') {
      throw new LayerConversionError(
        layer.name,
        layer.className,
        `unsupported padding ${String(layer.config.padding)}`,
      );
    }
    const pending = input.pendingPads ?? [0, 0, 0, 0];
    const pads = same.map((p, i) => p + pending[i]);
    const outHeight = convOutputSize(paddedHeight + same[0] + same[2], kh, strides[0], dilations[0]);
    const outWidth = convOutputSize(paddedWidth + same[1] + same[3], kw, strides[1], dilations[1]);

    const activation = String(layer.config.activation ?? 'linear');
    const norm = this.foldableNorm(layer, activation);
    if (norm) {
      foldBatchNorm(onnxKernel, bias, this.batchNormParams(norm, outChannels));
      this.foldedNorms.add(norm.name);
    }
    const w = this.builder.initializer({
      name: `${layer.name}/W`,
      dims: [outChannels, depthwise ? 1 : inChannels, kh, kw],
      data: onnxKernel,
    });
    const b = this.builder.initializer({ name: `${layer.name}/B`, dims: [outChannels], data: bias });
    const conv = this.builder.node('Conv', [input.tensor, w, b], {
      kernel_shape: [kh, kw],
      strides,
      pads,
      dilations,
      group: depthwise ? inChannels : 1,
    });
    const value = this.activation(layer, { tensor: conv, shape: [outChannels, outHeight, outWidth] }, activation);
    this.set(layer, value);
    if (norm) this.set(norm, value);
  }

  /** The BatchNormalization right after this convolution, if it can be folded into its weights. */
  private foldableNorm(layer: KerasLayer, activation: string): KerasLayer | undefined {
    if (layer.consumers.length !== 1 || activation !== 'linear') return undefined;
    const next = this.graph.byName.get(layer.consumers[0]);
    return next?.className === 'BatchNormalization' ? next : undefined;
  }

  private batchNormParams(norm: KerasLayer, channels: number): BatchNormParams {
    const axis = norm.config.axis;
    if (axis !== -1 && axis !== 3 && !(Array.isArray(axis) && axis.length === 1 && (axis[0] === -1 || axis[0] === 3))) {
      throw new LayerConversionError(
        norm.name,
        norm.className,
        `only the channel axis is supported, got ${JSON.stringify(axis)}`,
      );
    }
    const param = (name: string): Float32Array => {
      const data = this.weight(norm, name).data;
      if (data.length !== channels)
        throw new LayerConversionError(
          norm.name,
          norm.className,
          `${name} has ${data.length} values for ${channels} channels`,
        );
      return data;
    };
    return {
      gamma: norm.config.scale === false ? new Float32Array(channels).fill(1) : param('gamma'),
      beta: norm.config.center === false ? new Float32Array(channels) : param('beta'),
      mean: param('moving_mean'),
      variance: param('moving_variance'),
      epsilon: Number(norm.config.epsilon ?? 1e-3),
    };
  }

  private relu(layer: KerasLayer): Value {
    const input = this.singleInput(layer, { allowPendingPads: false });
    const { max_value: maxValue, negative_slope: slope = 0, threshold = 0 } = layer.config;
    if (slope !== 0 || threshold !== 0) {
      throw new LayerConversionError(
        layer.name,
        layer.className,
        'negative_slope and threshold other than 0 are not supported',
      );
    }
    if (maxValue === null || maxValue === undefined)
      return { tensor: this.builder.node('Relu', [input.tensor]), shape: input.shape };
    const clipped = this.builder.node('Clip', [input.tensor, this.scalar(0), this.scalar(Number(maxValue))]);
    return { tensor: clipped, shape: input.shape };
  }

  private add(layer: KerasLayer): Value {
    const inputs = layer.inputs.map((name) => this.materialise(this.valueOf(layer, name)));
    const shape = JSON.stringify(inputs[0].shape);
    if (inputs.length < 2 || inputs.some((v) => JSON.stringify(v.shape) !== shape)) {
      throw new LayerConversionError(
        layer.name,
        layer.className,
        `needs two or more inputs of one shape, got ${inputs.map((v) => JSON.stringify(v.shape)).join(', ')}`,
      );
    }
    const sum = inputs.slice(1).reduce((acc, v) => this.builder.node('Add', [acc, v.tensor]), inputs[0].tensor);
    return { tensor: sum, shape: inputs[0].shape };
  }

  private averagePooling(layer: KerasLayer): Value {
    const input = this.singleInput(layer, { allowPendingPads: false });
    const [channels, height, width] = input.shape;
    const [kh, kw] = intPair(layer, 'pool_size');
    const strides = layer.config.strides === null ? [kh, kw] : intPair(layer, 'strides');
    let pads: Pads = [0, 0, 0, 0];
    if (layer.config.padding === 'same') {
      // TF excludes the padding from the average; so does ONNX with count_include_pad = 0 (its default).
      const [top, bottom] = samePadding(height, kh, strides[0], 1);
      const [left, right] = samePadding(width, kw, strides[1], 1);
      pads = [top, left, bottom, right];
    } else if (layer.config.padding !== 'valid') {
      throw new LayerConversionError(
        layer.name,
        layer.className,
        `unsupported padding ${String(layer.config.padding)}`,
      );
    }
    const pooled = this.builder.node('AveragePool', [input.tensor], { kernel_shape: [kh, kw], strides, pads });
    const outHeight = convOutputSize(height + pads[0] + pads[2], kh, strides[0], 1);
    const outWidth = convOutputSize(width + pads[1] + pads[3], kw, strides[1], 1);
    return { tensor: pooled, shape: [channels, outHeight, outWidth] };
  }

  private flatten(layer: KerasLayer): Value {
    const input = this.singleInput(layer, { allowPendingPads: false });
    if (input.shape.length === 1) return input;
    const [channels, height, width] = input.shape;
    // Keras flattens HWC order; back to NHWC first unless the map is 1×1, where the orders agree.
    const source =
      height * width === 1 ? input.tensor : this.builder.node('Transpose', [input.tensor], { perm: [0, 2, 3, 1] });
    return { tensor: this.builder.node('Flatten', [source], { axis: 1 }), shape: [channels * height * width] };
  }

  private dense(layer: KerasLayer): Value {
    const input = this.singleInput(layer, { allowPendingPads: false });
    const kernel = this.weight(layer, 'kernel');
    if (input.shape.length !== 1 || kernel.shape.length !== 2 || kernel.shape[0] !== input.shape[0]) {
      throw new LayerConversionError(
        layer.name,
        layer.className,
        `kernel ${JSON.stringify(kernel.shape)} does not fit input ${JSON.stringify(input.shape)} (Dense needs a flat input)`,
      );
    }
    const units = kernel.shape[1];
    const inputs = [
      input.tensor,
      this.builder.initializer({ name: `${layer.name}/W`, dims: kernel.shape, data: kernel.data }),
    ];
    if (layer.config.use_bias)
      inputs.push(
        this.builder.initializer({ name: `${layer.name}/B`, dims: [units], data: this.weight(layer, 'bias').data }),
      );
    const product = this.builder.node('Gemm', inputs);
    return this.activation(layer, { tensor: product, shape: [units] }, String(layer.config.activation ?? 'linear'));
  }

  private activation(layer: KerasLayer, value: Value, activation: string): Value {
    switch (activation) {
      case 'linear':
        return value;
      case 'relu':
        return { tensor: this.builder.node('Relu', [value.tensor]), shape: value.shape };
      case 'softmax':
        // Keras applies it over the last (channel) axis, which is axis 1 in NCHW and in [N,F].
        return { tensor: this.builder.node('Softmax', [value.tensor], { axis: 1 }), shape: value.shape };
      default:
        throw new LayerConversionError(layer.name, layer.className, `unsupported activation ${activation}`);
    }
  }

  private singleInput(layer: KerasLayer, { allowPendingPads }: { allowPendingPads: boolean }): Value {
    if (layer.inputs.length !== 1)
      throw new LayerConversionError(layer.name, layer.className, `expected one input, got ${layer.inputs.length}`);
    const value = this.valueOf(layer, layer.inputs[0]);
    const absorbs = allowPendingPads && (CONVOLUTIONS.has(layer.className) || layer.className === 'Dropout');
    return absorbs ? value : this.materialise(value);
  }

  private valueOf(layer: KerasLayer, inputName: string): Value {
    const value = this.values.get(inputName);
    if (!value)
      throw new LayerConversionError(
        layer.name,
        layer.className,
        `input ${inputName} has not been converted before it`,
      );
    return value;
  }

  /** Applies pending zero padding with a Pad node (once per tensor) for consumers that cannot absorb it. */
  private materialise(value: Value): Value {
    if (!value.pendingPads) return value;
    if (!value.padded) {
      const [top, left, bottom, right] = value.pendingPads;
      const pads = this.builder.initializer({
        name: this.builder.name('pads'),
        dims: [8],
        data: BigInt64Array.from([0, 0, top, left, 0, 0, bottom, right].map(BigInt)),
      });
      value.padded = { tensor: this.builder.node('Pad', [value.tensor, pads]), shape: value.shape };
    }
    return value.padded;
  }

  private weight(layer: KerasLayer, param: string): WeightTensor {
    const weight = this.weights.get(`${layer.name}/${param}`);
    if (!weight)
      throw new LayerConversionError(layer.name, layer.className, `weight ${layer.name}/${param} is missing`);
    return weight;
  }

  private scalar(value: number): string {
    let name = this.scalars.get(value);
    if (!name) {
      name = this.builder.initializer({ name: this.builder.name('scalar'), dims: [], data: Float32Array.of(value) });
      this.scalars.set(value, name);
    }
    return name;
  }
}

interface BatchNormParams {
  gamma: Float32Array;
  beta: Float32Array;
  mean: Float32Array;
  variance: Float32Array;
  epsilon: number;
}

/** y = gamma·(conv(x) + b − mean)/√(var + ε) + beta, rewritten as a convolution with scaled weights and bias. */
function foldBatchNorm(kernel: Float32Array, bias: Float32Array, norm: BatchNormParams): void {
  const perChannel = kernel.length / bias.length;
  for (let o = 0; o < bias.length; o += 1) {
    const scale = norm.gamma[o] / Math.sqrt(norm.variance[o] + norm.epsilon);
    for (let i = o * perChannel; i < (o + 1) * perChannel; i += 1) kernel[i] *= scale;
    bias[o] = (bias[o] - norm.mean[o]) * scale + norm.beta[o];
  }
}

/** Keras [kh, kw, in, out] → ONNX [out, in, kh, kw]. */
function convKernelToOnnx({ shape: [kh, kw, cin, cout], data }: WeightTensor): Float32Array {
  const out = new Float32Array(data.length);
  for (let y = 0; y < kh; y += 1)
    for (let x = 0; x < kw; x += 1)
      for (let i = 0; i < cin; i += 1)
        for (let o = 0; o < cout; o += 1)
          out[((o * cin + i) * kh + y) * kw + x] = data[((y * kw + x) * cin + i) * cout + o];
  return out;
}

/** Keras depthwise [kh, kw, in, multiplier] → ONNX grouped [in·multiplier, 1, kh, kw]; TF orders output channels c·multiplier + m, as ONNX groups do. */
function depthwiseKernelToOnnx({ shape: [kh, kw, cin, multiplier], data }: WeightTensor): Float32Array {
  const out = new Float32Array(data.length);
  for (let y = 0; y < kh; y += 1)
    for (let x = 0; x < kw; x += 1)
      for (let c = 0; c < cin; c += 1)
        for (let m = 0; m < multiplier; m += 1)
          out[((c * multiplier + m) * kh + y) * kw + x] = data[((y * kw + x) * cin + c) * multiplier + m];
  return out;
}

/** TF's "same" padding: output ceil(in / stride), any odd pixel of padding goes at the end. */
function samePadding(size: number, kernel: number, stride: number, dilation: number): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

function convOutputSize(paddedSize: number, kernel: number, stride: number, dilation: number): number {
  return Math.floor((paddedSize - ((kernel - 1) * dilation + 1)) / stride) + 1;
}

function intPair(layer: KerasLayer, key: string): [number, number] {
  const value = layer.config[key];
  if (Array.isArray(value) && value.length === 2 && value.every((v) => Number.isInteger(v)))
    return [value[0], value[1]];
  if (Number.isInteger(value)) return [value as number, value as number];
  throw new LayerConversionError(
    layer.name,
    layer.className,
    `expected ${key} as two integers, got ${JSON.stringify(value)}`,
  );
}

/** Keras accepts p, [h, w] or [[top, bottom], [left, right]]. */
function parseZeroPadding(padding: unknown): Pads | undefined {
  if (Number.isInteger(padding)) {
    const p = padding as number;
    return [p, p, p, p];
  }
  if (!Array.isArray(padding) || padding.length !== 2) return undefined;
  if (padding.every((p) => Number.isInteger(p))) return [padding[0], padding[1], padding[0], padding[1]];
  const [[top, bottom], [left, right]] = padding as number[][];
  return [top, bottom, left, right].every((p) => Number.isInteger(p)) ? [top, left, bottom, right] : undefined;
}
