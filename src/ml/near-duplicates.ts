/**
 * Cosine distance (1 − cos) at or under which two example pictures count as near-duplicates: the
 * same photo re-encoded, resized or slightly cropped. Measured with `npm run bench:near-duplicates`
 * (100 food photos, bundled pack + CenterNet, 3,648 values): copies made smaller (60 %, JPEG 70),
 * cropped by 5 % a side, or both sit at a median 0.0045, 0.0056 and 0.011 from their original; a
 * photo's nearest other photo at a median 0.016, 5 % of them within 0.0055 (half of those exact
 * duplicates in the set). At 0.005, 31 % of those copies are caught and 4 % of photos have another
 * photo that close; at 0.01, 72 % and 26 %. The console's "needs a look" list must not drown in
 * look-alikes, so the stricter value; a lightly re-encoded copy (JPEG 85, same size) is at 0.0002.
 * Centring on the set's mean separates no better (same ratio of the medians).
 */
export const NEAR_DUPLICATE_DISTANCE = 0.005;

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
