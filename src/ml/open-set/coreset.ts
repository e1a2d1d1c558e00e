import { pairwiseDistances } from '../heads/knn-gate';

/**
 * Greedy k-centre (farthest-first traversal) order of unit embeddings: the first row is the one
 * farthest from the rows' mean, each next one the row whose nearest already-ordered row is farthest
 * (ties to the lower index). Every prefix of the order is a 2-approximate k-centre coreset of all rows:
 * the fewest rows that still cover every kind of picture in the set, so a bank cut to a prefix keeps
 * its diversity (the negatives' diversity is what open-set training needs) at a fraction of the rows.
 * Cost: one onnxruntime GEMM of the rows (n² × dim) and n² steps in JavaScript; n×n float32 distances
 * in memory (27 MB for 2,600 rows). Returns indices into `rows`, all of them, in order.
 */
export async function farthestFirstOrder(rows: Float32Array[], threads = 1): Promise<number[]> {
  const n = rows.length;
  if (n === 0) return [];
  const dim = rows[0].length;
  const mean = new Float64Array(dim);
  for (const row of rows) for (let k = 0; k < dim; k++) mean[k] += row[k] / n;
  const stacked = new Float32Array(n * dim);
  rows.forEach((row, i) => stacked.set(row, i * dim));
  const distances = await pairwiseDistances(stacked, n, dim, threads);
  let first = 0;
  let farthest = -1;
  rows.forEach((row, i) => {
    let squared = 0;
    for (let k = 0; k < dim; k++) squared += (row[k] - mean[k]) ** 2;
    if (squared > farthest) [first, farthest] = [i, squared];
  });
  const nearest = Float64Array.from({ length: n }, () => Infinity);
  const taken = new Uint8Array(n);
  const order: number[] = [];
  for (let next = first; order.length < n;) {
    order.push(next);
    taken[next] = 1;
    const from = distances.subarray(next * n, (next + 1) * n);
    let best = -1;
    for (let i = 0; i < n; i++) {
      if (taken[i]) continue;
      if (from[i] < nearest[i]) nearest[i] = from[i];
      if (best < 0 || nearest[i] > nearest[best]) best = i;
    }
    next = best;
  }
  return order;
}
