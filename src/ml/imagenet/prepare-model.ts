import { onnx } from 'onnx-proto';
import { ModelPackError } from './model-pack-error';

/** What preparing a classification model found and added. */
export interface PreparedModel {
  /** The model with the pooled features as an extra output. */
  model: Uint8Array;
  inputName: string;
  /** Side of the square input image. */
  inputSize: number;
  logitsOutput: string;
  classCount: number;
  /** The added output: the global average pool feeding the classifier, flattened to [N, embeddingDim]. */
  embeddingOutput: string;
  embeddingDim: number;
}

const EMBEDDING_OUTPUT = 'pooled_embedding';
/** Used when the model leaves the spatial size symbolic; ImageNet models are trained at 224. */
const DEFAULT_INPUT_SIZE = 224;
/** Ops that only reshape (or are no-ops at inference) between the pool, the classifier and the logits. */
const PASS_THROUGH_OPS = new Set(['Flatten', 'Reshape', 'Squeeze', 'Identity', 'Dropout']);

/**
 * Takes an image classifier shaped like the model zoo's MobileNetV2 (image → … → GlobalAveragePool →
 * [Flatten/Reshape] → Gemm | MatMul(+Add) | 1×1 Conv → [Flatten/Reshape] → logits) and adds the
 * pooled features, flattened, as a second graph output. Tensor names come from the model itself.
 * Throws ModelPackError, naming `source`, when the graph does not have that shape.
 */
export function prepareClassifierModel(bytes: Uint8Array, source: string): PreparedModel {
  const model = decodeModel(bytes, source);
  const graph = model.graph;
  if (!graph?.node || !graph.output) throw new ModelPackError(source, 'the ONNX file has no graph');
  const notUnderstood = (reason: string) =>
    new ModelPackError(
      source,
      `graph not understood: ${reason}; expected an ImageNet classifier like the model zoo's MobileNetV2`,
    );

  const initializers = new Map((graph.initializer ?? []).map((init) => [init.name ?? '', init]));
  const producers = new Map<string, onnx.INodeProto>();
  for (const node of graph.node) for (const output of node.output ?? []) producers.set(output, node);
  const skipPassThrough = (tensor: string): onnx.INodeProto | undefined => {
    let node = producers.get(tensor);
    while (node && PASS_THROUGH_OPS.has(node.opType ?? '')) node = producers.get(node.input?.[0] ?? '');
    return node;
  };

  // Older exports list the initializers among the graph inputs too: the image is the one that is not.
  const imageInputs = (graph.input ?? []).filter((input) => !initializers.has(input.name ?? ''));
  if (imageInputs.length !== 1)
    throw notUnderstood(`${imageInputs.length} non-constant inputs, expected one image input`);
  const imageInput = imageInputs[0];
  const inputDims = imageInput.type?.tensorType?.shape?.dim ?? [];
  if (imageInput.type?.tensorType?.elemType !== onnx.TensorProto.DataType.FLOAT || inputDims.length !== 4) {
    throw notUnderstood(`input '${imageInput.name}' is not a 4-D float tensor`);
  }
  const [batchDim, channels, height, width] = inputDims.map(dimValue);
  if (channels !== 3)
    throw notUnderstood(`input '${imageInput.name}' has ${channels ?? 'unknown'} channels, expected 3 (NCHW)`);
  if (height !== width)
    throw notUnderstood(`input '${imageInput.name}' is ${height}×${width}, expected a square image`);

  if (graph.output.length !== 1) throw notUnderstood(`${graph.output.length} outputs, expected the logits only`);
  const logitsOutput = graph.output[0].name ?? '';
  const classifier = findClassifier(skipPassThrough(logitsOutput), producers, initializers);
  if (!classifier)
    throw notUnderstood(`'${logitsOutput}' is not computed by a Gemm, MatMul or 1×1 Conv with constant weights`);

  const pool = skipPassThrough(classifier.features);
  if (pool?.opType !== 'GlobalAveragePool' || !pool.output?.[0]) {
    throw notUnderstood(
      `the classifier's input comes from ${pool?.opType ?? 'a graph input'}, not a GlobalAveragePool`,
    );
  }
  const pooled = pool.output[0];

  const tensorNames = new Set([...producers.keys(), ...initializers.keys(), ...(graph.input ?? []).map((i) => i.name)]);
  let embeddingOutput = EMBEDDING_OUTPUT;
  for (let n = 2; tensorNames.has(embeddingOutput); n += 1) embeddingOutput = `${EMBEDDING_OUTPUT}_${n}`;
  graph.node.push({
    opType: 'Flatten',
    name: `${embeddingOutput}_flatten`,
    input: [pooled],
    output: [embeddingOutput],
    attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }],
  });
  graph.output.push({
    name: embeddingOutput,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: {
          dim: [
            batchDim === undefined ? { dimParam: 'N' } : { dimValue: batchDim },
            { dimValue: classifier.inFeatures },
          ],
        },
      },
    },
  });

  return {
    model: onnx.ModelProto.encode(model).finish(),
    inputName: imageInput.name ?? '',
    inputSize: height ?? DEFAULT_INPUT_SIZE,
    logitsOutput,
    classCount: classifier.outFeatures,
    embeddingOutput,
    embeddingDim: classifier.inFeatures,
  };
}

interface Classifier {
  /** The tensor the classifier reads: the (reshaped) pooled features. */
  features: string;
  inFeatures: number;
  outFeatures: number;
}

/** Recognises the dense layer computing the logits and reads its size from the weight initializer. */
function findClassifier(
  node: onnx.INodeProto | undefined,
  producers: Map<string, onnx.INodeProto>,
  initializers: Map<string, onnx.ITensorProto>,
): Classifier | undefined {
  const weightDims = (name: string | undefined) => initializers.get(name ?? '')?.dims?.map(Number);
  const input = node?.input ?? [];
  switch (node?.opType) {
    case 'Gemm': {
      const dims = weightDims(input[1]);
      if (dims?.length !== 2) return undefined;
      const transB = node.attribute?.find((a) => a.name === 'transB')?.i;
      const [inFeatures, outFeatures] = Number(transB ?? 0) === 1 ? [dims[1], dims[0]] : dims;
      return { features: input[0], inFeatures, outFeatures };
    }
    case 'Add': {
      // MatMul + bias.
      const matMul = input.map((name) => producers.get(name)).find((producer) => producer?.opType === 'MatMul');
      return matMul ? findClassifier(matMul, producers, initializers) : undefined;
    }
    case 'MatMul': {
      const dims = weightDims(input[1]);
      return dims?.length === 2 ? { features: input[0], inFeatures: dims[0], outFeatures: dims[1] } : undefined;
    }
    case 'Conv': {
      const dims = weightDims(input[1]);
      if (dims?.length !== 4 || dims[2] !== 1 || dims[3] !== 1) return undefined;
      return { features: input[0], inFeatures: dims[1], outFeatures: dims[0] };
    }
    default:
      return undefined;
  }
}

function decodeModel(bytes: Uint8Array, source: string): onnx.ModelProto {
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (error) {
    throw new ModelPackError(source, `not a readable ONNX model (${(error as Error).message})`);
  }
}

/** A dimension's fixed size, or undefined when it is symbolic. */
function dimValue(dim: onnx.TensorShapeProto.IDimension): number | undefined {
  const value = Number(dim.dimValue ?? 0);
  return dim.dimParam || value <= 0 ? undefined : value;
}
