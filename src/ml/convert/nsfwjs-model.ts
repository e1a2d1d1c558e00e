import path from 'node:path';
import type * as tfTypes from '@tensorflow/tfjs';
import { ModelConversionError } from './errors';
import type { KerasModelTopology } from './keras-topology';

/**
 * The TF.js layers model nsfwjs@4 ships: `dist/models/mobilenet_v2/`, two UMD bundles.
 * `model.min.js` exports `{modelTopology, weightsManifest}`; `group1-shard1of1.min.js`
 * exports the uint8-quantised weights as one base64 string. nsfwjs loads them the same way
 * (require, base64-decode, `tf.loadLayersModel`) and feeds pixels divided by 255, resized to 224.
 */
export interface NsfwjsArtifacts {
  /** Directory the bundles were read from (for messages). */
  dir: string;
  modelTopology: KerasModelTopology;
  weightSpecs: tfTypes.io.WeightsManifestEntry[];
  weightData: ArrayBuffer;
  /** Class labels of the 5-way softmax, lower-cased, in output order. */
  labels: string[];
}

/** nsfwjs's compiled CommonJS entry lives in `dist/cjs`; the model bundles sit beside it. */
function nsfwjsDistDir(): string {
  return path.join(path.dirname(require.resolve('nsfwjs')), '..');
}

function nsfwjsMobilenetV2Dir(): string {
  return path.join(nsfwjsDistDir(), 'models', 'mobilenet_v2');
}

export function readNsfwjsMobilenetV2(): NsfwjsArtifacts {
  const dir = nsfwjsMobilenetV2Dir();
  const modelFile = path.join(dir, 'model.min.js');
  const model = require(modelFile) as {
    modelTopology?: KerasModelTopology;
    weightsManifest?: tfTypes.io.WeightsManifestConfig;
  };
  if (!model.modelTopology || !model.weightsManifest) {
    throw new ModelConversionError(modelFile, 'expected an object with modelTopology and weightsManifest');
  }
  const weightSpecs: tfTypes.io.WeightsManifestEntry[] = [];
  const shards: Buffer[] = [];
  for (const group of model.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const shardPath of group.paths) {
      const shardFile = path.join(dir, `${shardPath}.min.js`);
      const base64 = require(shardFile) as unknown;
      if (typeof base64 !== 'string') throw new ModelConversionError(shardFile, 'expected a base64 string export');
      shards.push(Buffer.from(base64, 'base64'));
    }
  }
  const joined = Buffer.concat(shards);
  const weightData = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength) as ArrayBuffer;
  return { dir, modelTopology: model.modelTopology, weightSpecs, weightData, labels: readLabels() };
}

/** The label order comes from nsfwjs itself, so the head's labels cannot drift from the weights. */
function readLabels(): string[] {
  const file = path.join(nsfwjsDistDir(), 'cjs', 'nsfw_classes.js');
  const { NSFW_CLASSES } = require(file) as { NSFW_CLASSES?: Record<number, string> };
  if (!NSFW_CLASSES) throw new ModelConversionError(file, 'expected an NSFW_CLASSES export');
  const count = Object.keys(NSFW_CLASSES).length;
  return Array.from({ length: count }, (_, i) => {
    const label = NSFW_CLASSES[i];
    if (typeof label !== 'string') throw new ModelConversionError(file, `NSFW_CLASSES has no label for index ${i}`);
    return label.toLowerCase();
  });
}
