import fs from 'node:fs';
import path from 'node:path';
import { decodeImage } from './src/ml/decode-image';
import { colorClasses } from './src/ml/color-classes';
import { FOOD_DIR } from './bench/lib/datasets';
(async () => {
  const files = fs.readdirSync(FOOD_DIR).filter((f) => f.endsWith('.jpeg')).slice(0, 160);
  const bytes = files.map((f) => fs.readFileSync(path.join(FOOD_DIR, f)));
  let t = process.hrtime.bigint();
  const decoded = [];
  for (let i = 0; i < bytes.length; i++) decoded.push(await decodeImage(bytes[i], files[i], 224));
  console.log('decode sequential ms/img', Number(process.hrtime.bigint() - t) / 1e6 / 160);
  t = process.hrtime.bigint();
  for (const d of decoded) colorClasses(d);
  console.log('colors ms/img', Number(process.hrtime.bigint() - t) / 1e6 / 160);
  t = process.hrtime.bigint();
  const out = new Float32Array(3 * 224 * 224);
  for (const d of decoded) { for (let c = 0; c < 3; c++) { const base = c * 50176; for (let p = 0, s = c; p < 50176; p++, s += 3) out[base + p] = d.rgb[s] * (1/255) + 0; } }
  console.log('nchw ms/img', Number(process.hrtime.bigint() - t) / 1e6 / 160);
})();
