import { Worker } from 'node:worker_threads';
import type { NsfwjsArtifacts } from '../../src/ml/convert/nsfwjs-model';

/**
 * Runs the original TF.js model (pure-JS cpu backend) on NHWC images and returns, per requested
 * layer, its output globally average-pooled when 4-D. It runs in a worker thread: jest 30 routes
 * every global lookup of test-realm code through a Proxy, which makes TF.js's kernels 4–5× slower.
 */
export function tfjsReference(
  artifacts: NsfwjsArtifacts,
  nhwc: Float32Array,
  batch: number,
  size: number,
  layers: string[],
): Promise<Float32Array[]> {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const tf = require(workerData.tfjsPath);
    tf.enableProdMode();
    (async () => {
      await tf.setBackend('cpu');
      const { modelTopology, weightSpecs, weightData, nhwc, batch, size, layers } = workerData;
      const model = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology, weightSpecs, weightData }));
      const taps = tf.model({ inputs: model.inputs, outputs: layers.map((name) => model.getLayer(name).output) });
      const plane = size * size * 3;
      const results = layers.map(() => []);
      // One image at a time: the cpu backend slows down more than linearly with the batch.
      for (let n = 0; n < batch; n += 1) {
        tf.tidy(() => {
          const outputs = taps.predict(tf.tensor4d(nhwc.subarray(n * plane, (n + 1) * plane), [1, size, size, 3]));
          outputs.forEach((out, i) => results[i].push(...(out.rank === 4 ? out.mean([1, 2]) : out).dataSync()));
        });
      }
      parentPort.postMessage(results.map((values) => Float32Array.from(values)));
    })(); // a rejection ends the worker with an 'error' event
  `;
  const worker = new Worker(source, {
    eval: true,
    workerData: {
      tfjsPath: require.resolve('@tensorflow/tfjs'),
      modelTopology: artifacts.modelTopology,
      weightSpecs: artifacts.weightSpecs,
      weightData: artifacts.weightData,
      nhwc,
      batch,
      size,
      layers,
    },
  });
  return new Promise((resolve, reject) => {
    worker.once('message', (outputs: Float32Array[]) => {
      resolve(outputs);
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`TF.js reference worker exited with code ${code}`)));
  });
}
