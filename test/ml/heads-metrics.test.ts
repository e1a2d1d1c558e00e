import { planEvaluation } from '../../src/ml/heads/folds';
import { confusionAt, confusionMatrix, f1Score, precision, recall, rocAuc } from '../../src/ml/heads/metrics';
import { fitPlatt, sigmoid } from '../../src/ml/heads/platt';

describe('binary metrics', () => {
  // Hand-checked: at 0.5 the predicted positives are 0.9, 0.8, 0.6, 0.55 (3 right, 0.6 wrong),
  // 0.4 is a missed positive, 0.3 and 0.2 are correct rejections.
  const scores = [0.9, 0.8, 0.6, 0.4, 0.3, 0.2, 0.55];
  const labels = [1, 1, 0, 1, 0, 0, 1];

  it('counts a confusion matrix at a threshold', () => {
    expect(confusionAt(scores, labels, 0.5)).toEqual({
      truePositives: 3,
      falsePositives: 1,
      falseNegatives: 1,
      trueNegatives: 2,
    });
  });

  it('counts a score equal to the threshold as a positive prediction', () => {
    expect(confusionAt([0.5], [1], 0.5).truePositives).toBe(1);
    expect(confusionAt([0.5], [0], 0.5).falsePositives).toBe(1);
  });

  it('computes precision, recall and F1', () => {
    const counts = confusionAt(scores, labels, 0.5);
    expect(precision(counts)).toBeCloseTo(0.75, 12);
    expect(recall(counts)).toBeCloseTo(0.75, 12);
    expect(f1Score(counts)).toBeCloseTo(0.75, 12);

    const lopsided = { truePositives: 2, falsePositives: 2, falseNegatives: 0, trueNegatives: 5 };
    expect(precision(lopsided)).toBe(0.5);
    expect(recall(lopsided)).toBe(1);
    expect(f1Score(lopsided)).toBeCloseTo(2 / 3, 12);
  });

  it('gives 0 rather than NaN when nothing is predicted or present', () => {
    const none = { truePositives: 0, falsePositives: 0, falseNegatives: 3, trueNegatives: 4 };
    expect(precision(none)).toBe(0);
    expect(recall(none)).toBe(0);
    expect(f1Score(none)).toBe(0);
    expect(recall({ truePositives: 0, falsePositives: 1, falseNegatives: 0, trueNegatives: 1 })).toBe(0);
  });

  it('computes ROC-AUC as the share of correctly ordered positive/negative pairs', () => {
    // Positives 0.9, 0.8, 0.55, 0.4 beat 3, 3, 2 and 2 of the negatives 0.6, 0.3, 0.2: 10 of 12 pairs.
    expect(rocAuc(scores, labels)).toBeCloseTo(10 / 12, 12);
    expect(rocAuc([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1])).toBe(1);
    expect(rocAuc([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0])).toBe(0);
  });

  it('counts tied scores as half-correct pairs', () => {
    expect(rocAuc([0.5, 0.5], [1, 0])).toBe(0.5);
    // Pairs: (0.7 vs 0.7) half, (0.7 vs 0.2) one, (0.9 vs both) two: 3.5 of 4.
    expect(rocAuc([0.7, 0.9, 0.7, 0.2], [1, 1, 0, 0])).toBeCloseTo(3.5 / 4, 12);
  });

  it('is undefined (NaN) when only one class is present', () => {
    expect(rocAuc([0.1, 0.9], [1, 1])).toBeNaN();
    expect(rocAuc([0.1, 0.9], [0, 0])).toBeNaN();
  });
});

describe('multi-class confusion matrix', () => {
  // Log-odds of classes a and b for five examples; 0 is a calibrated score of exactly 0.5.
  const scores = [
    [2, -1, 0.5, -3, 0],
    [1, 3, -2, -1, 0],
  ];

  it('counts the top class reaching 0.5 as the prediction, none otherwise, rows = actual', () => {
    // Example 0 (a) → a; 1 (a) → b; 2 (b) → a; 3 (negative) → none; 4 (negative, tie at 0.5) → a, the first.
    expect(confusionMatrix(scores, [0, 0, 1, 2, 2])).toEqual([
      [1, 1, 0],
      [1, 0, 0],
      [1, 0, 1],
    ]);
  });

  it('leaves out examples of several classes and counts each kept example once', () => {
    const counts = confusionMatrix(scores, [0, -1, -1, 1, 2]);
    expect(counts.flat().reduce((a, b) => a + b, 0)).toBe(3);
    expect(counts[1][2]).toBe(1); // b predicted as none
  });
});

describe('Platt scaling', () => {
  it('recovers the slope and offset of a logistic relation', () => {
    // Each decision value z appears as a positive with weight p(z) and a negative with weight 1 − p(z).
    const decisions: number[] = [];
    const labels: number[] = [];
    const weights: number[] = [];
    for (let k = 0; k <= 2000; k++) {
      const z = -3 + (6 * k) / 2000;
      const p = sigmoid(2 * z - 0.5);
      decisions.push(z, z);
      labels.push(1, 0);
      weights.push(p, 1 - p);
    }
    const { a, b } = fitPlatt(decisions, labels, weights);
    expect(a).toBeCloseTo(2, 1);
    expect(b).toBeCloseTo(-0.5, 1);
  });

  it('maps well-separated decisions to scores on the right side of 0.5, smoothed for few examples', () => {
    const decisions = [-3, -2.5, -2, -1.5, 1.5, 2, 2.5, 3];
    const labels = [0, 0, 0, 0, 1, 1, 1, 1];
    const { a, b } = fitPlatt(decisions, labels, new Array(8).fill(1));
    expect(a).toBeGreaterThan(0);
    decisions.forEach((z, i) => {
      const score = sigmoid(a * z + b);
      // Platt's targets for 4 examples a side are 5/6 and 1/6: confident, not certain.
      if (labels[i]) expect(score).toBeGreaterThan(0.7);
      else expect(score).toBeLessThan(0.3);
    });
  });
});

describe('evaluation plan', () => {
  /** classLabels for `counts[c]` single-label positives of each class plus `negatives` negatives. */
  function labelsFor(counts: number[], negatives = 0): { classLabels: Uint8Array[]; examples: number } {
    const examples = counts.reduce((a, b) => a + b, 0) + negatives;
    let row = 0;
    const classLabels = counts.map((count) => {
      const labels = new Uint8Array(examples);
      for (let k = 0; k < count; k++) labels[row++] = 1;
      return labels;
    });
    return { classLabels, examples };
  }

  it('uses the requested folds when every class is big enough', () => {
    const { classLabels, examples } = labelsFor([40, 30, 20]);
    const plan = planEvaluation(classLabels, examples, 5, 1);
    expect(plan).toMatchObject({ method: 'k-fold', folds: 5 });
  });

  it('chooses fewer folds for a tiny class', () => {
    const { classLabels, examples } = labelsFor([10, 40]);
    expect(planEvaluation(classLabels, examples, 5, 1).folds).toBe(3);
    const tiny = labelsFor([2, 40]);
    expect(planEvaluation(tiny.classLabels, tiny.examples, 5, 1).folds).toBe(2);
  });

  it('spreads every class over every fold and balances fold sizes', () => {
    const { classLabels, examples } = labelsFor([12, 25, 40], 23);
    const plan = planEvaluation(classLabels, examples, 4, 7);
    expect(plan.folds).toBe(4);
    const sizes = new Array(4).fill(0);
    plan.testFold.forEach((f) => sizes[f]++);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    for (const labels of classLabels) {
      const perFold = new Array(4).fill(0);
      labels.forEach((v, i) => (perFold[plan.testFold[i]] += v));
      expect(Math.max(...perFold) - Math.min(...perFold)).toBeLessThanOrEqual(1);
    }
  });

  it('is deterministic for a seed and changes with it', () => {
    const { classLabels, examples } = labelsFor([30, 30]);
    const a = planEvaluation(classLabels, examples, 5, 11).testFold;
    expect(planEvaluation(classLabels, examples, 5, 11).testFold).toEqual(a);
    expect(planEvaluation(classLabels, examples, 5, 12).testFold).not.toEqual(a);
  });

  it('holds out one fifth instead of k-fold for large sets', () => {
    const { classLabels, examples } = labelsFor([2000, 2000], 1000);
    const plan = planEvaluation(classLabels, examples, 5, 1);
    expect(plan).toMatchObject({ method: 'holdout', folds: 1 });
    const heldOut = plan.testFold.filter((f) => f === 0).length;
    expect(heldOut).toBe(1000);
    expect(plan.testFold.filter((f) => f === -1).length).toBe(4000);
  });

  it('keeps k-fold for a large set with a small class', () => {
    const { classLabels, examples } = labelsFor([20, 5000]);
    expect(planEvaluation(classLabels, examples, 5, 1)).toMatchObject({ method: 'k-fold', folds: 5 });
  });
});
