import * as ort from 'onnxruntime-node';
import { OnnxGraphBuilder } from '../onnx/onnx-graph-builder';
import { roundToFloat16 } from '../open-set/float16';
import { cachedSession } from './onnx-session';
import { seededRandom, shuffleInPlace } from './random';

/**
 * The k-NN gate of a head: a class cannot score ≥ 0.5 for an image that lies farther from the class's
 * positives than the positives lie from each other. Distance = mean Euclidean distance (of unit
 * embeddings) to the k nearest positives; a class's radius = max(the largest leave-one-out distance
 * among its own positives, its median leave-one-out distance × the pooled quantile of all classes'
 * leave-one-out/median ratios; see buildGate). A linear head extrapolates: far from everything it was
 * trained on, one side of its hyperplane still says "yes". The gate says "unlike anything seen",
 * whatever the hyperplane says.
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
/**
 * The radius is at least a class's median leave-one-out distance times this quantile of the ratios
 * (leave-one-out distance / its class's median) pooled over all classes. With n positives, the largest
 * leave-one-out distance lets a new positive through with probability n/(n+1) only (split-conformal
 * arithmetic: 1 in 11 at 10 examples); pooling the classes' ratios gives small classes the spread of
 * all. Study on GCompris-5 (shared/design/open-set-study.md, Q2 §6): recall 0.930 → 0.947, worst class
 * 0.895 → 0.934, no false-positive cost; bench:accuracy's tutorial scenarios measure it per draw.
 */
export const GATE_POOLED_QUANTILE = 0.975;
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
export async function pairwiseDistances(
  rows: Float32Array,
  n: number,
  dim: number,
  threads: number,
): Promise<Float32Array> {
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
  options: {
    k?: number;
    maxPositives?: number;
    radiusQuantile?: number;
    /** GATE_POOLED_QUANTILE by default; 0 turns the pooled floor off (benchmarks compare). */
    pooledQuantile?: number;
    seed: number;
    threads?: number;
  },
): Promise<HeadGate> {
  const k = options.k ?? GATE_NEIGHBOURS;
  const quantile = options.radiusQuantile ?? GATE_RADIUS_QUANTILE;
  const pooled = options.pooledQuantile ?? GATE_POOLED_QUANTILE;
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

  // Per class: its positives' leave-one-out k-NN distances, sorted (none below two positives).
  const looByClass: number[][] = [];
  let start = 0;
  for (const n of counts) {
    if (n < 2) looByClass.push([]);
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
      looByClass.push(loo.sort((a, b) => a - b));
    }
    start += n;
  }
  const medians = looByClass.map((loo) => (loo.length > 0 ? quantileOf(loo, 0.5) : NaN));
  const ratios = looByClass
    .flatMap((loo, c) => (medians[c] > 0 ? loo.map((d) => d / medians[c]) : []))
    .sort((a, b) => a - b);
  const factor = pooled > 0 && ratios.length > 0 ? quantileOf(ratios, pooled) : 0;
  const radius = looByClass.map((loo, c) => {
    if (loo.length === 0) return Infinity;
    const n = loo.length;
    return Math.max(loo[Math.min(n - 1, Math.ceil(quantile * n) - 1)], medians[c] * factor);
  });
  return { k, counts, radius, positives };
}

/** The q-quantile of ascending values, linearly interpolated (Hyndman–Fan type 7, numpy's default). */
export function quantileOf(sorted: ArrayLike<number>, q: number): number {
  const at = q * (sorted.length - 1);
  const below = Math.floor(at);
  const above = Math.min(sorted.length - 1, below + 1);
  return sorted[below] + (at - below) * (sorted[above] - sorted[below]);
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
 * The gate's verdict on class c for an embedding, as a cap on the class's calibrated log-odds:
 * +Infinity inside the radius (or without one), else logit(0.5·r/d) < 0, lower the farther the image.
 */
export function gateLogOddsCap(gate: HeadGate, c: number, embedding: Float32Array): number {
  if (!Number.isFinite(gate.radius[c])) return Infinity;
  return logOddsCapAt(gate, c, gateDistance(gate, c, embedding));
}

/** gateLogOddsCap for an image at gate distance d from class c (a finite radius). */
export function logOddsCapAt(gate: HeadGate, c: number, d: number): number {
  if (!(d > gate.radius[c] + GATE_TOLERANCE)) return Infinity;
  const p = (0.5 * gate.radius[c]) / d;
  return Math.log(p / (1 - p));
}

/**
 * Nearest positives kept per image from the GEMM's expanded-form distances, beyond the k whose mean
 * is the gate distance: their distances are then recomputed exactly, so only a neighbour whose
 * expanded distance errs by more than the gap to the (k + NEAREST_SLACK)-th could be missed.
 */
const NEAREST_SLACK = 4;

/**
 * gateDistance of many images to class c at once, as gateDistance computes it (up to the order of
 * float additions): one onnxruntime GEMM of the images × the class's stored positives ranks the
 * positives by ‖a‖² + ‖b‖² − 2a·b (float32, errs by about 1e-6 on unit vectors), and the
 * k + NEAREST_SLACK nearest of each image are measured again by summed differences. Cost: m × n × dim
 * multiply-adds in onnxruntime plus m × (k + NEAREST_SLACK) × dim in JavaScript, against m × n × dim in
 * JavaScript for gateDistance one image at a time. `rows`: the images, m × dim row-major (RangeError else).
 * Returns m distances; NaN for a class without stored positives.
 */
export async function gateDistances(
  gate: HeadGate,
  c: number,
  rows: Float32Array,
  m: number,
  dim: number,
  threads = 1,
): Promise<Float64Array> {
  if (rows.length !== m * dim) throw new RangeError(`${rows.length} values are not ${m} images × ${dim}`);
  const n = gate.counts[c];
  const distances = new Float64Array(m).fill(NaN);
  if (m === 0 || n === 0) return distances;
  let start = 0;
  for (let before = 0; before < c; before++) start += gate.counts[before];
  const positives = gate.positives.subarray(start * dim, (start + n) * dim);
  const measured = new Array<number>(Math.min(n, gate.k + NEAREST_SLACK));
  if (n <= measured.length) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) measured[j] = distance(rows, i * dim, positives, j * dim, dim);
      distances[i] = meanOfSmallest(measured, gate.k);
    }
    return distances;
  }
  const session = await cachedSession('cross', threads, buildCrossModel);
  const result = await session.run({
    A: new ort.Tensor('float32', rows, [m, dim]),
    B: new ort.Tensor('float32', positives.slice(), [n, dim]),
  });
  const cross = result.cross.data as Float32Array;
  const positiveNorms = Float64Array.from({ length: n }, (_, j) => squaredNorm(positives, j * dim, dim));
  // Per image: the indices of its `measured.length` smallest expanded distances, kept sorted by insertion.
  const nearest = new Int32Array(measured.length);
  const nearestSquared = new Float64Array(measured.length);
  for (let i = 0; i < m; i++) {
    const rowNorm = squaredNorm(rows, i * dim, dim);
    let kept = 0;
    for (let j = 0; j < n; j++) {
      const squared = rowNorm + positiveNorms[j] - 2 * cross[i * n + j];
      if (kept === nearest.length && squared >= nearestSquared[kept - 1]) continue;
      let at = kept < nearest.length ? kept++ : kept - 1;
      for (; at > 0 && nearestSquared[at - 1] > squared; at--) {
        nearestSquared[at] = nearestSquared[at - 1];
        nearest[at] = nearest[at - 1];
      }
      nearestSquared[at] = squared;
      nearest[at] = j;
    }
    for (let q = 0; q < kept; q++) measured[q] = distance(rows, i * dim, positives, nearest[q] * dim, dim);
    distances[i] = meanOfSmallest(measured, gate.k);
  }
  result.cross.dispose();
  return distances;
}

/** Σ a[at..at+dim)², in double precision. */
function squaredNorm(a: Float32Array, at: number, dim: number): number {
  let sum = 0;
  for (let k = 0; k < dim; k++) sum += a[at + k] * a[at + k];
  return sum;
}

/**
 * A bank photo within this multiple of a class's radius looks like the class. Beyond the radius itself:
 * photos of the class's subject just outside it, learned as negatives, pull the class's boundary inside
 * the radius and reject the class's new photos there. Generated case (test/ml/open-set-mechanisms: 10
 * positives, 200 bank photos of the same subject), held-out recall at margin 1: 0.575, 1.25: 0.95,
 * 2: 0.775 with fewer look-alikes (too few negatives left near the class).
 */
export const LOOKALIKE_MARGIN = 1.25;

/** Cross products A·Bᵀ of rows A [m, d] and B [n, d], on onnxruntime. */
function buildCrossModel(): Uint8Array {
  const g = new OnnxGraphBuilder('cross');
  const a = g.input('A', ['m', 'd']);
  const b = g.input('B', ['n', 'd']);
  g.node('Gemm', [a, b], { transB: 1 }, 'cross');
  g.output('cross', ['m', 'n']);
  return g.toBuffer();
}

/**
 * Which of `rows` (unit embeddings, e.g. the open-set bank) lie inside each class's gate: their mean
 * distance to the class's k nearest stored positives is within the radius. Such a row looks like the
 * class, so it must not be learned as one of its negatives. Returns one mask per class (1 = inside).
 * Costs one onnxruntime GEMM of rows × stored positives per class (gateDistances).
 */
export async function insideGate(
  gate: HeadGate,
  rows: Float32Array[],
  dim: number,
  threads = 1,
  margin = LOOKALIKE_MARGIN,
): Promise<Uint8Array[]> {
  const m = rows.length;
  const masks = gate.counts.map(() => new Uint8Array(m));
  if (m === 0) return masks;
  const stacked = new Float32Array(m * dim);
  rows.forEach((row, i) => stacked.set(row, i * dim));
  for (let c = 0; c < gate.counts.length; c++) {
    const radius = gate.radius[c] * margin;
    if (gate.counts[c] < 1 || !Number.isFinite(radius)) continue;
    const distances = await gateDistances(gate, c, stacked, m, dim, threads);
    for (let i = 0; i < m; i++) if (distances[i] <= radius + GATE_TOLERANCE) masks[c][i] = 1;
  }
  return masks;
}

/**
 * The per-class gate of format-2 heads, kept for benchmarks that compare it with gating the top class
 * only (scoreHead): every class is capped on its own, which can reorder the classes.
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
