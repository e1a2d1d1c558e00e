import { applyGate, gateLogOddsCap, type HeadGate } from './knn-gate';
import { sigmoid } from './platt';
import type { KnownHead, TrainedHead } from './types';

/**
 * Above its threshold the "any of my classes" head caps the top class's log-odds at
 * (1 + KNOWN_CAP_SLOPE)·(decision − threshold): exactly the decision's margin below the threshold (no
 * class reaches 0.5), a cap that leaves calibrated scores alone a short way above it (0.95 is reached at
 * a margin of 0.14). A step would do the same for the decision at 0.5, but the exported graphs can only
 * express continuous maps (Relu, not a comparison), and they must score as the service does.
 */
export const KNOWN_CAP_SLOPE = 20;

/** The known head's cap on the top class's log-odds, given its decision value (see KNOWN_CAP_SLOPE). */
export function knownLogOddsCap(known: KnownHead, decision: number): number {
  const margin = decision - known.threshold;
  return margin + KNOWN_CAP_SLOPE * Math.max(0, margin);
}

/**
 * Scores in [0, 1] from calibrated log-odds under a cap on the highest: every class's log-odds move down
 * by the same amount, max(0, top − cap), so the ranking is kept and, with cap < 0, no class reaches 0.5.
 */
export function cappedScores(logOdds: number[], cap: number): number[] {
  const top = Math.max(...logOdds);
  const shift = top > cap ? top - cap : 0;
  return logOdds.map((value) => sigmoid(value - shift));
}

/** The embedding minus the head's training mean. */
function centredOn(head: TrainedHead, embedding: Float32Array): Float64Array {
  if (embedding.length !== head.dim) {
    throw new RangeError(
      `embedding has ${embedding.length} values but head for pack ${head.packKey} expects ${head.dim}`,
    );
  }
  const centred = new Float64Array(head.dim);
  for (let k = 0; k < head.dim; k++) centred[k] = embedding[k] - head.center[k];
  return centred;
}

/** Linear decision value of each class (before calibration), in head.classes order. */
function headDecisions(head: TrainedHead, centred: Float64Array): number[] {
  return head.classes.map((_, c) => {
    const offset = c * head.dim;
    let z = head.bias[c];
    for (let k = 0; k < head.dim; k++) z += head.weights[offset + k] * centred[k];
    return z;
  });
}

export function knownDecision(known: KnownHead, centred: Float64Array): number {
  let z = known.bias;
  for (let k = 0; k < centred.length; k++) z += known.weights[k] * centred[k];
  return z;
}

/**
 * Calibrated scores in [0,1], in head.classes order; 0.5 is the balanced decision threshold.
 * Rejection keeps the ranking: the highest class's log-odds are capped (cappedScores) by
 *  - the "any of my classes" head (format-3 heads trained with the open-set bank): below its threshold
 *    no class reaches 0.5 (knownLogOddsCap);
 *  - the k-NN gate of the top class only (format 2 on), measured when the image would otherwise be a
 *    "yes": an image unlike that class's positives is capped at 0.5·r/d.
 * `gate: 'each'` applies the format-2 per-class gate instead (benchmarks compare; it can reorder classes).
 */
export function scoreHead(
  head: TrainedHead,
  embedding: Float32Array,
  options: { gate?: 'top' | 'each' } = {},
): number[] {
  const centred = centredOn(head, embedding);
  const logOdds = headDecisions(head, centred).map((z, c) => head.platt[c].a * z + head.platt[c].b);
  const knownCap = head.known ? knownLogOddsCap(head.known, knownDecision(head.known, centred)) : Infinity;
  if (options.gate === 'each') {
    const scores = cappedScores(logOdds, knownCap);
    return head.gate ? applyGate(head.gate, embedding, scores) : scores;
  }
  return rejectedScores(logOdds, knownCap, head.gate, embedding);
}

/**
 * Scores from calibrated log-odds, the known head's cap and the gate of the top class (scoreHead's rule,
 * shared with the trainer's out-of-fold evaluation).
 */
export function rejectedScores(
  logOdds: number[],
  knownCap: number,
  gate: HeadGate | undefined,
  embedding: Float32Array,
): number[] {
  const top = gatedClass(logOdds, knownCap);
  return cappedScores(logOdds, gate && top >= 0 ? Math.min(knownCap, gateLogOddsCap(gate, top, embedding)) : knownCap);
}

/**
 * The class whose gate rejectedScores measures the image against: the top class when it would otherwise
 * reach 0.5 (its log-odds ≥ 0 and the known head's cap ≥ 0); -1 when none would.
 */
export function gatedClass(logOdds: number[], knownCap: number): number {
  const top = logOdds.indexOf(Math.max(...logOdds));
  return logOdds[top] >= 0 && knownCap >= 0 ? top : -1;
}
