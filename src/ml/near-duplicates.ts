/**
 * Cosine distance (1 − cos) between embeddings centred on their set's mean (centredOn), at or
 * under which two example pictures count as near-duplicates: the same photo re-encoded, resized or
 * slightly cropped. Measured with `npm run bench:near-duplicates` (120 food photos, bundled pack +
 * CenterNet, 3,648 values): at 0.08, 30 % of copies made smaller (60 %, JPEG 70), cropped by 5 % a
 * side, or both are caught, and 1.7 % of photos have another photo that close (exact duplicates in
 * the set); at 0.1, 44 % and 9 %. Raw embeddings separate worse (the same 30 % of copies at 0.005
 * comes with 5 % of photos; 55 % at 0.0075 with 14 %). The console's "needs a look" list must not
 * drown in look-alikes, hence the stricter value; a lightly re-encoded copy (JPEG 85) is caught always.
 */
export const NEAR_DUPLICATE_DISTANCE = 0.08;

/** The embeddings minus their mean: what the heads see (they train on centred features too). */
export function centredOn(embeddings: Float32Array[]): Float32Array[] {
  if (embeddings.length === 0) return [];
  const mean = new Float64Array(embeddings[0].length);
  for (const e of embeddings) for (let k = 0; k < e.length; k++) mean[k] += e[k] / embeddings.length;
  return embeddings.map((e) => Float32Array.from(e, (v, k) => v - mean[k]));
}

/**
 * Above this many pictures the all-pairs search (n²/2 dot products of 3,648 values) is skipped: at
 * 1,000 it is 1.8 G multiply-adds, seconds of the worker's time; at 5,000 it would be minutes.
 */
export const NEAR_DUPLICATE_MAX_IMAGES = 1000;

/**
 * Pairs of embeddings whose cosine distance is at most `maxDistance`, closest first, at most
 * `maxPairs` of them: `[i, j, distance]` with i < j, indices into `embeddings`. An exhaustive search
 * (O(n²·dim)); callers bound n (NEAR_DUPLICATE_MAX_IMAGES). Zero vectors match nothing.
 */
export function nearDuplicatePairs(
  embeddings: Float32Array[],
  maxDistance = NEAR_DUPLICATE_DISTANCE,
  maxPairs = 1000,
): Array<[number, number, number]> {
  const norms = embeddings.map((e) => {
    let sum = 0;
    for (let k = 0; k < e.length; k++) sum += e[k] * e[k];
    return Math.sqrt(sum);
  });
  const pairs: Array<[number, number, number]> = [];
  for (let i = 0; i < embeddings.length; i++) {
    const a = embeddings[i];
    if (norms[i] === 0) continue;
    for (let j = i + 1; j < embeddings.length; j++) {
      const b = embeddings[j];
      if (norms[j] === 0 || b.length !== a.length) continue;
      let dot = 0;
      for (let k = 0; k < a.length; k++) dot += a[k] * b[k];
      const distance = Math.max(0, 1 - dot / (norms[i] * norms[j]));
      if (distance <= maxDistance) pairs.push([i, j, distance]);
    }
  }
  pairs.sort((p, q) => p[2] - q[2] || p[0] - q[0] || p[1] - q[1]);
  return pairs.slice(0, maxPairs);
}
