import { readNsfwjsMobilenetV2 } from './src/ml/convert/nsfwjs-model';
import { loadTfjsCpu } from './src/ml/convert/tfjs';
(async () => {
  const tf = await loadTfjsCpu();
  const a = readNsfwjsMobilenetV2();
  const m = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: a.modelTopology as object, weightSpecs: a.weightSpecs, weightData: a.weightData }));
  for (const b of [1, 1, 1]) { const t = Date.now(); const o = m.predict(tf.randomUniform([b, 224, 224, 3])) as any; o.dataSync(); console.log(b, Date.now() - t); }
})();
