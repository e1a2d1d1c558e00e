import { onnx } from 'onnx-proto';
import type { TrainedHead } from '../heads';
import type { PackManifest } from '../types';
import { ModelExportError } from './errors';
import { toNumber } from './onnx-tensors';

/** Name of the exported models' image input, [N, 3, size, size] float, normalised as `ExportedInput` says. */
export const EXPORT_INPUT = 'image';
/** Name of the exported ONNX model's output: [N, classes] calibrated one-vs-rest scores in [0, 1]. */
export const EXPORT_SCORES = 'scores';
const PREFIX = 'export/';

/** Which classifier version an export is of: written into the file's metadata. */
export interface ExportInfo {
  classifierId: string;
  name: string;
  versionId: number;
  /** ISO 8601 time the version was trained. */
  created: string;
}

/** The exported input's geometry and normalisation: value = (pixel / 255 − mean[c]) / std[c], RGB order. */
export interface ExportedInput {
  size: number;
  mean: [number, number, number];
  std: [number, number, number];
}

export interface ClassifierOnnx {
  model: onnx.IModelProto;
  input: ExportedInput;
  classes: string[];
}

/**
 * Builds one self-contained ONNX model of a classifier version: the pack's network pruned to the
 * embedding taps, the embedding (each tap flattened and L2-normalised, concatenated, L2-normalised
 * again: exactly what the Embedder computes), and the head (linear one-vs-rest decisions on the
 * centred embedding, then Platt calibration sigmoid(a·z + b) per class).
 *
 * The pack's input may be NCHW or NHWC; the export's input is always NCHW [N, 3, S, S] with the
 * pack's normalisation. Throws ModelExportError when the pack model does not hold what its
 * manifest names, or the head does not fit the pack.
 */
export function buildClassifierOnnx(packModel: Uint8Array, manifest: PackManifest, head: TrainedHead, info: ExportInfo): ClassifierOnnx {
  if (head.dim !== manifest.embedding.dim) {
    throw new ModelExportError(`the head expects ${head.dim}-d embeddings, pack ${manifest.id} makes ${manifest.embedding.dim}-d ones`);
  }
  const source = onnx.ModelProto.decode(packModel);
  const graph = source.graph;
  if (!graph) throw new ModelExportError('the pack model has no graph');
  const packInput = (graph.input ?? []).find((i) => i.name === manifest.input.name);
  if (!packInput) throw new ModelExportError(`the pack model has no input ${manifest.input.name}`);
  const layout = inputLayout(packInput, manifest.input.size);

  const kept = reachableNodes(graph, manifest.embedding.outputs, manifest.input.name);
  const keptInitializers = new Set(kept.flatMap((n) => n.input ?? []));
  const initializers: onnx.ITensorProto[] = (graph.initializer ?? []).filter((t) => keptInitializers.has(t.name ?? ''));
  const nodes: onnx.INodeProto[] = [];
  const node = (opType: string, inputs: string[], output: string, attrs: onnx.IAttributeProto[] = []): string => {
    nodes.push({ opType, input: inputs, output: [output], name: `${output}_node`, attribute: attrs });
    return output;
  };
  const floats = (name: string, dims: number[], values: ArrayLike<number>): string => {
    initializers.push({ name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: toBytes(Float32Array.from(values)) });
    return name;
  };

  // The export's NCHW input feeds the pack's input in its own layout.
  if (layout === 'NCHW') node('Identity', [EXPORT_INPUT], manifest.input.name);
  else node('Transpose', [EXPORT_INPUT], manifest.input.name, [ints('perm', [0, 2, 3, 1])]);
  nodes.push(...kept);

  const taps = manifest.embedding.outputs.map((tap, i) => {
    const flat = node('Flatten', [tap], `${PREFIX}tap${i}_flat`, [int('axis', 1)]);
    return node('LpNormalization', [flat], `${PREFIX}tap${i}_l2`, [int('axis', 1), int('p', 2)]);
  });
  const joined = taps.length === 1 ? taps[0] : node('Concat', taps, `${PREFIX}taps`, [int('axis', 1)]);
  const embedding = node('LpNormalization', [joined], `${PREFIX}embedding`, [int('axis', 1), int('p', 2)]);

  // W·(e − c) + b = W·e + (b − W·c): the centring folds into the bias (in double precision).
  const classes = head.classes.length;
  const bias = new Float64Array(classes);
  for (let c = 0; c < classes; c++) {
    let z = head.bias[c];
    for (let k = 0; k < head.dim; k++) z -= head.weights[c * head.dim + k] * head.center[k];
    bias[c] = z;
  }
  const decisions = node(
    'Gemm',
    [embedding, floats(`${PREFIX}head/weights`, [classes, head.dim], head.weights), floats(`${PREFIX}head/bias`, [classes], bias)],
    `${PREFIX}decisions`,
    [int('transB', 1)],
  );
  const scaled = node('Mul', [decisions, floats(`${PREFIX}platt/a`, [classes], head.platt.map((p) => p.a))], `${PREFIX}platt_scaled`);
  const shifted = node('Add', [scaled, floats(`${PREFIX}platt/b`, [classes], head.platt.map((p) => p.b))], `${PREFIX}platt_logits`);
  node('Sigmoid', [shifted], EXPORT_SCORES);

  const input: ExportedInput = { size: manifest.input.size, mean: manifest.input.mean, std: manifest.input.std };
  const model: onnx.IModelProto = {
    irVersion: source.irVersion,
    opsetImport: source.opsetImport,
    producerName: 'watson-vr-selfhosted',
    modelVersion: info.versionId,
    docString: `Custom classifier '${info.name}' (${info.classifierId}), version ${info.versionId}: calibrated one-vs-rest scores per class.`,
    metadataProps: Object.entries(exportMetadata(input, head, info)).map(([key, value]) => ({ key, value })),
    graph: {
      name: `${info.classifierId}_v${info.versionId}`,
      node: nodes,
      initializer: initializers,
      input: [tensorInfo(EXPORT_INPUT, ['N', 3, input.size, input.size])],
      output: [tensorInfo(EXPORT_SCORES, ['N', classes])],
    },
  };
  return { model, input, classes: head.classes };
}

/** Metadata both export formats carry: what the input must hold and what the scores mean. */
export function exportMetadata(input: ExportedInput, head: TrainedHead, info: ExportInfo): Record<string, string> {
  return {
    classifier_id: info.classifierId,
    classifier_name: info.name,
    version_id: String(info.versionId),
    created: info.created,
    pack: head.packKey,
    classes: JSON.stringify(head.classes),
    input_layout: `NCHW [N, 3, ${input.size}, ${input.size}], RGB`,
    input_resize: `the picture scaled to cover ${input.size}x${input.size} and centre-cropped`,
    input_normalisation: `value = (pixel / 255 - mean[c]) / std[c] with mean = [${input.mean.join(', ')}], std = [${input.std.join(', ')}]`,
    input_mean: JSON.stringify(input.mean),
    input_std: JSON.stringify(input.std),
    scores: 'independent calibrated one-vs-rest probabilities in head class order; 0.5 is the decision threshold',
  };
}

function inputLayout(value: onnx.IValueInfoProto, size: number): 'NCHW' | 'NHWC' {
  const dims = (value.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimValue !== undefined && d.dimValue !== null ? toNumber(d.dimValue) : undefined));
  if (dims.length === 4 && dims[1] === 3 && dims[2] === size && dims[3] === size) return 'NCHW';
  if (dims.length === 4 && dims[3] === 3 && dims[1] === size && dims[2] === size) return 'NHWC';
  throw new ModelExportError(`the pack input ${value.name} has shape [${dims.join(', ')}], expected [N, 3, ${size}, ${size}] or [N, ${size}, ${size}, 3]`);
}

/** The nodes the outputs depend on, in the graph's (topological) order. */
function reachableNodes(graph: onnx.IGraphProto, outputs: string[], inputName: string): onnx.INodeProto[] {
  const producer = new Map<string, onnx.INodeProto>();
  for (const n of graph.node ?? []) for (const out of n.output ?? []) producer.set(out, n);
  const needed = new Set<onnx.INodeProto>();
  const pending = [...outputs];
  for (const out of outputs) if (!producer.has(out)) throw new ModelExportError(`the pack model computes no tensor ${out}`);
  while (pending.length > 0) {
    const n = producer.get(pending.pop()!);
    if (!n || needed.has(n)) continue;
    needed.add(n);
    pending.push(...(n.input ?? []).filter((name) => name !== '' && name !== inputName));
  }
  return (graph.node ?? []).filter((n) => needed.has(n));
}

function tensorInfo(name: string, shape: Array<number | string>): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function int(name: string, i: number): onnx.IAttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.INT, i };
}

function ints(name: string, values: number[]): onnx.IAttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: values };
}

function toBytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** Serialises a built model. */
export function encodeOnnx(model: onnx.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}
