import { seededRandom, shuffleInPlace } from './random';

/** How a head is evaluated: which examples each cross-validation model leaves out. */
export interface EvaluationPlan {
  method: 'k-fold' | 'holdout';
  /** Models trained for evaluation: k for k-fold, 1 for holdout. */
  folds: number;
  /** The fold an example is held out in; -1 = never held out (holdout's training part). */
  testFold: Int32Array;
}

/** From this many examples on, one held-out split replaces k-fold (k times cheaper). */
export const HOLDOUT_MIN_EXAMPLES = 5000;
/** ...provided every class has this many positives and negatives, so the held-out part measures it. */
const HOLDOUT_MIN_PER_CLASS = 50;
/** Share of examples held out: one part of a 5-way split. */
const HOLDOUT_PARTS = 5;
/** Fewer folds when a class is small, so each test fold still holds a few of its positives. */
const MIN_POSITIVES_PER_FOLD = 3;

/**
 * classLabels[c][i] = 1 when example i is a positive of class c.
 * Assumes every class has at least one positive and one negative.
 */
export function planEvaluation(
  classLabels: Uint8Array[],
  examples: number,
  requestedFolds: number,
  seed: number,
): EvaluationPlan {
  const positives = classLabels.map((labels) => labels.reduce((sum, v) => sum + v, 0));
  const smallestSide = Math.min(...positives.map((p) => Math.min(p, examples - p)));

  if (examples >= HOLDOUT_MIN_EXAMPLES && smallestSide >= HOLDOUT_MIN_PER_CLASS) {
    const part = stratifiedParts(classLabels, positives, examples, HOLDOUT_PARTS, seed);
    const testFold = part.map((p) => (p === 0 ? 0 : -1));
    if (everyClassHasBothSides(classLabels, testFold)) return { method: 'holdout', folds: 1, testFold };
  }
  const folds = Math.max(2, Math.min(requestedFolds, Math.floor(smallestSide / MIN_POSITIVES_PER_FOLD)));
  return { method: 'k-fold', folds, testFold: stratifiedParts(classLabels, positives, examples, folds, seed) };
}

/**
 * Splits examples into `parts` groups of near-equal size with each class spread
 * evenly: examples are grouped by their rarest positive class (negatives on
 * their own), each group is shuffled, and groups are dealt round-robin, rarest
 * first, continuing the deal from one group to the next.
 */
function stratifiedParts(
  classLabels: Uint8Array[],
  positives: number[],
  examples: number,
  parts: number,
  seed: number,
): Int32Array {
  const groups = new Map<number, number[]>();
  for (let i = 0; i < examples; i++) {
    let key = -1;
    for (let c = 0; c < classLabels.length; c++) {
      if (classLabels[c][i] && (key === -1 || positives[c] < positives[key])) key = c;
    }
    const group = groups.get(key);
    if (group) group.push(i);
    else groups.set(key, [i]);
  }
  const ordered = [...groups.entries()].sort(([ka, a], [kb, b]) => a.length - b.length || ka - kb);
  const random = seededRandom(seed);
  const part = new Int32Array(examples);
  let next = 0;
  for (const [, members] of ordered) {
    for (const i of shuffleInPlace(members, random)) {
      part[i] = next;
      next = (next + 1) % parts;
    }
  }
  return part;
}

function everyClassHasBothSides(classLabels: Uint8Array[], testFold: Int32Array): boolean {
  return classLabels.every((labels) => {
    let positives = 0;
    let negatives = 0;
    for (let i = 0; i < labels.length; i++) {
      if (testFold[i] !== 0) continue;
      if (labels[i]) positives++;
      else negatives++;
    }
    return positives > 0 && negatives > 0;
  });
}
