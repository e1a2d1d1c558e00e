import type * as tfTypes from '@tensorflow/tfjs';
import type { WeightTensor } from './layers-to-onnx';

/** Decodes (and dequantises) TF.js weight data exactly as TF.js does when it loads a model. */
export function decodeTfjsWeights(
  tf: typeof tfTypes,
  weightData: ArrayBuffer,
  weightSpecs: tfTypes.io.WeightsManifestEntry[],
): Map<string, WeightTensor> {
  const tensors = tf.io.decodeWeights(weightData, weightSpecs);
  const weights = new Map<string, WeightTensor>();
  for (const [name, tensor] of Object.entries(tensors)) {
    weights.set(name, { shape: tensor.shape, data: tensor.dataSync() as Float32Array });
    tensor.dispose();
  }
  return weights;
}

/**
 * Loads `@tensorflow/tfjs` on its pure-JS cpu backend, in production mode: that mode only
 * silences the "install tfjs-node" banner, which would otherwise land in the service's log.
 */
export async function loadTfjsCpu(): Promise<typeof tfTypes> {
  const tf = (await import('@tensorflow/tfjs')) as typeof tfTypes;
  tf.enableProdMode();
  await tf.setBackend('cpu');
  await tf.ready();
  return tf;
}
