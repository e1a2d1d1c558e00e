import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { decodeImage } from './src/ml/decode-image';
import { loadPack } from './src/ml/model-pack';
import { FOOD_DIR } from './bench/lib/datasets';
(async () => {
  const pack = await loadPack('models', 'bundled');
  const files = fs.readdirSync(FOOD_DIR).filter((f) => f.endsWith('.jpeg')).slice(0, 160);
  const decoded = await Promise.all(files.map((f) => decodeImage(fs.readFileSync(path.join(FOOD_DIR, f)), f, 224)));
  for (const threads of [1, 2]) for (const b of [1, 16]) {
    const s = await ort.InferenceSession.create(pack.modelPath, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' });
    const x = new Float32Array(b * 3 * 224 * 224).fill(0.5);
    await s.run({ input: new ort.Tensor('float32', x, [b, 3, 224, 224]) });
    const t = process.hrtime.bigint(); let n = 0;
    while (n < 160) { await s.run({ input: new ort.Tensor('float32', x, [b, 3, 224, 224]) }); n += b; }
    console.log(`infer only b${b} t${threads}: ${(n / (Number(process.hrtime.bigint() - t) / 1e9)).toFixed(1)}/s`);
    await s.release();
  }
  console.log(decoded.length);
})();
