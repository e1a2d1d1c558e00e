/** Binary classification metrics, pure functions over scores and 0/1 labels. */

export interface ConfusionCounts {
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  trueNegatives: number;
}

/** Counts at a threshold; a score equal to the threshold counts as a positive prediction. */
export function confusionAt(scores: ArrayLike<number>, labels: ArrayLike<number>, threshold: number): ConfusionCounts {
  const counts = { truePositives: 0, falsePositives: 0, falseNegatives: 0, trueNegatives: 0 };
  for (let i = 0; i < scores.length; i++) {
    const predicted = scores[i] >= threshold;
    if (labels[i]) {
      if (predicted) counts.truePositives++;
      else counts.falseNegatives++;
    } else if (predicted) counts.falsePositives++;
    else counts.trueNegatives++;
  }
  return counts;
}

/** 0 when nothing was predicted positive. */
export function precision(c: ConfusionCounts): number {
  const predicted = c.truePositives + c.falsePositives;
  return predicted === 0 ? 0 : c.truePositives / predicted;
}

/** 0 when there are no positives. */
export function recall(c: ConfusionCounts): number {
  const actual = c.truePositives + c.falseNegatives;
  return actual === 0 ? 0 : c.truePositives / actual;
}

export function f1Score(c: ConfusionCounts): number {
  const p = precision(c);
  const r = recall(c);
  return p + r === 0 ? 0 : (2 * p * r) / (p + r);
}

/**
 * Area under the ROC curve: the probability that a random positive outscores a
 * random negative, ties counting half (Mann–Whitney U with average ranks).
 * NaN when the labels hold only one class.
 */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let positives = 0;
  let positiveRankSum = 0;
  for (let start = 0; start < order.length;) {
    let end = start;
    while (end + 1 < order.length && scores[order[end + 1]] === scores[order[start]]) end++;
    const averageRank = (start + end) / 2 + 1;
    for (let k = start; k <= end; k++) {
      if (labels[order[k]]) {
        positives++;
        positiveRankSum += averageRank;
      }
    }
    start = end + 1;
  }
  const negatives = order.length - positives;
  if (positives === 0 || negatives === 0) return NaN;
  return (positiveRankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/**
 * Multi-class confusion matrix of one-vs-rest scores. `scores[c][k]` is class c's calibrated log-odds for
 * example k; `actual[k]` is its one positive class, `none` (= the number of classes) for an example of no
 * class (a negative), or -1 to leave it out (several positive classes). The predicted class is the
 * top-scoring one (the first on a tie) when its calibrated score reaches 0.5 (log-odds ≥ 0), else
 * `none`.
 * Returns counts[actual][predicted], (classes + 1) × (classes + 1).
 */
export function confusionMatrix(scores: ArrayLike<number>[], actual: ArrayLike<number>): number[][] {
  const none = scores.length;
  const counts = Array.from({ length: none + 1 }, () => new Array<number>(none + 1).fill(0));
  for (let k = 0; k < actual.length; k++) {
    if (actual[k] < 0) continue;
    let best = 0;
    for (let c = 1; c < none; c++) if (scores[c][k] > scores[best][k]) best = c;
    const predicted = none > 0 && scores[best][k] >= 0 ? best : none;
    counts[actual[k]][predicted]++;
  }
  return counts;
}
