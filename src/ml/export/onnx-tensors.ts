import { onnx } from 'onnx-proto';
import { ModelExportError } from './errors';

type Long = { toString(): string };

/** An int64 field as protobufjs decodes it (number or Long) as a JS number. */
export function toNumber(value: number | Long | null | undefined): number {
  if (value === null || value === undefined) return 0;
  return typeof value === 'number' ? value : Number(value.toString());
}

/** A constant tensor's values: floats as Float32Array, integers as plain numbers. */
export interface ConstTensor {
  dims: number[];
  values: Float32Array | number[];
}

/**
 * Reads an initializer (or a Constant node's value) of type FLOAT or INT64/INT32, from raw data or
 * the typed fields. Throws ModelExportError for other types or external data.
 */
export function readTensor(tensor: onnx.ITensorProto): ConstTensor {
  const dims = (tensor.dims ?? []).map(toNumber);
  const count = dims.reduce((a, b) => a * b, 1);
  const T = onnx.TensorProto.DataType;
  const raw = tensor.rawData && tensor.rawData.length > 0 ? tensor.rawData : undefined;
  if (tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    throw new ModelExportError(`tensor ${tensor.name} keeps its data in an external file`);
  }
  switch (tensor.dataType) {
    case T.FLOAT: {
      const values = raw
        ? new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))
        : Float32Array.from(tensor.floatData ?? []);
      if (values.length !== count)
        throw new ModelExportError(`tensor ${tensor.name} holds ${values.length} values for dims [${dims.join(', ')}]`);
      return { dims, values };
    }
    case T.INT64: {
      const values = raw
        ? Array.from(new BigInt64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)), Number)
        : (tensor.int64Data ?? []).map(toNumber);
      return { dims, values };
    }
    case T.INT32: {
      const values = raw
        ? Array.from(new Int32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)))
        : (tensor.int32Data ?? []).map(Number);
      return { dims, values };
    }
    default:
      throw new ModelExportError(
        `tensor ${tensor.name} has data type ${tensor.dataType}, only FLOAT, INT32 and INT64 are supported`,
      );
  }
}

export type AttributeValue = number | number[] | string | onnx.ITensorProto | undefined;

/** A node's attributes by name: ints and floats as numbers, lists as arrays, strings decoded, tensors as is. */
export function attributes(node: onnx.INodeProto): Map<string, AttributeValue> {
  const A = onnx.AttributeProto.AttributeType;
  const out = new Map<string, AttributeValue>();
  for (const attribute of node.attribute ?? []) {
    const name = attribute.name ?? '';
    switch (attribute.type) {
      case A.INT:
        out.set(name, toNumber(attribute.i));
        break;
      case A.FLOAT:
        out.set(name, attribute.f ?? 0);
        break;
      case A.INTS:
        out.set(name, (attribute.ints ?? []).map(toNumber));
        break;
      case A.FLOATS:
        out.set(name, [...(attribute.floats ?? [])]);
        break;
      case A.STRING:
        out.set(name, new TextDecoder().decode(attribute.s ?? new Uint8Array()));
        break;
      case A.TENSOR:
        out.set(name, attribute.t ?? undefined);
        break;
      default:
        out.set(name, undefined);
    }
  }
  return out;
}
