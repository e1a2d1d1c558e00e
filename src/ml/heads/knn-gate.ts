import * as ort from 'onnxruntime-node';
import { OnnxGraphBuilder } from '../onnx/onnx-graph-builder';
import { roundToFloat16 } from '../open-set/float16';
import { cachedSession } from './onnx-session';
import { seededRandom, shuffleInPlace } from './random';

/**
 * The k-NN gate of a head: a class cannot score ≥ 0.5 for an image that lies farther from the class's
 * positives than the positives lie from each other. Distance = mean Euclidean distance (of unit
 * embeddings) to the k nearest positives; a class's radius = the largest leave-one-out distance among
 * its own positives. A linear head extrapolates: far from everything it was trained on, one side of its
 * hyperplane still says "yes". The gate says "unlike anything seen", whatever the hyperplane says.
 */
export interface HeadGate {
  k: number;
  /** Stored positives per class, in class order (at most the cap each). */
  counts: number[];
  /** Per class: the largest leave-one-out k-NN distance among its stored positives; Infinity with one positive. */
  radius: number[];
  /** The stored positives, class after class, each `dim` float16-exact values. */
  positives: Float32Array;
}

export const GATE_NEIGHBOURS = 3;
/** Distances within this of the radius pass: the stored positives are float16, a query is not (rounding moves distances by < 1e-3). */
const GATE_TOLERANCE = 1e-3;
/** Which leave-one-out distance is the radius: 1 = the largest (see bench:accuracy for the measured alternatives). */
export const GATE_RADIUS_QUANTILE = 1;
/** Positives kept per class (a seeded random subset beyond it): bounds head size, training and scoring cost. */
export const GATE_MAX_POSITIVES = 200;

/**
 * Euclidean distance of a[aAt..] and b[bAt..] over dim values, four accumulators for the CPU's pipelines.
 * Summed differences rather than 2 − 2·dot: exact for the float16-rounded positives, which are not quite unit.
 */
function distance(a: Float32Array, aAt: number, b: Float32Array, bAt: number, dim: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let k = 0;
  for (; k + 3 < dim; k += 4) {
    const d0 = a[aAt + k] - b[bAt + k];
    const d1 = a[aAt + k + 1] - b[bAt + k + 1];
    const d2 = a[aAt + k + 2] - b[bAt + k + 2];
    const d3 = a[aAt + k + 3] - b[bAt + k + 3];
    s0 += d0 * d0;
    s1 += d1 * d1;
    s2 += d2 * d2;
    s3 += d3 * d3;
  }
  for (; k < dim; k++) s0 += (a[aAt + k] - b[bAt + k]) ** 2;
  return Math.sqrt(s0 + s1 + s2 + s3);
}

/** Mean of the k smallest values (fewer when there are fewer). */
function meanOfSmallest(values: number[], k: number): number {
  values.sort((a, b) => a - b);
  const n = Math.min(k, values.length);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += values[i];
  return sum / n;
}

/** Gram matrix X·Xᵀ of the rows of X [n, d], on onnxruntime (its GEMM is far faster than JavaScript loops). */
function buildGramModel(): Uint8Array {
  const g = new OnnxGraphBuilder('gram');
  const x = g.input('X', ['n', 'd']);
  g.node('Gemm', [x, x], { transB: 1 }, 'gram');
  g.output('gram', ['n', 'n']);
  return g.toBuffer();
}

/** Pairwise Euclidean distances of n rows of `rows` (row-major, dim wide), as an n×n matrix. */
async function pairwiseDistances(rows: Float32Array, n: number, dim: number, threads: number): Promise<Float32Array> {
  const session = await cachedSession('gram', threads, buildGramModel);
  const result = await session.run({ X: new ort.Tensor('float32', rows, [n, dim]) });
  const gram = result.gram.data as Float32Array;
  result.gram.dispose();
  const squared = Float64Array.from({ length: n }, (_, i) => gram[i * n + i]);
  // ‖a − b‖² = ‖a‖² + ‖b‖² − 2a·b, from the Gram matrix's own diagonal so rounding cancels on duplicates.
  return Float32Array.from(gram, (value, at) =>
    Math.sqrt(Math.max(0, squared[Math.floor(at / n)] + squared[at % n] - 2 * value)),
  );
}

/**
 * Builds the gate from the examples' embeddings and each class's labels. `maxPositives` caps the
 * positives stored per class (seeded random subset); they are rounded to float16 as the head file stores them.
 * The positives' pairwise distances come from one onnxruntime GEMM per class.
 */
export async function buildGate(
  embeddings: Float32Array[],
  classLabels: Uint8Array[],
  dim: number,
  options: { k?: number; maxPositives?: number; radiusQuantile?: number; seed: number; threads?: number },
): Promise<HeadGate> {
  const k = options.k ?? GATE_NEIGHBOURS;
  const quantile = options.radiusQuantile ?? GATE_RADIUS_QUANTILE;
  const cap = options.maxPositives ?? GATE_MAX_POSITIVES;
  const random = seededRandom(options.seed);
  const chosen = classLabels.map((labels) => {
    const rows = Array.from(labels.keys()).filter((row) => labels[row]);
    return rows.length > cap
      ? shuffleInPlace(rows, random)
          .slice(0, cap)
          .sort((a, b) => a - b)
      : rows;
  });
  const counts = chosen.map((rows) => rows.length);
  const total = counts.reduce((sum, n) => sum + n, 0);
  const exact = new Float32Array(total * dim);
  let at = 0;
  for (const rows of chosen) for (const row of rows) exact.set(embeddings[row], dim * at++);
  const positives = roundToFloat16(exact);

  const radius: number[] = [];
  let start = 0;
  for (const n of counts) {
    if (n < 2) radius.push(Infinity);
    else {
      const distances = await pairwiseDistances(
        positives.slice(start * dim, (start + n) * dim),
        n,
        dim,
        options.threads ?? 1,
      );
      const loo = Array.from({ length: n }, (_, i) =>
        meanOfSmallest(
          Array.from(distances.subarray(i * n, (i + 1) * n)).filter((__, j) => j !== i),
          k,
        ),
      );
      loo.sort((a, b) => a - b);
      radius.push(loo[Math.min(n - 1, Math.ceil(quantile * n) - 1)]);
    }
    start += n;
  }
  return { k, counts, radius, positives };
}

/** The embedding's mean distance to the k nearest stored positives of class c. */
export function gateDistance(gate: HeadGate, c: number, embedding: Float32Array): number {
  const dim = embedding.length;
  let start = 0;
  for (let before = 0; before < c; before++) start += gate.counts[before];
  const distances = new Array<number>(gate.counts[c]);
  for (let i = 0; i < gate.counts[c]; i++)
    distances[i] = distance(embedding, 0, gate.positives, (start + i) * dim, dim);
  return meanOfSmallest(distances, gate.k);
}

/**
 * Applies the gate to calibrated scores (in place, and returned): a class scoring ≥ 0.5 whose k-NN
 * distance d exceeds its radius r (by more than float16 rounding) scores 0.5·r/d instead, below 0.5 and lower the farther the image.
 * Only classes at or above 0.5 are measured, so the gate costs nothing for the rest.
 */
export function applyGate(gate: HeadGate, embedding: Float32Array, scores: number[]): number[] {
  scores.forEach((score, c) => {
    if (!(score >= 0.5) || !Number.isFinite(gate.radius[c])) return;
    const d = gateDistance(gate, c, embedding);
    if (d > gate.radius[c] + GATE_TOLERANCE) scores[c] = Math.min(score, (0.5 * gate.radius[c]) / d);
  });
  return scores;
}
