import fs from 'node:fs';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';
import { convertCenternet } from './src/ml/detector/centernet-converter';
import { readTfjsGraphModel } from './src/ml/detector/tfjs-graph-model';
import { decodeImageStretched } from './src/ml/decode-image';
import { COCO_CLASSES } from './src/ml/detector/coco-labels';
(async () => {
  const g = await readTfjsGraphModel('node_modules/@vladmandic/human/models/centernet.json');
  const dog = fs.readFileSync('/usr/share/darknet/data/dog.jpg');
  const inputs: Record<string, Buffer> = {
    car: await sharp(dog).extract({ left: 440, top: 70, width: 250, height: 110 }).toBuffer(),
    carSquare: await sharp(dog).extract({ left: 450, top: 50, width: 230, height: 150 }).toBuffer(),
    dogc: await sharp(dog).extract({ left: 120, top: 200, width: 220, height: 340 }).toBuffer(),
    chelsea: fs.readFileSync('/tmp/i9/debs/x/python3-skimage/usr/lib/python3/dist-packages/skimage/data/chelsea.png'),
    scream: fs.readFileSync('/usr/share/darknet/data/scream.jpg'),
  };
  for (const size of [160, 224, 288]) {
    const session = await ort.InferenceSession.create(convertCenternet(g, { foldHardActivations: true, inputSize: size }), { intraOpNumThreads: 1 });
    for (const [name, bytes] of Object.entries(inputs)) {
      const { rgb } = await decodeImageStretched(bytes, name, size);
      const r = await session.run({ images: new ort.Tensor('float32', Float32Array.from(rgb), [1, size, size, 3]) });
      const d = r.detections.data as Float32Array;
      const best = new Map<string, number>();
      for (let i = 0; i < 100; i++) { const c = COCO_CLASSES[d[i * 6 + 5]].name; best.set(c, Math.max(best.get(c) ?? 0, d[i * 6 + 4])); }
      console.log(size, name.padEnd(10), [...best].filter(([, v]) => v >= 0.2).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', '));
    }
  }
})();
