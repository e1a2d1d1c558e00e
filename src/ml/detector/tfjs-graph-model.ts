import fs from 'node:fs/promises';
import path from 'node:path';
import type * as tfTypes from '@tensorflow/tfjs';
import { ModelConversionError } from '../convert/errors';
import { loadTfjsCpu } from '../convert/tfjs';

/** One attribute of a TF GraphDef node as TF.js's converter writes it to JSON (64-bit ints and bytes as strings). */
export interface TfAttr {
  b?: boolean;
  i?: string;
  f?: number;
  /** base64 */
  s?: string;
  type?: string;
  list?: { i?: string[]; s?: string[] };
  shape?: { dim?: Array<{ size?: string }> };
}

export interface TfNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, TfAttr>;
}

/** A constant of the graph, dequantised to its original dtype exactly as TF.js does when it loads the model. */
export interface GraphConstant {
  dtype: 'float32' | 'int32';
  shape: number[];
  values: Float32Array | Int32Array;
}

/** A TF.js `graph-model`: its GraphDef nodes and the constants its weights file holds. */
export interface TfjsGraphModel {
  /** The model.json path, for messages. */
  file: string;
  nodes: TfNode[];
  constants: Map<string, GraphConstant>;
}

interface GraphModelJson {
  format?: string;
  modelTopology?: { node?: TfNode[] };
  weightsManifest?: Array<{ paths: string[]; weights: tfTypes.io.WeightsManifestEntry[] }>;
}

/** Reads a TF.js graph model (model.json plus the weight files it names, which sit beside it). */
export async function readTfjsGraphModel(jsonPath: string): Promise<TfjsGraphModel> {
  const json = JSON.parse(await fs.readFile(jsonPath, 'utf8')) as GraphModelJson;
  const nodes = json.modelTopology?.node;
  if (json.format !== 'graph-model' || !nodes || !json.weightsManifest) {
    throw new ModelConversionError(
      jsonPath,
      'not a TF.js graph model (expected format graph-model with modelTopology.node and weightsManifest)',
    );
  }
  const shards = await Promise.all(
    json.weightsManifest.flatMap((group) =>
      group.paths.map((shard) => fs.readFile(path.join(path.dirname(jsonPath), shard))),
    ),
  );
  const joined = Buffer.concat(shards);
  const weightData = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength) as ArrayBuffer;
  const tf = await loadTfjsCpu();
  const tensors = tf.io.decodeWeights(
    weightData,
    json.weightsManifest.flatMap((group) => group.weights),
  );
  const constants = new Map<string, GraphConstant>();
  for (const [name, tensor] of Object.entries(tensors)) {
    if (tensor.dtype !== 'float32' && tensor.dtype !== 'int32') {
      throw new ModelConversionError(
        jsonPath,
        `constant ${name} has dtype ${tensor.dtype}; only float32 and int32 are supported`,
      );
    }
    constants.set(name, {
      dtype: tensor.dtype,
      shape: tensor.shape,
      values: tensor.dataSync() as Float32Array | Int32Array,
    });
    tensor.dispose();
  }
  return { file: jsonPath, nodes, constants };
}
