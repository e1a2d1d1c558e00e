/**
 * Cosine distance (1 − cos) at or under which two example pictures count as near-duplicates: the
 * same photo re-encoded, resized or slightly cropped. Measured with bench/near-duplicates.ts on the
 * bundled pack's embeddings (see there for the figures): such copies sit far below this, while two
 * different photos of one subject sit well above it.
 */
export const NEAR_DUPLICATE_DISTANCE = 0.02;

/** Above this many pictures the all-pairs search (n²/2 dot products) is skipped: it would take the worker minutes. */
export const NEAR_DUPLICATE_MAX_IMAGES = 3000;

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
