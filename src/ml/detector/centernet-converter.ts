/**
 * Converts the CenterNet (MobileNetV3, COCO-80) TF.js graph model that `@vladmandic/human` ships to
 * ONNX, node by node, for the op set that graph uses. Any other op stops the conversion with an
 * UnsupportedTfOpError naming the node.
 *
 * Layout: the ONNX input stays NHWC [1, S, S, 3] float RGB 0–255 (sharp's raw pixel order), is
 * transposed once to NCHW, and feature maps stay NCHW until an op that depends on memory order
 * (Reshape, TopK over the flattened heatmap) needs TF's NHWC order back.
 *
 * The output `detections` [1, 100, 6] holds TF's rows [x1, y1, x2, y2, score, classIndex], boxes in
 * pixels of the S input, class indices 0-based in COCO-80 order. The graph was exported for S = 512;
 * the network is fully convolutional, so another multiple of 32 only changes the few constants that
 * spell out the grid (SIZE_CONSTANTS). Optionally the backbone's taps (CENTERNET_TAPS) are outputs too,
 * each globally average-pooled to [1, C]: the embedding of custom classifiers.
 */
import { onnx } from 'onnx-proto';
import { ModelConversionError } from '../convert/errors';
import { OnnxGraphBuilder } from '../onnx/onnx-graph-builder';
import type { GraphConstant, TfAttr, TfjsGraphModel, TfNode } from './tfjs-graph-model';

export const CENTERNET_INPUT_NAME = 'images';
export const CENTERNET_OUTPUT_NAME = 'detections';
/**
 * The input size the service converts for: the smallest multiple of 32 from 320 to 512 at which the
 * detector still names on the darknet sample photos what it names at 512 (raw score ≥ 0.4). Measured
 * (1 thread, 2 shared cores): 320 16–22 ms/image but dog.jpg loses its dog and bicycle; 384 loses the
 * bicycle; 416 the dog; 448 keeps everything (dog.jpg: bicycle 0.50, car 0.50, dog 0.43) at 33 ms;
 * 480 loses the dog again; 512 43–49 ms.
 */
export const CENTERNET_INPUT_SIZE = 448;
/** The input size the TF graph was exported for. */
export const CENTERNET_EXPORTED_SIZE = 512;
export const CENTERNET_MAX_DETECTIONS = 100;

/**
 * Backbone feature maps whose global average pools describe an image for custom classifiers: COCO-trained
 * MobileNetV3 expansions late in the network and the extra layer the detection head grows from. A
 * linear-probe study (5-fold, the service's own trainer) found them far better on objects than nsfwjs's
 * taps (cars vs trucks 0.98 against 0.877) and, concatenated with those, the best all-round embedding.
 */
export const CENTERNET_TAPS = [
  {
    node: 'tower_0/MobilenetV3/expanded_conv_12/expand/hard_swish/mul_1',
    output: 'tap_expanded_conv_12_expand',
    dim: 528,
  },
  {
    node: 'tower_0/MobilenetV3/expanded_conv_14/expand/hard_swish/mul_1',
    output: 'tap_expanded_conv_14_expand',
    dim: 720,
  },
  { node: 'tower_0/extern1/hard_swish/mul_1', output: 'tap_extern1', dim: 480 },
] as const;

/**
 * Constants of the exported graph that spell out its 512-pixel grid, as functions of the input size S:
 * the upsampling targets S/16, S/8 and S/4, the heatmap's width S/4 (TopK index → row and column), and
 * the box map's flattened shape [(S/4)², 4]. Each is checked against its exported value before use.
 */
const SIZE_CONSTANTS: Record<string, (size: number) => number[]> = {
  'tower_0/CenternetHead/c5_upsample/up_sampling2d/mul': (s) => [s / 16, s / 16],
  'tower_0/CenternetHead/c4_upsample/up_sampling2d_1/mul': (s) => [s / 8, s / 8],
  'tower_0/CenternetHead/c3_upsample/up_sampling2d_2/mul': (s) => [s / 4, s / 4],
  'tower_0/strided_slice_6': (s) => [s / 4],
  'tower_0/BatchGather/concat': (s) => [(s / 4) ** 2, 4],
};

const TF_INPUT = 'tower_0/images';
const TF_OUTPUT = 'tower_0/detections';
const NHWC_TO_NCHW = [0, 3, 1, 2];
const NCHW_TO_NHWC = [0, 2, 3, 1];
/** MobileNetV3's hard-swish and hard-sigmoid divide by 6; the weights store 1/6 as float16 (0.166626). */
const ONE_SIXTH_TOLERANCE = 1e-3;

/** The graph holds an op (or a use of one) this converter cannot express in ONNX. */
export class UnsupportedTfOpError extends ModelConversionError {
  constructor(
    file: string,
    readonly nodeName: string,
    readonly op: string,
    detail?: string,
  ) {
    super(file, `node ${nodeName}: ${detail ? `${op}: ${detail}` : `unsupported op ${op}`}`);
    this.name = 'UnsupportedTfOpError';
  }
}

export interface CenternetConversionOptions {
  /**
   * Fold TF's hard-swish x·(1/6)·relu6(x+3) and hard-sigmoid (1/6)·relu6(y+3) into ONNX's HardSwish and
   * HardSigmoid (one kernel each instead of four). ONNX divides by 6 exactly where TF multiplied by the
   * float16 0.166626, so scores move slightly.
   */
  foldHardActivations: boolean;
  /** Input size S, a multiple of 32 from 128 to 1024 (default: 512, the exported one). */
  inputSize?: number;
  /** Also output the global average pools of CENTERNET_TAPS (default false). */
  taps?: boolean;
}

/**
 * Whether ensureDetectorPack folds hard activations. On the darknet sample photos (dog, person, horses,
 * eagle, giraffe, kite, scream) the folded graph's best score per class stays within 1.4e-3 of the exact
 * graph's (worst: dog.jpg; the limit set for folding is 2e-3), and on an idle 2-core machine it runs in
 * 49 ms instead of 56 (1 thread) and 37 instead of 43 (2 threads, no spinning).
 */
export const FOLD_HARD_ACTIVATIONS = true;

/** A converted tensor: its ONNX name, and whether it is a feature map in NCHW or in TF's own memory order. */
interface Converted {
  name: string;
  layout: 'NCHW' | 'plain';
}

export function convertCenternet(model: TfjsGraphModel, options: CenternetConversionOptions): Uint8Array {
  return new CenternetConverter(model, options).convert();
}

class CenternetConverter {
  private readonly builder = new OnnxGraphBuilder('centernet_mobilenetv3_coco', 14);
  private readonly nodes = new Map<string, TfNode>();
  /** Keyed by TF tensor reference: "node" for the first output, "node:1" for the second. */
  private readonly converted = new Map<string, Converted>();
  private readonly initializers = new Map<string, string>();

  private readonly size: number;

  constructor(
    private readonly model: TfjsGraphModel,
    private readonly options: CenternetConversionOptions,
  ) {
    for (const node of model.nodes) this.nodes.set(node.name, node);
    this.size = options.inputSize ?? CENTERNET_EXPORTED_SIZE;
    if (!Number.isInteger(this.size) || this.size % 32 !== 0 || this.size < 128 || this.size > 1024) {
      throw new RangeError(`inputSize must be a multiple of 32 from 128 to 1024, got ${this.size}`);
    }
  }

  convert(): Uint8Array {
    this.checkInput();
    const input = this.builder.input(CENTERNET_INPUT_NAME, [1, this.size, this.size, 3]);
    this.converted.set(TF_INPUT, {
      name: this.builder.node('Transpose', [input], { perm: NHWC_TO_NCHW }),
      layout: 'NCHW',
    });
    if (!this.nodes.has(TF_OUTPUT))
      throw new ModelConversionError(this.model.file, `the graph has no output node ${TF_OUTPUT}`);
    this.builder.node('Identity', [this.plain(this.tensor(TF_OUTPUT))], {}, CENTERNET_OUTPUT_NAME);
    this.builder.output(CENTERNET_OUTPUT_NAME, [1, CENTERNET_MAX_DETECTIONS, 6]);
    if (this.options.taps) {
      for (const tap of CENTERNET_TAPS) {
        if (!this.nodes.has(tap.node))
          throw new ModelConversionError(this.model.file, `the graph has no tap node ${tap.node}`);
        const map = this.tensor(tap.node);
        if (map.layout !== 'NCHW')
          throw new ModelConversionError(this.model.file, `tap ${tap.node} is not a feature map`);
        this.builder.node('Flatten', [this.builder.node('GlobalAveragePool', [map.name])], { axis: 1 }, tap.output);
        this.builder.output(tap.output, [1, tap.dim]);
      }
    }
    return this.builder.toBuffer();
  }

  /** The constants baked into the graph (TopK's grid width, the box gather's shape) are checked for this input. */
  private checkInput(): void {
    const input = this.nodes.get(TF_INPUT);
    const dims = (input?.attr?.shape?.shape?.dim ?? []).map((d) => Number(d.size));
    const expected = [1, CENTERNET_EXPORTED_SIZE, CENTERNET_EXPORTED_SIZE, 3];
    if (input?.op !== 'Placeholder' || dims.join() !== expected.join() || input.attr?.dtype?.type !== 'DT_FLOAT') {
      throw new ModelConversionError(
        this.model.file,
        `expected a float input ${TF_INPUT} of shape [${expected.join(', ')}], found [${dims.join(', ')}]`,
      );
    }
    for (const [ref, forSize] of Object.entries(SIZE_CONSTANTS)) {
      const found = this.constants(ref)?.values.join() ?? 'nothing';
      if (found !== forSize(CENTERNET_EXPORTED_SIZE).join()) {
        throw new ModelConversionError(
          this.model.file,
          `constant ${ref} holds ${found}, not the grid of a ${CENTERNET_EXPORTED_SIZE}-pixel input this converter expects`,
        );
      }
    }
  }

  /** The converted tensor for a TF reference ("node" or "node:1"), converting its producer on first use. */
  private tensor(ref: string): Converted {
    const done = this.converted.get(ref);
    if (done) return done;
    const [nodeName, port = '0'] = ref.split(':');
    const node = this.nodes.get(nodeName);
    if (!node) throw new ModelConversionError(this.model.file, `the graph refers to a missing node ${nodeName}`);
    if (port === '0') {
      const result = this.convertNode(node);
      this.converted.set(nodeName, result);
      return result;
    }
    this.tensor(nodeName); // a multi-output node records its other outputs when converted
    const other = this.converted.get(ref);
    if (!other) throw new UnsupportedTfOpError(this.model.file, nodeName, node.op, `output ${port} is not supported`);
    return other;
  }

  private convertNode(node: TfNode): Converted {
    const inputs = (node.input ?? []).filter((ref) => !ref.startsWith('^'));
    const b = this.builder;
    switch (node.op) {
      case 'Const':
        return { name: this.constInitializer(node.name), layout: 'plain' };
      case 'Identity':
        return this.tensor(inputs[0]);
      case '_FusedConv2D':
      case 'Conv2D':
      case 'FusedDepthwiseConv2dNative':
      case 'DepthwiseConv2dNative':
        return this.conv(node, inputs);
      case 'Relu6':
        return this.unary(inputs[0], (x) => b.node('Clip', [x, this.floatScalar(0), this.floatScalar(6)]));
      case 'Relu':
      case 'Sigmoid':
        return this.unary(inputs[0], (x) => b.node(node.op, [x]));
      case 'Mul':
        return (
          (this.options.foldHardActivations ? this.hardActivation(inputs) : undefined) ??
          this.elementwise(node, 'Mul', inputs)
        );
      case 'Add':
      case 'AddV2':
        return this.elementwise(node, 'Add', inputs);
      case 'Sub':
      case 'Equal':
        return this.elementwise(node, node.op, inputs);
      case 'FloorDiv':
      case 'FloorMod':
        // Only non-negative integer indices meet these here: ONNX's truncating Div and Mod equal TF's floor forms.
        return {
          name: b.node(
            node.op === 'FloorDiv' ? 'Div' : 'Mod',
            inputs.map((ref) => this.plain(this.tensor(ref))),
          ),
          layout: 'plain',
        };
      case 'Cast':
        return this.cast(node, inputs);
      case 'Mean':
        return this.spatialMean(node, inputs);
      case 'ResizeBilinear':
        return this.resizeBilinear(node, inputs);
      case 'ConcatV2':
        return this.concat(inputs);
      case 'MaxPool':
        return this.maxPool(node, inputs);
      case 'Reshape':
        return {
          name: b.node('Reshape', [this.plain(this.tensor(inputs[0])), this.int64Const(this.constValues(inputs[1]))]),
          layout: 'plain',
        };
      case 'ExpandDims':
        return {
          name: b.node('Unsqueeze', [this.plain(this.tensor(inputs[0])), this.int64Const(this.constValues(inputs[1]))]),
          layout: 'plain',
        };
      case 'TopKV2':
        return this.topK(node, inputs);
      case 'GatherV2': {
        const [axis] = this.constValues(inputs[2]);
        const [data, indices] = [inputs[0], inputs[1]].map((ref) => this.plain(this.tensor(ref)));
        return { name: b.node('Gather', [data, indices], { axis }), layout: 'plain' };
      }
      case 'StridedSlice':
        return this.stridedSlice(node, inputs);
      default:
        throw new UnsupportedTfOpError(this.model.file, node.name, node.op);
    }
  }

  private unary(ref: string, op: (x: string) => string): Converted {
    const x = this.tensor(ref);
    return { name: op(x.name), layout: x.layout };
  }

  private conv(node: TfNode, inputs: string[]): Converted {
    const x = this.tensor(inputs[0]);
    if (x.layout !== 'NCHW') throw this.unsupported(node, 'the input is not a feature map');
    const kernel = this.constant(inputs[1]);
    const [kh, kw, cin, multiplier] = kernel.shape;
    const depthwise = node.op.includes('Depthwise');
    // TF: HWIO (conv) or HWCM (depthwise); ONNX: OIHW, depthwise as group = C with O = C·M and I = 1.
    const outChannels = depthwise ? cin * multiplier : multiplier;
    const perGroupIn = depthwise ? 1 : cin;
    const oihw = new Float32Array(outChannels * perGroupIn * kh * kw);
    for (let h = 0; h < kh; h += 1) {
      for (let w = 0; w < kw; w += 1) {
        for (let i = 0; i < cin; i += 1) {
          for (let o = 0; o < multiplier; o += 1) {
            const [oc, ic] = depthwise ? [i * multiplier + o, 0] : [o, i];
            oihw[((oc * perGroupIn + ic) * kh + h) * kw + w] = kernel.values[((h * kw + w) * cin + i) * multiplier + o];
          }
        }
      }
    }
    const convInputs = [
      x.name,
      this.builder.initializer({
        name: `${node.name}/kernel_oihw`,
        dims: [outChannels, perGroupIn, kh, kw],
        data: oihw,
      }),
    ];
    const fused = stringList(node, 'fused_ops');
    if (fused.length > 0) {
      if (fused[0] !== 'BiasAdd') throw this.unsupported(node, `fusion ${fused.join('+')}`);
      convInputs.push(this.constInitializer(inputs[2]));
    }
    const strides = intList(node, 'strides');
    const dilations = intList(node, 'dilations');
    let y = this.builder.node('Conv', convInputs, {
      kernel_shape: [kh, kw],
      strides: [strides[1], strides[2]],
      dilations: [dilations[1], dilations[2]],
      group: depthwise ? cin : 1,
      auto_pad: this.padding(node),
    });
    for (const activation of fused.slice(1)) {
      if (activation === 'Relu') y = this.builder.node('Relu', [y]);
      else if (activation === 'Relu6') y = this.builder.node('Clip', [y, this.floatScalar(0), this.floatScalar(6)]);
      else throw this.unsupported(node, `fused activation ${activation}`);
    }
    return { name: y, layout: 'NCHW' };
  }

  private elementwise(node: TfNode, onnxOp: string, inputs: string[]): Converted {
    const parts = inputs.map((ref) => this.tensor(ref));
    const featureMap = parts.some((p) => p.layout === 'NCHW');
    // Broadcasting a plain tensor against an NCHW map is only layout-independent for scalars.
    parts.forEach((p, i) => {
      if (featureMap && p.layout === 'plain' && this.constants(inputs[i])?.shape.length !== 0) {
        throw this.unsupported(node, 'a feature map meets a tensor that is not a scalar constant');
      }
    });
    return {
      name: this.builder.node(
        onnxOp,
        parts.map((p) => p.name),
      ),
      layout: featureMap ? 'NCHW' : 'plain',
    };
  }

  private cast(node: TfNode, inputs: string[]): Converted {
    const target = attr(node, 'DstT').type;
    const types: Record<string, number> = {
      DT_FLOAT: onnx.TensorProto.DataType.FLOAT,
      // ONNX's index type: TF int32 indices all become int64.
      DT_INT32: onnx.TensorProto.DataType.INT64,
      DT_INT64: onnx.TensorProto.DataType.INT64,
    };
    const to = target === undefined ? undefined : types[target];
    if (to === undefined) throw this.unsupported(node, `cast to ${target ?? 'an unnamed type'}`);
    return this.unary(inputs[0], (x) => this.builder.node('Cast', [x], { to }));
  }

  private spatialMean(node: TfNode, inputs: string[]): Converted {
    const x = this.tensor(inputs[0]);
    if (x.layout !== 'NCHW' || this.constValues(inputs[1]).join() !== '1,2' || !attr(node, 'keep_dims').b) {
      throw this.unsupported(node, 'only a spatial mean of a feature map with keep_dims');
    }
    return { name: this.builder.node('GlobalAveragePool', [x.name]), layout: 'NCHW' };
  }

  private resizeBilinear(node: TfNode, inputs: string[]): Converted {
    if (attr(node, 'align_corners').b || attr(node, 'half_pixel_centers').b) {
      throw this.unsupported(node, 'only align_corners = half_pixel_centers = false');
    }
    const x = this.tensor(inputs[0]);
    if (x.layout !== 'NCHW') throw this.unsupported(node, 'the input is not a feature map');
    const b = this.builder;
    // Resize wants the full output shape: [N, C] from the input's shape (ORT folds it), then TF's [H, W].
    const batchAndChannels = b.node('Slice', [b.node('Shape', [x.name]), this.int64Const([0]), this.int64Const([2])]);
    const sizes = b.node('Concat', [batchAndChannels, this.int64Const(this.constValues(inputs[1]))], { axis: 0 });
    // TF's legacy resize (no half-pixel centres) samples at out·(in/out): ONNX's 'asymmetric' transform.
    return {
      name: b.node('Resize', [x.name, '', '', sizes], { mode: 'linear', coordinate_transformation_mode: 'asymmetric' }),
      layout: 'NCHW',
    };
  }

  private concat(inputs: string[]): Converted {
    const [axis] = this.constValues(inputs[inputs.length - 1]);
    const parts = inputs.slice(0, -1).map((ref) => this.tensor(ref));
    if (parts.every((p) => p.layout === 'NCHW') && (axis === 3 || axis === -1)) {
      return {
        name: this.builder.node(
          'Concat',
          parts.map((p) => p.name),
          { axis: 1 },
        ),
        layout: 'NCHW',
      };
    }
    return {
      name: this.builder.node(
        'Concat',
        parts.map((p) => this.plain(p)),
        { axis },
      ),
      layout: 'plain',
    };
  }

  private maxPool(node: TfNode, inputs: string[]): Converted {
    const x = this.tensor(inputs[0]);
    if (x.layout !== 'NCHW') throw this.unsupported(node, 'the input is not a feature map');
    const k = intList(node, 'ksize');
    const s = intList(node, 'strides');
    const y = this.builder.node('MaxPool', [x.name], {
      kernel_shape: [k[1], k[2]],
      strides: [s[1], s[2]],
      auto_pad: this.padding(node),
    });
    return { name: y, layout: 'NCHW' };
  }

  private topK(node: TfNode, inputs: string[]): Converted {
    if (attr(node, 'sorted').b === false) throw this.unsupported(node, 'only sorted = true');
    const k = this.int64Const(this.constValues(inputs[1]));
    const [values, indices] = this.builder.nodeWithOutputs('TopK', [this.plain(this.tensor(inputs[0])), k], 2, {
      axis: -1,
      largest: 1,
      sorted: 1,
    });
    this.converted.set(`${node.name}:1`, { name: indices, layout: 'plain' });
    return { name: values, layout: 'plain' };
  }

  private stridedSlice(node: TfNode, inputs: string[]): Converted {
    for (const mask of ['ellipsis_mask', 'new_axis_mask', 'shrink_axis_mask']) {
      if (Number(attr(node, mask).i ?? 0) !== 0) throw this.unsupported(node, `${mask} is not supported`);
    }
    const [begin, end, strides] = inputs.slice(1).map((ref) => this.constValues(ref));
    const beginMask = Number(attr(node, 'begin_mask').i ?? 0);
    const endMask = Number(attr(node, 'end_mask').i ?? 0);
    const starts = begin.map((v, axis) => ((beginMask >> axis) & 1 ? 0 : v));
    const ends = end.map((v, axis) => ((endMask >> axis) & 1 ? Number.MAX_SAFE_INTEGER : v));
    const sliceInputs = [starts, ends, begin.map((_, axis) => axis), strides].map((values) => this.int64Const(values));
    return { name: this.builder.node('Slice', [this.plain(this.tensor(inputs[0])), ...sliceInputs]), layout: 'plain' };
  }

  /**
   * MobileNetV3's hard-swish (c·x)·relu6(x + 3) and hard-sigmoid c·relu6(y + 3), c ≈ 1/6, as one ONNX op;
   * undefined when this Mul is neither.
   */
  private hardActivation(inputs: string[]): Converted | undefined {
    for (const [left, right] of [inputs, [...inputs].reverse()]) {
      const shifted = this.relu6PlusThreeInput(right);
      if (shifted === undefined) continue;
      if (this.timesSixthInput(left) === shifted)
        return this.unary(shifted, (x) => this.builder.node('HardSwish', [x]));
      const sixth = this.sixth(left);
      // c·relu6(y + 3) = clip(c·y + 3c, 0, 6c): TF's own c keeps the unsaturated range exact.
      if (sixth !== undefined)
        return this.unary(shifted, (x) => this.builder.node('HardSigmoid', [x], { alpha: sixth, beta: 3 * sixth }));
    }
    return undefined;
  }

  /** relu6(x + 3) → x's reference. */
  private relu6PlusThreeInput(ref: string): string | undefined {
    const relu6 = this.nodes.get(ref);
    const add = relu6?.op === 'Relu6' ? this.nodes.get(relu6.input?.[0] ?? '') : undefined;
    if (add?.op !== 'Add' && add?.op !== 'AddV2') return undefined;
    const [x, three] = add.input ?? [];
    return this.scalarValue(three) === 3 ? x : undefined;
  }

  /** c·x with c ≈ 1/6 → x's reference. */
  private timesSixthInput(ref: string): string | undefined {
    const mul = this.nodes.get(ref);
    if (mul?.op !== 'Mul') return undefined;
    const [a, b] = mul.input ?? [];
    if (this.sixth(a) !== undefined) return b;
    return this.sixth(b) !== undefined ? a : undefined;
  }

  /** The value of a scalar constant c ≈ 1/6; undefined for anything else. */
  private sixth(ref: string): number | undefined {
    const value = this.scalarValue(ref);
    return value !== undefined && Math.abs(value - 1 / 6) < ONE_SIXTH_TOLERANCE ? value : undefined;
  }

  private scalarValue(ref: string): number | undefined {
    const c = this.nodes.get(ref)?.op === 'Const' ? this.constants(ref) : undefined;
    return c && c.dtype === 'float32' && c.shape.length === 0 ? c.values[0] : undefined;
  }

  /** The tensor in TF's own (NHWC) memory order. */
  private plain(t: Converted): string {
    return t.layout === 'plain' ? t.name : this.builder.node('Transpose', [t.name], { perm: NCHW_TO_NHWC });
  }

  private constants(ref: string): GraphConstant | undefined {
    return this.model.constants.get(ref);
  }

  private constant(ref: string): GraphConstant {
    const c = this.constants(ref);
    if (!c) throw new ModelConversionError(this.model.file, `the weights hold no constant ${ref}`);
    return c;
  }

  /** A constant's values; the grid constants rescaled to this input size. */
  private constValues(ref: string): number[] {
    const values = Array.from(this.constant(ref).values);
    return ref in SIZE_CONSTANTS && this.size !== CENTERNET_EXPORTED_SIZE ? SIZE_CONSTANTS[ref](this.size) : values;
  }

  /** A TF constant as an ONNX initializer (once); int32 becomes int64, ONNX's index type. */
  private constInitializer(ref: string): string {
    const existing = this.initializers.get(ref);
    if (existing) return existing;
    const c = this.constant(ref);
    const values = ref in SIZE_CONSTANTS ? this.constValues(ref) : c.values;
    const data = c.dtype === 'int32' ? BigInt64Array.from(values, (v) => BigInt(v)) : (c.values as Float32Array);
    const name = this.builder.initializer({ name: `${ref}/const`, dims: c.shape, data });
    this.initializers.set(ref, name);
    return name;
  }

  private int64Const(values: number[]): string {
    return this.builder.initializer({
      name: this.builder.name('i64'),
      dims: [values.length],
      data: BigInt64Array.from(values, (v) => BigInt(v)),
    });
  }

  private floatScalar(value: number): string {
    return this.builder.initializer({ name: this.builder.name('f32'), dims: [], data: Float32Array.of(value) });
  }

  private padding(node: TfNode): string {
    const pad = Buffer.from(attr(node, 'padding').s ?? '', 'base64').toString();
    if (pad === 'SAME') return 'SAME_UPPER';
    if (pad === 'VALID') return 'VALID';
    throw this.unsupported(node, `padding ${pad || '(none)'}`);
  }

  private unsupported(node: TfNode, detail: string): UnsupportedTfOpError {
    return new UnsupportedTfOpError(this.model.file, node.name, node.op, detail);
  }
}

function attr(node: TfNode, key: string): TfAttr {
  return node.attr?.[key] ?? {};
}

function intList(node: TfNode, key: string): number[] {
  return (attr(node, key).list?.i ?? []).map(Number);
}

function stringList(node: TfNode, key: string): string[] {
  return (attr(node, key).list?.s ?? []).map((s) => Buffer.from(s, 'base64').toString());
}
