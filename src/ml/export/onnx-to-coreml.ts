/**
 * Maps an ONNX graph (a classifier export from classifier-onnx.ts) to a Core ML
 * NeuralNetworkClassifier, node by node, with Core ML's "legacy" layers only (specification
 * version 1: iOS 11, macOS 10.13 and every later release). In those layers a blob is [C, H, W] per
 * image (the batch is implicit), so an ONNX [N, C, H, W] tensor is a blob [C, H, W] and an ONNX
 * [N, F] tensor is the blob [F, 1, 1]: this mapper tracks each tensor's ONNX shape (batch 1) and
 * emits the layer that computes the same values. An op, attribute or broadcast it cannot express
 * stops the export with a ModelExportError naming the node.
 *
 * Covered: what the bundled MobileNetV2 conversion and the CenterNet/MobileNetV3 conversion emit on
 * their way to the embedding taps (Conv, grouped/depthwise Conv, Relu, Clip, HardSigmoid,
 * HardSwish, Sigmoid, Add/Sub/Mul/Div with scalars, per-channel constants and same-shape or
 * squeeze-excite broadcasts, GlobalAveragePool, ReduceMean over H and W, AveragePool, MaxPool,
 * Pad, Flatten, Transpose pairs that cancel, Identity) and the embedding and head
 * (LpNormalization, Concat, Gemm, MatMul, Softmax, BatchNormalization).
 */
import { onnx } from 'onnx-proto';
import { COREML, encodeCoreMlModel, weightParams } from './coreml-schema';
import { ModelExportError } from './errors';
import type { ExportedInput } from './classifier-onnx';
import { attributes, readTensor, type AttributeValue, type ConstTensor } from './onnx-tensors';

/** The Core ML model's feature names (those of Watson's and coremltools' classifiers). */
export const COREML_INPUT = 'image';
export const COREML_LABEL = 'classLabel';
export const COREML_PROBABILITIES = 'classLabelProbs';
/**
 * Core ML's L2 normalisation divides by √(Σx² + ε), and ε = 0 means its default 1e-6, which moves the
 * scores of taps with small norms (the service divides by √Σx²). 1e-24 is still a normal float32.
 */
export const L2_EPSILON = 1e-24;

export interface CoreMlExportOptions {
  /** Labels in the order of the graph output's values. */
  classes: string[];
  /** What the graph's image input expects; becomes the image feature and its scale/bias preprocessing. */
  input: ExportedInput;
  shortDescription: string;
  versionString: string;
  /** Key/value metadata (Metadata.userDefined). */
  metadata: Record<string, string>;
}

export interface CoreMlExport {
  bytes: Uint8Array;
  specificationVersion: number;
  layers: number;
}

/** A tensor of the ONNX graph as a Core ML blob. `perm`: a Transpose not yet applied to `blob`. */
interface Value {
  blob: string;
  /** ONNX shape with batch 1. */
  shape: number[];
  pending?: { perm: number[]; source: Value };
}

type Layer = Record<string, unknown> & { name: string; input: string[]; output: string[] };

/**
 * Converts `model` (one float image input [N, 3, S, S], one output [N, classes] of probabilities)
 * into a serialised Core ML NeuralNetworkClassifier.
 */
export function onnxToCoreMlClassifier(model: onnx.IModelProto, options: CoreMlExportOptions): CoreMlExport {
  const graph = model.graph;
  if (!graph || (graph.input ?? []).length !== 1 || (graph.output ?? []).length !== 1) {
    throw new ModelExportError('a classifier graph needs exactly one input and one output');
  }
  const mapper = new Mapper(graph, options.input);
  for (const node of graph.node ?? []) mapper.map(node);
  const { layers, output } = mapper.finish(graph.output![0].name ?? '', options.classes.length);

  const { size } = options.input;
  const spec = {
    specificationVersion: 1,
    description: {
      input: [
        {
          name: COREML_INPUT,
          shortDescription: `RGB picture, ${size}x${size}: ${options.metadata.input_resize ?? (options.input.fit === 'stretch' ? 'stretched to the square' : 'scaled and centre-cropped')}`,
          type: { imageType: { width: size, height: size, colorSpace: COREML.colorSpaceRgb } },
        },
      ],
      output: [
        {
          name: COREML_PROBABILITIES,
          shortDescription:
            'Calibrated one-vs-rest probability of each class (independent; 0.5 is the decision threshold)',
          type: { dictionaryType: { stringKeyType: {} } },
        },
        { name: COREML_LABEL, shortDescription: 'The class with the highest score', type: { stringType: {} } },
      ],
      predictedFeatureName: COREML_LABEL,
      predictedProbabilitiesName: COREML_PROBABILITIES,
      metadata: {
        shortDescription: options.shortDescription,
        versionString: options.versionString,
        author: 'watson-vr-selfhosted',
        userDefined: options.metadata,
      },
    },
    neuralNetworkClassifier: {
      layers,
      preprocessing: [{ featureName: COREML_INPUT, scaler: mapper.scaler }],
      stringClassLabels: { vector: options.classes },
      labelProbabilityLayerName: output,
    },
  };
  return { bytes: encodeCoreMlModel(spec), specificationVersion: spec.specificationVersion, layers: layers.length };
}

class Mapper {
  private readonly values = new Map<string, Value>();
  private readonly constants = new Map<string, ConstTensor>();
  readonly layers: Layer[] = [];
  readonly scaler: Record<string, number>;
  private node!: onnx.INodeProto;
  private readonly usedBlobs = new Set<string>();

  constructor(graph: onnx.IGraphProto, input: ExportedInput) {
    for (const init of graph.initializer ?? []) this.constants.set(init.name ?? '', readTensor(init));
    const inputName = graph.input![0].name ?? '';
    const imageShape = [1, 3, input.size, input.size];
    this.usedBlobs.add(COREML_INPUT);
    // Core ML hands the network channelScale·pixel + bias[c]; one scale for all channels, so a
    // per-channel std needs a Scale layer after it.
    const uniformStd = input.std.every((s) => s === input.std[0]);
    const scale = uniformStd ? 1 / (255 * input.std[0]) : 1 / 255;
    // (0 − m) rather than −m: a zero mean gives a bias of 0, not −0.
    const bias = input.mean.map((m, c) => (uniformStd ? (0 - m) / input.std[c] : 0 - m));
    this.scaler = { channelScale: scale, redBias: bias[0], greenBias: bias[1], blueBias: bias[2] };
    let image: Value = { blob: COREML_INPUT, shape: imageShape };
    if (!uniformStd) {
      image = this.emit('image_std', [COREML_INPUT], imageShape, {
        scale: { shapeScale: [3], scale: weightParams(input.std.map((s) => 1 / s)), hasBias: false },
      });
    }
    this.values.set(inputName, image);
  }

  map(node: onnx.INodeProto): void {
    this.node = node;
    const op = node.opType ?? '';
    const out = node.output?.[0] ?? '';
    const attrs = attributes(node);
    switch (op) {
      case 'Identity':
      case 'Dropout':
        return this.alias(out, this.input(0));
      case 'Constant': {
        const value = attrs.get('value');
        if (!value || typeof value !== 'object' || Array.isArray(value))
          throw this.fail('only a tensor value is supported');
        this.constants.set(out, readTensor(value));
        return;
      }
      case 'Transpose':
        return this.transpose(out, attrs);
      case 'Conv':
        return this.conv(out, attrs);
      case 'Relu':
        return this.set(out, this.activation(out, this.input(0), { ReLU: {} }));
      case 'Sigmoid':
        return this.set(out, this.activation(out, this.input(0), { sigmoid: {} }));
      case 'HardSigmoid':
        return this.set(
          out,
          this.activation(out, this.input(0), {
            sigmoidHard: { alpha: num(attrs, 'alpha', 0.2), beta: num(attrs, 'beta', 0.5) },
          }),
        );
      case 'HardSwish': {
        // x · clamp(x/6 + 1/2, 0, 1)
        const x = this.input(0);
        const gate = this.activation(`${out}/gate`, x, { sigmoidHard: { alpha: 1 / 6, beta: 0.5 } });
        return this.set(out, this.emit(out, [x.blob, gate.blob], x.shape, { multiply: {} }));
      }
      case 'Clip':
        return this.clip(out, attrs);
      case 'Add':
      case 'Sub':
      case 'Mul':
      case 'Div':
        return this.binary(out, op);
      case 'GlobalAveragePool':
      case 'GlobalMaxPool':
        return this.globalPool(out, op === 'GlobalMaxPool' ? COREML.poolingMax : COREML.poolingAverage, true);
      case 'ReduceMean':
        return this.reduceMean(out, attrs);
      case 'AveragePool':
      case 'MaxPool':
        return this.pool(out, op, attrs);
      case 'Pad':
        return this.pad(out, attrs);
      case 'Flatten':
        return this.flatten(out, attrs);
      case 'Gemm':
        return this.gemm(out, attrs);
      case 'MatMul':
        return this.matMul(out);
      case 'Concat':
        return this.concat(out, attrs);
      case 'LpNormalization':
        return this.lpNormalization(out, attrs);
      case 'Softmax':
        return this.softmax(out, attrs);
      case 'BatchNormalization':
        return this.batchNorm(out, attrs);
      default:
        throw this.fail('unsupported op (no Core ML layer mapping)');
    }
  }

  finish(outputName: string, classes: number): { layers: Layer[]; output: string } {
    const value = this.values.get(outputName);
    if (!value) throw new ModelExportError(`the graph output ${outputName} is never computed`);
    const final = this.materialise(value);
    if (flatSize(final.shape) !== classes) {
      throw new ModelExportError(
        `the graph output ${outputName} has shape [${final.shape.join(', ')}], expected ${classes} class scores`,
      );
    }
    // The probabilities blob carries the feature's name, as coremltools names it.
    const last = this.layers.find((l) => l.output[0] === final.blob);
    if (!last) throw new ModelExportError(`the graph output ${outputName} is not computed by a layer`);
    for (const layer of this.layers)
      layer.input = layer.input.map((b) => (b === final.blob ? COREML_PROBABILITIES : b));
    last.output = [COREML_PROBABILITIES];
    return { layers: this.layers, output: COREML_PROBABILITIES };
  }

  // ---- values and layers

  private fail(reason: string): ModelExportError {
    return new ModelExportError(reason, { name: this.node.name ?? '', opType: this.node.opType ?? '' });
  }

  private inputName(index: number): string {
    const name = this.node.input?.[index];
    if (!name) throw this.fail(`input ${index} is missing`);
    return name;
  }

  private constOf(index: number): ConstTensor | undefined {
    const name = this.node.input?.[index];
    return name ? this.constants.get(name) : undefined;
  }

  /** The blob of a tensor input, with any pending transpose applied. */
  private input(index: number): Value {
    const name = this.inputName(index);
    const value = this.values.get(name);
    if (!value) {
      if (this.constants.has(name)) throw this.fail(`input ${name} is a constant where a computed tensor is needed`);
      throw this.fail(`input ${name} has not been computed before this node`);
    }
    return this.materialise(value);
  }

  private set(name: string, value: Value): void {
    this.values.set(name, value);
  }

  private alias(name: string, value: Value): void {
    this.values.set(name, value);
  }

  /** Appends a layer computing `outName`; returns its value. */
  private emit(outName: string, inputs: string[], shape: number[], params: Record<string, unknown>): Value {
    let blob = outName;
    for (let k = 2; this.usedBlobs.has(blob); k++) blob = `${outName}#${k}`;
    this.usedBlobs.add(blob);
    this.layers.push({ name: blob, input: inputs, output: [blob], ...params });
    return { blob, shape };
  }

  private activation(outName: string, x: Value, params: Record<string, unknown>): Value {
    return this.emit(outName, [x.blob], x.shape, { activation: params });
  }

  private materialise(value: Value): Value {
    if (!value.pending) return value;
    const { perm, source } = value.pending;
    if (perm.length !== 4 || perm[0] !== 0)
      throw this.fail(`a transpose by [${perm.join(', ')}] cannot be expressed (the batch axis must stay first)`);
    // Core ML's Permute reorders (Seq, C, H, W); ONNX's axes 1..3 are C, H, W.
    const permuted = this.emit(`${source.blob}/permuted`, [source.blob], value.shape, {
      permute: { axis: [0, perm[1], perm[2], perm[3]] },
    });
    value.pending = undefined;
    value.blob = permuted.blob;
    return value;
  }

  // ---- ops

  private transpose(out: string, attrs: Map<string, AttributeValue>): void {
    const name = this.inputName(0);
    const x = this.values.get(name);
    if (!x) throw this.fail(`input ${name} has not been computed before this node`);
    const rank = x.shape.length;
    const perm = (attrs.get('perm') as number[] | undefined) ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
    const shape = perm.map((p) => x.shape[p]);
    const source = x.pending?.source ?? x;
    // Transposing a pending transpose composes the two; when they cancel nothing is emitted.
    const composed = x.pending ? perm.map((p) => x.pending!.perm[p]) : perm;
    if (composed.every((p, i) => p === i)) return this.alias(out, source);
    this.set(out, { blob: source.blob, shape, pending: { perm: composed, source } });
  }

  private conv(out: string, attrs: Map<string, AttributeValue>): void {
    const x = this.input(0);
    const w = this.constOf(1);
    if (!w || w.dims.length !== 4) throw this.fail('needs a constant 4-D weight (2-D convolution)');
    if (x.shape.length !== 4) throw this.fail(`needs a [N, C, H, W] input, got [${x.shape.join(', ')}]`);
    const [outChannels, kernelChannels, kh, kw] = w.dims;
    const group = num(attrs, 'group', 1);
    if (kernelChannels * group !== x.shape[1])
      throw this.fail(`weights [${w.dims.join(', ')}] with group ${group} do not fit ${x.shape[1]} input channels`);
    const strides = ints(attrs, 'strides', [1, 1]);
    const dilations = ints(attrs, 'dilations', [1, 1]);
    const pads = this.spatialPads(attrs, x.shape, [kh, kw], strides, dilations);
    const shape = [
      1,
      outChannels,
      ...[0, 1].map((i) => convOutput(x.shape[2 + i], [kh, kw][i], strides[i], dilations[i], pads[i], pads[i + 2])),
    ];
    const b = this.node.input?.[2] ? this.constOf(2) : undefined;
    if (this.node.input?.[2] && !b) throw this.fail('the bias must be a constant');
    this.set(
      out,
      this.emit(out, [x.blob], shape, {
        convolution: {
          outputChannels: outChannels,
          kernelChannels,
          nGroups: group,
          kernelSize: [kh, kw],
          stride: strides,
          dilationFactor: dilations,
          valid: { paddingAmounts: borderAmounts(pads) },
          hasBias: !!b,
          // ONNX's [O, I/group, kH, kW] is Core ML's [outputChannels, kernelChannels, kH, kW].
          weights: weightParams(floatValues(w)),
          ...(b ? { bias: weightParams(floatValues(b)) } : {}),
        },
      }),
    );
  }

  /** Explicit [top, left, bottom, right] padding from `pads` or `auto_pad`. */
  private spatialPads(
    attrs: Map<string, AttributeValue>,
    shape: number[],
    kernel: number[],
    strides: number[],
    dilations: number[],
  ): number[] {
    const autoPad = (attrs.get('auto_pad') as string | undefined) ?? 'NOTSET';
    if (autoPad === 'NOTSET') {
      const pads = ints(attrs, 'pads', [0, 0, 0, 0]);
      if (pads.length !== 4) throw this.fail(`pads [${pads.join(', ')}] are not 2-D`);
      return pads;
    }
    if (autoPad === 'VALID') return [0, 0, 0, 0];
    if (autoPad !== 'SAME_UPPER' && autoPad !== 'SAME_LOWER') throw this.fail(`auto_pad ${autoPad} is not supported`);
    const begin: number[] = [];
    const end: number[] = [];
    for (let i = 0; i < 2; i++) {
      const size = shape[2 + i];
      const outSize = Math.ceil(size / strides[i]);
      const total = Math.max((outSize - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0);
      const small = Math.floor(total / 2);
      begin.push(autoPad === 'SAME_UPPER' ? small : total - small);
      end.push(total - begin[i]);
    }
    return [...begin, ...end];
  }

  private clip(out: string, attrs: Map<string, AttributeValue>): void {
    const x = this.input(0);
    const bound = (index: number, attr: string): number | undefined => {
      const name = this.node.input?.[index];
      if (name) {
        const c = this.constants.get(name);
        if (!c || c.values.length !== 1) throw this.fail(`the ${attr} bound must be a scalar constant`);
        return c.values[0];
      }
      const a = attrs.get(attr);
      return typeof a === 'number' ? a : undefined;
    };
    const min = bound(1, 'min');
    const max = bound(2, 'max');
    let y = x;
    // max(x, min) is Core ML's unary THRESHOLD; min(y, max) = −max(−y, −max). All exact in float32.
    if (min === 0) y = this.activation(max === undefined ? out : `${out}/relu`, y, { ReLU: {} });
    else if (min !== undefined)
      y = this.emit(max === undefined ? out : `${out}/min`, [y.blob], y.shape, {
        unary: { type: COREML.unaryThreshold, alpha: min },
      });
    if (max !== undefined) {
      const negated = this.activation(`${out}/neg`, y, { linear: { alpha: -1, beta: 0 } });
      const limited = this.emit(`${out}/max`, [negated.blob], y.shape, {
        unary: { type: COREML.unaryThreshold, alpha: -max },
      });
      y = this.activation(out, limited, { linear: { alpha: -1, beta: 0 } });
    }
    this.set(out, y === x ? this.activation(out, x, { linear: { alpha: 1, beta: 0 } }) : y);
  }

  private binary(out: string, op: 'Add' | 'Sub' | 'Mul' | 'Div'): void {
    const aConst = this.constOf(0);
    const bConst = this.constOf(1);
    if (aConst && bConst) throw this.fail('both operands are constants (fold them before export)');
    if (!aConst && !bConst) return this.binaryTensors(out, op);
    const x = this.input(aConst ? 1 : 0);
    const c = (aConst ?? bConst)!;
    const constFirst = !!aConst;
    const kind = this.broadcastKind(c, x.shape);
    const values = floatValues(c);
    if (op === 'Div' && constFirst) throw this.fail('dividing a constant by a tensor is not supported');
    if (op === 'Add' || op === 'Sub') {
      const sign = op === 'Sub' && !constFirst ? -1 : 1;
      const shift = Array.from(values, (v) => sign * v);
      if (op === 'Sub' && constFirst) {
        // c − x
        if (kind.scalar) return this.set(out, this.activation(out, x, { linear: { alpha: -1, beta: shift[0] } }));
        return this.set(
          out,
          this.emit(out, [x.blob], x.shape, {
            scale: {
              shapeScale: [1],
              scale: weightParams([-1]),
              hasBias: true,
              shapeBias: kind.shape,
              bias: weightParams(shift),
            },
          }),
        );
      }
      if (kind.scalar) return this.set(out, this.emit(out, [x.blob], x.shape, { add: { alpha: shift[0] } }));
      return this.set(
        out,
        this.emit(out, [x.blob], x.shape, { bias: { shape: kind.shape, bias: weightParams(shift) } }),
      );
    }
    const factor = op === 'Div' ? Array.from(values, (v) => 1 / v) : Array.from(values);
    if (kind.scalar) return this.set(out, this.emit(out, [x.blob], x.shape, { multiply: { alpha: factor[0] } }));
    this.set(
      out,
      this.emit(out, [x.blob], x.shape, {
        scale: { shapeScale: kind.shape, scale: weightParams(factor), hasBias: false },
      }),
    );
  }

  /** How a constant broadcasts against a tensor, in Core ML's terms: a scalar, per channel [C], or a whole [C, H, W]. */
  private broadcastKind(c: ConstTensor, shape: number[]): { scalar: boolean; shape: number[] } {
    const count = c.values.length;
    if (count === 1) return { scalar: true, shape: [1] };
    if (c.dims.length > shape.length)
      throw this.fail(`a constant [${c.dims.join(', ')}] does not broadcast to [${shape.join(', ')}]`);
    const dims = [...Array(shape.length - c.dims.length).fill(1), ...c.dims];
    const channels = shape[1];
    if (dims[0] === 1 && dims[1] === channels && dims.slice(2).every((d) => d === 1))
      return { scalar: false, shape: [channels] };
    if (shape.length === 4 && dims[0] === 1 && dims.slice(1).every((d, i) => d === shape[i + 1]))
      return { scalar: false, shape: shape.slice(1) };
    throw this.fail(
      `a constant [${c.dims.join(', ')}] broadcast to [${shape.join(', ')}] is neither a scalar, per channel nor a whole [C, H, W]`,
    );
  }

  private binaryTensors(out: string, op: 'Add' | 'Sub' | 'Mul' | 'Div'): void {
    if (op === 'Div') throw this.fail('dividing one computed tensor by another is not supported');
    let a = this.input(0);
    let b = this.input(1);
    // Core ML broadcasts [C,1,1], [1,H,W] or [1,1,1] against [C,H,W]; its output has the first input's shape.
    const fits = (small: number[], big: number[]) => {
      if (small.length !== big.length || small.some((d, i) => d !== big[i] && d !== 1)) return false;
      // C is the same or 1 (checked above); H and W are both the same or both 1.
      const spatial = small.slice(2);
      return spatial.every((d, i) => d === big[2 + i]) || spatial.every((d) => d === 1);
    };
    if (!fits(b.shape, a.shape)) {
      if (!fits(a.shape, b.shape))
        throw this.fail(`operands [${a.shape.join(', ')}] and [${b.shape.join(', ')}] do not broadcast in Core ML`);
      if (op === 'Sub') b = this.activation(`${out}/neg`, b, { linear: { alpha: -1, beta: 0 } });
      [a, b] = [b, a];
      return this.set(out, this.emit(out, [a.blob, b.blob], a.shape, op === 'Mul' ? { multiply: {} } : { add: {} }));
    }
    if (op === 'Sub') b = this.activation(`${out}/neg`, b, { linear: { alpha: -1, beta: 0 } });
    this.set(out, this.emit(out, [a.blob, b.blob], a.shape, op === 'Mul' ? { multiply: {} } : { add: {} }));
  }

  private globalPool(out: string, type: number, keepDims: boolean): void {
    const x = this.input(0);
    if (x.shape.length !== 4) throw this.fail(`needs a [N, C, H, W] input, got [${x.shape.join(', ')}]`);
    const shape = keepDims ? [1, x.shape[1], 1, 1] : [1, x.shape[1]];
    this.set(
      out,
      this.emit(out, [x.blob], shape, {
        pooling: {
          type,
          kernelSize: [x.shape[2], x.shape[3]],
          stride: [1, 1],
          valid: { paddingAmounts: borderAmounts([0, 0, 0, 0]) },
          globalPooling: true,
        },
      }),
    );
  }

  private reduceMean(out: string, attrs: Map<string, AttributeValue>): void {
    const axes = this.node.input?.[1] ? Array.from(this.constOf(1)?.values ?? []) : ints(attrs, 'axes', []);
    const spatial = axes
      .map((a) => (a < 0 ? a + 4 : a))
      .sort()
      .join();
    if (spatial !== '2,3')
      throw this.fail(`only a mean over H and W (axes 2, 3) is supported, got [${axes.join(', ')}]`);
    this.globalPool(out, COREML.poolingAverage, num(attrs, 'keepdims', 1) === 1);
  }

  private pool(out: string, op: 'AveragePool' | 'MaxPool', attrs: Map<string, AttributeValue>): void {
    const x = this.input(0);
    if (x.shape.length !== 4) throw this.fail(`needs a [N, C, H, W] input, got [${x.shape.join(', ')}]`);
    if (num(attrs, 'ceil_mode', 0) !== 0) throw this.fail('ceil_mode is not supported');
    const kernel = ints(attrs, 'kernel_shape', []);
    const strides = ints(attrs, 'strides', [1, 1]);
    const dilations = ints(attrs, 'dilations', [1, 1]);
    if (kernel.length !== 2 || dilations.some((d) => d !== 1))
      throw this.fail('only undilated 2-D pooling is supported');
    const pads = this.spatialPads(attrs, x.shape, kernel, strides, [1, 1]);
    const shape = [
      1,
      x.shape[1],
      ...[0, 1].map((i) => convOutput(x.shape[2 + i], kernel[i], strides[i], 1, pads[i], pads[i + 2])),
    ];
    this.set(
      out,
      this.emit(out, [x.blob], shape, {
        pooling: {
          type: op === 'MaxPool' ? COREML.poolingMax : COREML.poolingAverage,
          kernelSize: kernel,
          stride: strides,
          valid: { paddingAmounts: borderAmounts(pads) },
          avgPoolExcludePadding: op === 'AveragePool' && num(attrs, 'count_include_pad', 0) === 0,
        },
      }),
    );
  }

  private pad(out: string, attrs: Map<string, AttributeValue>): void {
    const x = this.input(0);
    const mode = (attrs.get('mode') as string | undefined) ?? 'constant';
    const pads = this.node.input?.[1] ? Array.from(this.constOf(1)?.values ?? []) : ints(attrs, 'pads', []);
    const value = this.node.input?.[2] ? (this.constOf(2)?.values[0] ?? 0) : num(attrs, 'value', 0);
    if (mode !== 'constant' || x.shape.length !== 4 || pads.length !== 8)
      throw this.fail('only constant padding of a [N, C, H, W] tensor is supported');
    if (pads[0] || pads[1] || pads[4] || pads[5]) throw this.fail('only H and W can be padded');
    const [top, left, bottom, right] = [pads[2], pads[3], pads[6], pads[7]];
    const shape = [1, x.shape[1], x.shape[2] + top + bottom, x.shape[3] + left + right];
    this.set(
      out,
      this.emit(out, [x.blob], shape, {
        padding: { constant: { value }, paddingAmounts: borderAmounts([top, left, bottom, right]) },
      }),
    );
  }

  private flatten(out: string, attrs: Map<string, AttributeValue>): void {
    const x = this.input(0);
    if (num(attrs, 'axis', 1) !== 1) throw this.fail('only axis 1 is supported');
    const shape = [1, flatSize(x.shape)];
    // [N, C, 1, 1] and [N, F] are the same blob; only a real spatial map needs reordering.
    if (x.shape.length === 2 || x.shape.slice(2).every((d) => d === 1)) return this.alias(out, { blob: x.blob, shape });
    this.set(out, this.emit(out, [x.blob], shape, { flatten: { mode: COREML.flattenChannelFirst } }));
  }

  /** A [N, F] (or [N, F, 1, 1]) input as a vector of F features. */
  private vectorInput(index: number): Value {
    const x = this.input(index);
    if (x.shape.length !== 2 && !(x.shape.length === 4 && x.shape[2] === 1 && x.shape[3] === 1)) {
      throw this.fail(`needs a [N, F] input, got [${x.shape.join(', ')}]`);
    }
    return x;
  }

  private gemm(out: string, attrs: Map<string, AttributeValue>): void {
    const x = this.vectorInput(0);
    const b = this.constOf(1);
    if (!b || b.dims.length !== 2) throw this.fail('needs a constant 2-D B');
    if (num(attrs, 'transA', 0) !== 0) throw this.fail('transA is not supported');
    const alpha = num(attrs, 'alpha', 1);
    const beta = num(attrs, 'beta', 1);
    const transB = num(attrs, 'transB', 0) === 1;
    const [outputs, inputs] = transB ? b.dims : [b.dims[1], b.dims[0]];
    if (inputs !== x.shape[1]) throw this.fail(`B [${b.dims.join(', ')}] does not fit ${x.shape[1]} input features`);
    const bv = floatValues(b);
    const weights = new Float32Array(outputs * inputs);
    for (let o = 0; o < outputs; o++) {
      for (let i = 0; i < inputs; i++)
        weights[o * inputs + i] = alpha * (transB ? bv[o * inputs + i] : bv[i * outputs + o]);
    }
    let bias: Float32Array | undefined;
    if (this.node.input?.[2]) {
      const c = this.constOf(2);
      if (!c || (c.values.length !== outputs && c.values.length !== 1))
        throw this.fail('C must be a constant of one value or one per output');
      const cv = floatValues(c);
      bias = Float32Array.from({ length: outputs }, (_, o) => beta * cv[cv.length === 1 ? 0 : o]);
    }
    this.set(out, this.innerProduct(out, x, inputs, outputs, weights, bias));
  }

  private matMul(out: string): void {
    const x = this.vectorInput(0);
    const b = this.constOf(1);
    if (!b || b.dims.length !== 2 || b.dims[0] !== x.shape[1])
      throw this.fail(`needs a constant [${x.shape[1]}, K] second operand`);
    const [inputs, outputs] = b.dims;
    const bv = floatValues(b);
    const weights = new Float32Array(outputs * inputs);
    for (let o = 0; o < outputs; o++) for (let i = 0; i < inputs; i++) weights[o * inputs + i] = bv[i * outputs + o];
    this.set(out, this.innerProduct(out, x, inputs, outputs, weights, undefined));
  }

  private innerProduct(
    out: string,
    x: Value,
    inputs: number,
    outputs: number,
    weights: Float32Array,
    bias: Float32Array | undefined,
  ): Value {
    return this.emit(out, [x.blob], [1, outputs], {
      innerProduct: {
        inputChannels: inputs,
        outputChannels: outputs,
        hasBias: !!bias,
        weights: weightParams(weights),
        ...(bias ? { bias: weightParams(bias) } : {}),
      },
    });
  }

  private concat(out: string, attrs: Map<string, AttributeValue>): void {
    const parts = (this.node.input ?? []).map((_, i) => this.input(i));
    const rank = parts[0].shape.length;
    const axis = num(attrs, 'axis', 1);
    if ((axis < 0 ? axis + rank : axis) !== 1)
      throw this.fail('only concatenation along the channel axis is supported');
    const rest = (s: number[]) => s.slice(2).join();
    if (parts.some((p) => p.shape.length !== rank || rest(p.shape) !== rest(parts[0].shape)))
      throw this.fail('the parts differ in rank or spatial size');
    const shape = [1, parts.reduce((sum, p) => sum + p.shape[1], 0), ...parts[0].shape.slice(2)];
    this.set(
      out,
      this.emit(
        out,
        parts.map((p) => p.blob),
        shape,
        { concat: { sequenceConcat: false } },
      ),
    );
  }

  private lpNormalization(out: string, attrs: Map<string, AttributeValue>): void {
    const x = this.vectorInput(0);
    const axis = num(attrs, 'axis', -1);
    if (num(attrs, 'p', 2) !== 2 || (axis !== 1 && !(axis === -1 && x.shape.length === 2)))
      throw this.fail('only the L2 norm over the feature axis is supported');
    this.set(out, this.emit(out, [x.blob], x.shape, { l2normalize: { epsilon: L2_EPSILON } }));
  }

  private softmax(out: string, attrs: Map<string, AttributeValue>): void {
    const x = this.vectorInput(0);
    const axis = num(attrs, 'axis', -1);
    if (axis !== 1 && !(axis === -1 && x.shape.length === 2))
      throw this.fail('only a softmax over the feature axis is supported');
    this.set(out, this.emit(out, [x.blob], x.shape, { softmax: {} }));
  }

  private batchNorm(out: string, attrs: Map<string, AttributeValue>): void {
    const x = this.input(0);
    const [gamma, beta, mean, variance] = [1, 2, 3, 4].map((i) => this.constOf(i));
    if (!gamma || !beta || !mean || !variance) throw this.fail('scale, bias, mean and variance must be constants');
    const epsilon = num(attrs, 'epsilon', 1e-5);
    const channels = x.shape[1];
    const scale = Float32Array.from(
      { length: channels },
      (_, c) => gamma.values[c] / Math.sqrt(variance.values[c] + epsilon),
    );
    const shift = Float32Array.from({ length: channels }, (_, c) => beta.values[c] - mean.values[c] * scale[c]);
    this.set(
      out,
      this.emit(out, [x.blob], x.shape, {
        scale: {
          shapeScale: [channels],
          scale: weightParams(scale),
          hasBias: true,
          shapeBias: [channels],
          bias: weightParams(shift),
        },
      }),
    );
  }
}

function num(attrs: Map<string, AttributeValue>, name: string, fallback: number): number {
  const value = attrs.get(name);
  return typeof value === 'number' ? value : fallback;
}

function ints(attrs: Map<string, AttributeValue>, name: string, fallback: number[]): number[] {
  const value = attrs.get(name);
  return Array.isArray(value) ? value : fallback;
}

function floatValues(c: ConstTensor): Float32Array {
  return c.values instanceof Float32Array ? c.values : Float32Array.from(c.values);
}

function flatSize(shape: number[]): number {
  return shape.slice(1).reduce((a, b) => a * b, 1);
}

function convOutput(
  size: number,
  kernel: number,
  stride: number,
  dilation: number,
  before: number,
  after: number,
): number {
  return Math.floor((size + before + after - ((kernel - 1) * dilation + 1)) / stride) + 1;
}

/** [top, left, bottom, right] as Core ML BorderAmounts ([H, W] edge sizes). */
function borderAmounts([top, left, bottom, right]: number[]) {
  return {
    borderAmounts: [
      { startEdgeSize: top, endEdgeSize: bottom },
      { startEdgeSize: left, endEdgeSize: right },
    ],
  };
}
