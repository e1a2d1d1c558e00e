import fc from 'fast-check';
import { buildReview } from '../../src/domain/example-review';
import { evaluationOf, exampleRowId } from '../../src/domain/review-examples';
import { nearDuplicatePairs } from '../../src/ml/near-duplicates';

const unit = (values: number[]) => {
  const norm = Math.hypot(...values);
  return Float32Array.from(values, (v) => v / norm);
};
const example = (id: number, className: string | null, imageHash = `h${id}`) => ({
  id,
  className,
  imageHash,
  entryName: null,
  created: '2026-12-06T00:00:00.000Z',
});

describe('the out-of-fold evaluation of one example', () => {
  const review = {
    classes: ['cats', 'dogs'],
    scores: { '1': [0.2, 0.9], '2': [0.3, 0.1], '3': [0.7, 0.2] },
    duplicates: [],
  };

  it('predicts the best class that reaches 0.5, and judges it against the label as it is now', () => {
    expect(evaluationOf(example(1, 'cats'), review)).toEqual({ predicted_class: 'dogs', score: 0.9, correct: false });
    expect(evaluationOf(example(1, 'dogs'), review)).toEqual({ predicted_class: 'dogs', score: 0.9, correct: true });
    expect(evaluationOf(example(3, 'cats'), review)).toEqual({ predicted_class: 'cats', score: 0.7, correct: true });
  });

  it('predicts nothing under 0.5: the own class’s score for a positive, right for a negative', () => {
    expect(evaluationOf(example(2, 'cats'), review)).toEqual({ predicted_class: null, score: 0.3, correct: false });
    expect(evaluationOf(example(2, null), review)).toEqual({ predicted_class: null, score: 0.3, correct: true });
    expect(evaluationOf(example(1, null), review)).toEqual({ predicted_class: 'dogs', score: 0.9, correct: false });
  });

  it('has none for an example the version did not evaluate, or without a version', () => {
    expect(evaluationOf(example(4, 'cats'), review)).toBeUndefined();
    expect(evaluationOf(example(1, 'cats'), undefined)).toBeUndefined();
  });

  it('is always consistent: correct exactly when the prediction is the label, the score in [0, 1] (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 5 }),
        fc.option(fc.nat(4), { nil: null }),
        (scores, label) => {
          const classes = scores.map((_, i) => `c${i}`);
          const className = label === null || label >= classes.length ? null : classes[label];
          const e = evaluationOf(example(7, className), { classes, scores: { '7': scores }, duplicates: [] })!;
          expect(e.correct).toBe(e.predicted_class === className);
          expect(e.score).toBeGreaterThanOrEqual(0);
          expect(e.score).toBeLessThanOrEqual(1);
          if (e.predicted_class !== null) expect(e.score).toBe(Math.max(...scores));
          else expect(Math.max(...scores)).toBeLessThan(0.5);
        },
      ),
    );
  });
});

describe('example ids', () => {
  it('are ex_<positive integer>; anything else is no id', () => {
    expect(exampleRowId('ex_42')).toBe(42);
    for (const text of ['ex_0', 'ex_', 'ex_-1', '42', 'ex_1.5', 'EX_1', 'ex_1234567890123456', undefined, 7])
      expect(exampleRowId(text)).toBeUndefined();
  });
});

describe('near-duplicate pairs', () => {
  it('finds the pairs within the distance, closest first, and no pair twice', () => {
    const a = unit([1, 0, 0]);
    const aCopy = unit([1, 0.05, 0]);
    const b = unit([0, 1, 0]);
    const bCopy = unit([0, 1, 0.001]);
    const pairs = nearDuplicatePairs([a, b, aCopy, bCopy], 0.01);
    expect(pairs.map(([i, j]) => [i, j])).toEqual([
      [1, 3],
      [0, 2],
    ]);
    expect(pairs[0][2]).toBeLessThan(pairs[1][2]);
    expect(nearDuplicatePairs([a, b], 0.01)).toEqual([]);
    expect(nearDuplicatePairs([a, aCopy, aCopy], 0.01, 1)).toHaveLength(1);
  });

  it('agrees with the cosine distance computed directly (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: 3, maxLength: 3 }), {
          minLength: 2,
          maxLength: 6,
        }),
        fc.double({ min: 0, max: 2, noNaN: true }),
        (vectors, maxDistance) => {
          const embeddings = vectors.map((v) => Float32Array.from(v));
          const found = new Set(nearDuplicatePairs(embeddings, maxDistance).map(([i, j]) => `${i}:${j}`));
          for (let i = 0; i < vectors.length; i++)
            for (let j = i + 1; j < vectors.length; j++) {
              const [x, y] = [embeddings[i], embeddings[j]];
              const nx = Math.hypot(...x);
              const ny = Math.hypot(...y);
              if (nx === 0 || ny === 0) {
                expect(found.has(`${i}:${j}`)).toBe(false);
                continue;
              }
              const distance = 1 - (x[0] * y[0] + x[1] * y[1] + x[2] * y[2]) / (nx * ny);
              // Float32 rounding aside, a pair is found exactly when it is within the distance.
              if (Math.abs(distance - maxDistance) > 1e-5) expect(found.has(`${i}:${j}`)).toBe(distance <= maxDistance);
            }
        },
      ),
    );
  });
});

describe('what a training run records for review', () => {
  const e = unit([1, 0, 0]);
  const eCopy = unit([1, 0.01, 0]);
  const far = unit([0, 1, 0]);

  it('keys out-of-fold scores by example id, an image in two classes giving both its scores', () => {
    const review = buildReview({
      classes: ['a', 'b'],
      examples: [example(1, 'a', 'x'), example(2, 'b', 'x'), example(3, null, 'y'), example(4, 'a', 'gone')],
      images: ['x', 'y'],
      embeddings: [e, far],
      outOfFold: [[0.81234567, 0.2], null],
    });
    expect(review.scores).toEqual({ '1': [0.8123, 0.2], '2': [0.8123, 0.2] });
    expect(review.classes).toEqual(['a', 'b']);
  });

  it('pairs differently labelled examples of near-identical pictures, and of the same picture', () => {
    const review = buildReview({
      classes: ['a', 'b'],
      examples: [
        example(1, 'a', 'x'),
        example(2, 'b', 'x2'),
        example(3, 'a', 'x3'),
        example(4, null, 'y'),
        example(5, 'b', 'y'),
      ],
      images: ['x', 'x2', 'x3', 'y'],
      embeddings: [e, eCopy, e, far],
      outOfFold: undefined,
    });
    const pairs = review.duplicates.map(([a, b]) => `${a}:${b}`);
    // x and x3 are identical pictures under the same label: not a cross-class pair.
    expect(pairs.sort()).toEqual(['1:2', '2:3', '4:5'].sort());
    expect(review.duplicates.find(([a, b]) => a === 4 && b === 5)![2]).toBe(0);
  });
});
