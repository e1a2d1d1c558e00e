import { onnx } from 'onnx-proto';
import type { TrainedHead } from '../heads';
import { KNOWN_CAP_SLOPE } from '../heads/score';
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
  /**
   * How the picture becomes the S×S square, as the Embedder does it: with several networks (the
   * detector's square feeds both) it is stretched; with the pack alone it covers the square, centre-cropped.
   */
  fit: 'stretch' | 'cover';
  mean: [number, number, number];
  std: [number, number, number];
}

export interface ClassifierOnnx {
  model: onnx.IModelProto;
  input: ExportedInput;
  classes: string[];
}

/**
 * One network the embedding is read from: its ONNX model, the input it takes (NCHW [N,3,S,S] or
 * NHWC [N,S,S,3], value = (pixel / 255 − mean[c]) / std[c]) and the outputs that are embedding
 * taps, in embedding order.
 */
export interface EmbeddingSource {
  model: Uint8Array;
  input: { name: string; size: number; mean: [number, number, number]; std: [number, number, number] };
  outputs: string[];
  /** Values the outputs hold together (per image). */
  dim: number;
}

/** A model pack as an embedding source. */
export function packEmbeddingSource(model: Uint8Array, manifest: PackManifest): EmbeddingSource {
  return { model, input: manifest.input, outputs: manifest.embedding.outputs, dim: manifest.embedding.dim };
}

/**
 * Builds one self-contained ONNX model of a classifier version: the embedding networks pruned to
 * their taps, the embedding (each tap flattened and L2-normalised, all concatenated in source
 * order, L2-normalised again: exactly what the Embedder computes), and the head (linear
 * one-vs-rest decisions on the centred embedding, then Platt calibration sigmoid(a·z + b) per class).
 *
 * The export's input is NCHW [N, 3, S, S], S the largest source's size, with the first source's
 * normalisation; every source gets it in its own layout (NCHW or NHWC) and normalisation, a smaller
 * one as k×k block means (S = k × its size), as the Embedder feeds it. Throws ModelExportError when a
 * model does not hold what its source names, a size does not divide S, or the head does not fit the embedding.
 */
export function buildClassifierOnnx(sources: EmbeddingSource[], head: TrainedHead, info: ExportInfo): ClassifierOnnx {
  if (sources.length === 0) throw new ModelExportError('no embedding network to export');
  const embeddingDim = sources.reduce((sum, src) => sum + src.dim, 0);
  if (head.dim !== embeddingDim)
    throw new ModelExportError(
      `the head expects ${head.dim}-d embeddings, the embedding networks make ${embeddingDim}-d ones`,
    );
  const size = Math.max(...sources.map((src) => src.input.size));
  if (sources.some((src) => size % src.input.size !== 0)) {
    throw new ModelExportError(
      `the embedding networks' input sizes (${sources.map((src) => src.input.size).join(', ')}) are not whole fractions of the largest; an exported model takes one picture`,
    );
  }
  const input: ExportedInput = {
    size,
    fit: sources.length > 1 ? 'stretch' : 'cover',
    mean: sources[0].input.mean,
    std: sources[0].input.std,
  };
  const nodes: onnx.INodeProto[] = [];
  const initializers: onnx.ITensorProto[] = [];
  const node = (opType: string, inputs: string[], output: string, attrs: onnx.IAttributeProto[] = []): string => {
    nodes.push({ opType, input: inputs, output: [output], name: `${output}_node`, attribute: attrs });
    return output;
  };
  const floats = (name: string, dims: number[], values: ArrayLike<number>): string => {
    initializers.push({
      name,
      dims,
      dataType: onnx.TensorProto.DataType.FLOAT,
      rawData: toBytes(Float32Array.from(values)),
    });
    return name;
  };

  let irVersion = 0;
  const opsets = new Map<string, number>();
  const tapNames: string[] = [];
  sources.forEach((src, s) => {
    const model = onnx.ModelProto.decode(src.model);
    const graph = model.graph;
    if (!graph) throw new ModelExportError(`embedding network ${s + 1} has no graph`);
    irVersion = Math.max(irVersion, toNumber(model.irVersion));
    for (const opset of model.opsetImport ?? [])
      opsets.set(opset.domain ?? '', Math.max(opsets.get(opset.domain ?? '') ?? 0, toNumber(opset.version)));
    const graphInput = (graph.input ?? []).find((i) => i.name === src.input.name);
    if (!graphInput) throw new ModelExportError(`embedding network ${s + 1} has no input ${src.input.name}`);
    // Several networks in one graph: each one's tensor names get their own prefix.
    const rename =
      sources.length === 1 ? (name: string) => name : (name: string) => (name === '' ? '' : `net${s + 1}/${name}`);
    const kept = reachableNodes(graph, src.outputs, src.input.name);
    const keptNames = new Set(kept.flatMap((n) => n.input ?? []));
    for (const t of graph.initializer ?? [])
      if (keptNames.has(t.name ?? '')) initializers.push({ ...t, name: rename(t.name ?? '') });

    // The export's input, brought to this network's normalisation and layout.
    let fed = EXPORT_INPUT;
    const gain = src.input.std.map((sd, c) => input.std[c] / sd);
    const shift = src.input.mean.map((m, c) => (input.mean[c] - m) / src.input.std[c]);
    if (gain.some((g) => g !== 1))
      fed = node('Mul', [fed, floats(`${PREFIX}net${s + 1}/gain`, [1, 3, 1, 1], gain)], `${PREFIX}net${s + 1}/scaled`);
    if (shift.some((b) => b !== 0))
      fed = node(
        'Add',
        [fed, floats(`${PREFIX}net${s + 1}/shift`, [1, 3, 1, 1], shift)],
        `${PREFIX}net${s + 1}/shifted`,
      );
    const k = size / src.input.size;
    if (k > 1)
      fed = node('AveragePool', [fed], `${PREFIX}net${s + 1}/pooled`, [
        ints('kernel_shape', [k, k]),
        ints('strides', [k, k]),
      ]);
    if (inputLayout(graphInput, src.input.size) === 'NCHW') node('Identity', [fed], rename(src.input.name));
    else node('Transpose', [fed], rename(src.input.name), [ints('perm', [0, 2, 3, 1])]);
    for (const n of kept)
      nodes.push({
        ...n,
        name: rename(n.name ?? ''),
        input: (n.input ?? []).map(rename),
        output: (n.output ?? []).map(rename),
      });
    tapNames.push(...src.outputs.map(rename));
  });
  const taps = tapNames.map((tap, i) => {
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
    [
      embedding,
      floats(`${PREFIX}head/weights`, [classes, head.dim], head.weights),
      floats(`${PREFIX}head/bias`, [classes], bias),
    ],
    `${PREFIX}decisions`,
    [int('transB', 1)],
  );
  const scaled = node(
    'Mul',
    [
      decisions,
      floats(
        `${PREFIX}platt/a`,
        [classes],
        head.platt.map((p) => p.a),
      ),
    ],
    `${PREFIX}platt_scaled`,
  );
  const shifted = node(
    'Add',
    [
      scaled,
      floats(
        `${PREFIX}platt/b`,
        [classes],
        head.platt.map((p) => p.b),
      ),
    ],
    `${PREFIX}platt_logits`,
  );
  node('Sigmoid', [head.known ? knownRejection(head, embedding, shifted, node, floats) : shifted], EXPORT_SCORES);

  const model: onnx.IModelProto = {
    irVersion,
    opsetImport: [...opsets].map(([domain, version]) => ({ domain, version })),
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

type NodeFn = (opType: string, inputs: string[], output: string, attrs?: onnx.IAttributeProto[]) => string;
type FloatsFn = (name: string, dims: number[], values: ArrayLike<number>) => string;

/**
 * The "any of my classes" head's rejection, as scoreHead applies it (knownLogOddsCap, cappedScores), in
 * ops both formats express: margin = known decision − threshold; cap = margin + KNOWN_CAP_SLOPE·Relu(margin);
 * top = the highest class log-odds (a running max: m + Relu(x − m), as Core ML has no ReduceMax here);
 * every class's log-odds − Relu(top − cap). Returns the rejected log-odds [N, classes].
 */
function knownRejection(head: TrainedHead, embedding: string, logOdds: string, node: NodeFn, floats: FloatsFn): string {
  const known = head.known!;
  // w·(e − c) + b − threshold = w·e + (b − threshold − w·c), in double precision.
  let offset = known.bias - known.threshold;
  for (let k = 0; k < head.dim; k++) offset -= known.weights[k] * head.center[k];
  const margin = node(
    'Gemm',
    [
      embedding,
      floats(`${PREFIX}known/weights`, [1, head.dim], known.weights),
      floats(`${PREFIX}known/bias`, [1], [offset]),
    ],
    `${PREFIX}known/margin`,
    [int('transB', 1)],
  );
  const rise = node(
    'Mul',
    [node('Relu', [margin], `${PREFIX}known/above`), floats(`${PREFIX}known/slope`, [1], [KNOWN_CAP_SLOPE])],
    `${PREFIX}known/rise`,
  );
  const cap = node('Add', [margin, rise], `${PREFIX}known/cap`);
  const classes = head.classes.length;
  const column = (c: number) =>
    node(
      'Gemm',
      [
        logOdds,
        floats(
          `${PREFIX}known/pick${c}`,
          [1, classes],
          Array.from({ length: classes }, (_, j) => (j === c ? 1 : 0)),
        ),
      ],
      `${PREFIX}known/class${c}`,
      [int('transB', 1)],
    );
  let top = column(0);
  for (let c = 1; c < classes; c++) {
    const over = node('Sub', [column(c), top], `${PREFIX}known/over${c}`);
    top = node('Add', [top, node('Relu', [over], `${PREFIX}known/above${c}`)], `${PREFIX}known/top${c}`);
  }
  const shift = node('Relu', [node('Sub', [top, cap], `${PREFIX}known/excess`)], `${PREFIX}known/shift`);
  return node('Sub', [logOdds, shift], `${PREFIX}known/logits`);
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
    input_resize:
      input.fit === 'stretch'
        ? `the picture stretched to ${input.size}x${input.size} (aspect ratio not kept; Vision's scaleFill)`
        : `the picture scaled to cover ${input.size}x${input.size} and centre-cropped (Vision's centerCrop)`,
    input_normalisation: `value = (pixel / 255 - mean[c]) / std[c] with mean = [${input.mean.join(', ')}], std = [${input.std.join(', ')}]`,
    input_mean: JSON.stringify(input.mean),
    input_std: JSON.stringify(input.std),
    scores:
      'independent calibrated one-vs-rest probabilities in head class order; 0.5 is the decision threshold' +
      (head.known
        ? '; an image unlike all the classes (the "any of my classes" head below its threshold) has every score below 0.5, ranking kept'
        : ''),
    open_set: head.known
      ? 'carries the "any of my classes" rejection; not the k-NN gate (the service also caps the top class of an image unlike its stored examples)'
      : 'no open-set rejection (trained without the bank); not the k-NN gate',
  };
}

function inputLayout(value: onnx.IValueInfoProto, size: number): 'NCHW' | 'NHWC' {
  const dims = (value.type?.tensorType?.shape?.dim ?? []).map((d) =>
    d.dimValue !== undefined && d.dimValue !== null ? toNumber(d.dimValue) : undefined,
  );
  if (dims.length === 4 && dims[1] === 3 && dims[2] === size && dims[3] === size) return 'NCHW';
  if (dims.length === 4 && dims[3] === 3 && dims[1] === size && dims[2] === size) return 'NHWC';
  throw new ModelExportError(
    `the pack input ${value.name} has shape [${dims.join(', ')}], expected [N, 3, ${size}, ${size}] or [N, ${size}, ${size}, 3]`,
  );
}

/** The nodes the outputs depend on, in the graph's (topological) order. */
function reachableNodes(graph: onnx.IGraphProto, outputs: string[], inputName: string): onnx.INodeProto[] {
  const producer = new Map<string, onnx.INodeProto>();
  for (const n of graph.node ?? []) for (const out of n.output ?? []) producer.set(out, n);
  const needed = new Set<onnx.INodeProto>();
  const pending = [...outputs];
  for (const out of outputs)
    if (!producer.has(out)) throw new ModelExportError(`the pack model computes no tensor ${out}`);
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
