import { onnx } from 'onnx-proto';

/** A float tensor stored in the model (weights, constants). */
export interface Initializer {
  name: string;
  dims: number[];
  data: Float32Array | BigInt64Array;
}

export type AttributeValue = number | number[] | string | { ints: number[] } | { floats: number[] };

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

/**
 * Builds an ONNX model by hand. Only what this project's converters and
 * trainers need: float graph inputs/outputs, initializers and plain nodes.
 */
export class OnnxGraphBuilder {
  private readonly nodes: onnx.INodeProto[] = [];
  private readonly initializers: onnx.ITensorProto[] = [];
  private readonly inputs: onnx.IValueInfoProto[] = [];
  private readonly outputs: onnx.IValueInfoProto[] = [];
  private counter = 0;

  constructor(
    private readonly graphName: string,
    private readonly opset = 13,
  ) {}

  /** A fresh, unique tensor name. */
  name(prefix: string): string {
    this.counter += 1;
    return `${prefix}__${this.counter}`;
  }

  input(name: string, shape: Array<number | string>): string {
    this.inputs.push(valueInfo(name, shape));
    return name;
  }

  output(name: string, shape: Array<number | string>): string {
    this.outputs.push(valueInfo(name, shape));
    return name;
  }

  initializer(init: Initializer): string {
    const isInt = init.data instanceof BigInt64Array;
    this.initializers.push({
      name: init.name,
      dims: init.dims,
      dataType: isInt ? INT64 : FLOAT,
      rawData: new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength),
    });
    return init.name;
  }

  /** Adds a node and returns its (first) output name. */
  node(opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, outputName?: string): string {
    const out = outputName ?? this.name(opType);
    this.push(opType, inputs, [out], attributes);
    return out;
  }

  /** Adds a node with `outputCount` outputs (TopK: values and indices) and returns their fresh names in order. */
  nodeWithOutputs(
    opType: string,
    inputs: string[],
    outputCount: number,
    attributes: Record<string, AttributeValue> = {},
  ): string[] {
    const outputs = Array.from({ length: outputCount }, () => this.name(opType));
    this.push(opType, inputs, outputs, attributes);
    return outputs;
  }

  private push(opType: string, inputs: string[], outputs: string[], attributes: Record<string, AttributeValue>): void {
    this.nodes.push({
      opType,
      input: inputs,
      output: outputs,
      name: this.name(`${opType}_node`),
      attribute: Object.entries(attributes).map(([key, value]) => attribute(key, value)),
    });
  }

  toBuffer(): Uint8Array {
    const model: onnx.IModelProto = {
      irVersion: 7,
      producerName: 'watson-vr-selfhosted',
      opsetImport: [{ domain: '', version: this.opset }],
      graph: {
        name: this.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    };
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, shape: Array<number | string>): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: FLOAT,
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, value: AttributeValue): onnx.IAttributeProto {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: A.INTS, ints: value };
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: A.INT, i: value } : { name, type: A.FLOAT, f: value };
  }
  if ('ints' in value) return { name, type: A.INTS, ints: value.ints };
  return { name, type: A.FLOATS, floats: value.floats };
}
