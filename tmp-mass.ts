import fs from 'node:fs';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';
import { convertCenternet } from './src/ml/detector/centernet-converter';
import { readTfjsGraphModel } from './src/ml/detector/tfjs-graph-model';
import { decodeImageStretched } from './src/ml/decode-image';
import { COCO_CLASSES } from './src/ml/detector/coco-labels';
(async () => {
  const g = await readTfjsGraphModel('node_modules/@vladmandic/human/models/centernet.json');
  const session = await ort.InferenceSession.create(convertCenternet(g, { foldHardActivations: true, inputSize: 448, taps: true }), { intraOpNumThreads: 1 });
  const dog = fs.readFileSync('/usr/share/darknet/data/dog.jpg');
  const inputs: Record<string, Buffer> = {
    car: await sharp(dog).extract({ left: 440, top: 70, width: 250, height: 110 }).toBuffer(),
    carSquare: await sharp(dog).extract({ left: 450, top: 50, width: 230, height: 150 }).toBuffer(),
    dogc: await sharp(dog).extract({ left: 120, top: 200, width: 220, height: 340 }).toBuffer(),
    noise: await sharp(Buffer.from(Array.from({ length: 200 * 200 * 3 }, (_, i) => (i * 7919) % 251)), { raw: { width: 200, height: 200, channels: 3 } }).png().toBuffer(),
  };
  for (const f of fs.readdirSync('/usr/share/darknet/data').filter((f) => f.endsWith('.jpg'))) inputs[f] = fs.readFileSync(`/usr/share/darknet/data/${f}`);
  for (const f of ['chelsea.png', 'astronaut.png', 'coffee.png', 'rocket.jpg']) inputs[f] = fs.readFileSync(`/tmp/i9/debs/x/python3-skimage/usr/lib/python3/dist-packages/skimage/data/${f}`);
  for (const [name, bytes] of Object.entries(inputs)) {
    const { rgb } = await decodeImageStretched(bytes, name, 448);
    const r = await session.run({ images: new ort.Tensor('float32', Float32Array.from(rgb), [1, 448, 448, 3]) });
    const m = r.heatmap_mass.data as Float32Array;
    const d = r.detections.data as Float32Array;
    const best = new Map<number, number>();
    for (let i = 0; i < 100; i++) best.set(d[i * 6 + 5], Math.max(best.get(d[i * 6 + 5]) ?? 0, d[i * 6 + 4]));
    const top = Array.from(m.keys()).sort((a, b) => m[b] - m[a]).slice(0, 4);
    console.log(name.padEnd(14), top.map((c) => `${COCO_CLASSES[c].name} mass ${m[c].toFixed(1)} peak ${(best.get(c) ?? 0).toFixed(2)}`).join(' | '));
  }
})();
