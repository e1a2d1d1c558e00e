import { syntheticTrainingSet } from '../../bench/lib/synthetic-embeddings';
import {
  HeadTrainingError,
  scoreHead,
  serializeHead,
  trainHead,
  type TrainedHead,
  type TrainingSet,
} from '../../src/ml/heads';

const DIM = 64;
const packKey = 'bundled@1';

/** Splits a set into a training part and held-out examples (every `every`-th one). */
function split(set: TrainingSet, every: number): { train: TrainingSet; test: TrainingSet } {
  const pick = (keep: (i: number) => boolean): TrainingSet => {
    const rows = set.embeddings.map((_, i) => i).filter(keep);
    return {
      classes: set.classes,
      embeddings: rows.map((i) => set.embeddings[i]),
      positives: rows.map((i) => set.positives[i]),
    };
  };
  return { train: pick((i) => i % every !== 0), test: pick((i) => i % every === 0) };
}

function unit(values: number[]): Float32Array {
  const norm = Math.hypot(...values);
  return Float32Array.from(values, (v) => v / norm);
}

/** Evaluation of one class by name. */
function classEval(head: TrainedHead, name: string) {
  const evaluation = head.evaluation.classes.find((c) => c.class === name);
  if (!evaluation) throw new Error(`no evaluation for ${name}`);
  return evaluation;
}

describe('trainHead on separable clusters', () => {
  const set = syntheticTrainingSet({ examples: 600, classes: 4, dim: DIM, seed: 3, spread: 0.1, negativeShare: 0.15 });
  const { train, test } = split(set, 5);
  let head: TrainedHead;

  beforeAll(async () => {
    head = await trainHead(train, { packKey, threads: 1 });
  });

  it('describes itself', () => {
    expect(head).toMatchObject({ formatVersion: 3, packKey, dim: DIM, classes: set.classes });
    expect(head.weights).toHaveLength(4 * DIM);
    expect(head.bias).toHaveLength(4);
    expect(head.center).toHaveLength(DIM);
    expect(Number.isNaN(Date.parse(head.trainedAt))).toBe(false);
  });

  it('evaluates itself by 5-fold cross-validation with high scores', () => {
    const { evaluation } = head;
    expect(evaluation).toMatchObject({ method: 'k-fold', folds: 5, examples: train.embeddings.length });
    expect(evaluation.accuracy).toBeGreaterThan(0.95);
    for (const c of evaluation.classes) {
      expect(c.roc_auc).toBeGreaterThan(0.98);
      expect(c.f1).toBeGreaterThan(0.9);
      expect(c.support).toBe(train.positives.filter((p) => p.includes(set.classes.indexOf(c.class))).length);
    }
  });

  it('keeps the confusion matrix of its out-of-fold predictions, negatives in the last row', () => {
    const confusion = head.evaluation.confusion_matrix!;
    expect(confusion.labels).toEqual([...set.classes, null]);
    const { counts } = confusion;
    expect(counts).toHaveLength(5);
    const negatives = train.positives.filter((p) => p.length === 0).length;
    expect(counts[4].reduce((a, b) => a + b, 0)).toBe(negatives);
    set.classes.forEach((_, c) => {
      const rowTotal = counts[c].reduce((a, b) => a + b, 0);
      expect(rowTotal).toBe(train.positives.filter((p) => p.length === 1 && p[0] === c).length);
      // Separable clusters: nearly everything lands on the diagonal, and agrees with the recall.
      expect(counts[c][c] / rowTotal).toBeGreaterThan(0.9);
    });
  });

  it('scores unseen examples calibrated: positives above 0.5, everything else below', () => {
    let positivesAbove = 0;
    let positives = 0;
    let othersBelow = 0;
    let others = 0;
    test.embeddings.forEach((embedding, i) => {
      const scores = scoreHead(head, embedding);
      scores.forEach((score, c) => {
        expect(score).toBeGreaterThanOrEqual(0);
        expect(score).toBeLessThanOrEqual(1);
        if (test.positives[i].includes(c)) {
          positives++;
          if (score > 0.5) positivesAbove++;
        } else {
          others++;
          if (score < 0.5) othersBelow++;
        }
      });
    });
    expect(positivesAbove / positives).toBeGreaterThan(0.9);
    expect(othersBelow / others).toBeGreaterThan(0.95);
  });

  it('top-1 of unseen single-label examples is right', () => {
    const singles = test.embeddings.map((e, i) => [e, test.positives[i]] as const).filter(([, p]) => p.length === 1);
    const correct = singles.filter(([e, [label]]) => {
      const scores = scoreHead(head, e);
      return scores.indexOf(Math.max(...scores)) === label;
    });
    expect(correct.length / singles.length).toBeGreaterThan(0.95);
  });

  it('rejects an embedding of the wrong size', () => {
    expect(() => scoreHead(head, new Float32Array(DIM + 1))).toThrow(/expects 64/);
  });
});

describe('trainHead on harder cases', () => {
  it('recalls an 11-example minority class against 210 others (class-balanced weights)', async () => {
    // Overlapping clusters. Measured: balanced, the minority's recall is 0.64 in cross-validation and
    // 0.73 on unseen examples; without balancing (training and calibration) it is 0.00 and 0.04.
    const base = syntheticTrainingSet({ examples: 420, classes: 2, dim: DIM, seed: 5, spread: 0.45 });
    const inSet = (i: number) => base.positives[i][0] === 1 || i % 40 === 0;
    const rows = base.embeddings.map((_, i) => i).filter(inSet);
    const set: TrainingSet = {
      classes: ['rare', 'common'],
      embeddings: rows.map((i) => base.embeddings[i]),
      positives: rows.map((i) => base.positives[i]),
    };
    const head = await trainHead(set, { packKey, threads: 1 });
    expect(head.evaluation.folds).toBe(3);
    expect(classEval(head, 'rare').support).toBe(11);
    expect(classEval(head, 'rare').recall).toBeGreaterThanOrEqual(0.5);
    expect(classEval(head, 'common').recall).toBeGreaterThanOrEqual(0.7);

    const unseenRare = base.embeddings.filter((_, i) => base.positives[i][0] === 0 && !inSet(i));
    expect(unseenRare).toHaveLength(199);
    const recalled = unseenRare.filter((e) => scoreHead(head, e)[0] >= 0.5).length;
    expect(recalled / unseenRare.length).toBeGreaterThanOrEqual(0.6);
  });

  it('counts a multi-label example as a positive of each of its classes', async () => {
    const base = syntheticTrainingSet({ examples: 120, classes: 2, dim: DIM, seed: 9, spread: 0.1 });
    // Blends of a "cat" and a "dog" example show both.
    const blends = Array.from({ length: 30 }, (_, k) =>
      unit(Array.from(base.embeddings[2 * k], (v, j) => v + base.embeddings[2 * k + 1][j])),
    );
    const set: TrainingSet = {
      classes: ['cat', 'dog'],
      embeddings: [...base.embeddings, ...blends],
      positives: [...base.positives, ...blends.map(() => [0, 1])],
    };
    const head = await trainHead(set, { packKey, threads: 1 });
    expect(classEval(head, 'cat').support).toBe(60 + 30);
    expect(classEval(head, 'dog').support).toBe(60 + 30);
    for (const blend of blends.slice(0, 10)) {
      const [cat, dog] = scoreHead(head, blend);
      expect(cat).toBeGreaterThan(0.5);
      expect(dog).toBeGreaterThan(0.5);
    }
    // Top-1 accuracy only counts single-label examples, which are easy here.
    expect(head.evaluation.accuracy).toBeGreaterThan(0.9);
  });

  it('learns one class against negative examples alone', async () => {
    const set = syntheticTrainingSet({
      examples: 150,
      classes: 1,
      dim: DIM,
      seed: 13,
      spread: 0.1,
      negativeShare: 0.5,
    });
    const negatives = set.positives.filter((p) => p.length === 0).length;
    expect(negatives).toBeGreaterThan(40);
    const head = await trainHead(set, { packKey, threads: 1 });
    expect(classEval(head, 'class_0')).toMatchObject({ support: 150 - negatives });
    expect(classEval(head, 'class_0').f1).toBeGreaterThan(0.9);
    // With one class every positive is trivially its own top-1.
    expect(head.evaluation.accuracy).toBe(1);
    const negativeScores = set.embeddings
      .filter((_, i) => set.positives[i].length === 0)
      .map((e) => scoreHead(head, e)[0]);
    expect(negativeScores.filter((s) => s < 0.5).length / negativeScores.length).toBeGreaterThan(0.9);
  });

  it('trains a class with a single positive', async () => {
    const set = syntheticTrainingSet({ examples: 40, classes: 2, dim: DIM, seed: 17, spread: 0.1 });
    const firstOfClass1 = set.positives.findIndex((p) => p[0] === 1);
    const keep = set.embeddings.map((_, i) => i).filter((i) => set.positives[i][0] === 0 || i === firstOfClass1);
    const head = await trainHead(
      {
        classes: set.classes,
        embeddings: keep.map((i) => set.embeddings[i]),
        positives: keep.map((i) => set.positives[i]),
      },
      { packKey, threads: 1 },
    );
    expect(head.evaluation.folds).toBe(2);
    expect(classEval(head, 'class_1').support).toBe(1);
    expect(scoreHead(head, set.embeddings[firstOfClass1]).every(Number.isFinite)).toBe(true);
  });

  it('survives examples that carry no information (all embeddings equal)', async () => {
    const same = unit(Array.from({ length: DIM }, (_, k) => 1 + (k % 3)));
    for (const examples of [12, 120]) {
      const set: TrainingSet = {
        classes: ['a', 'b'],
        embeddings: Array.from({ length: examples }, () => same),
        positives: Array.from({ length: examples }, (_, i) => [i % 2]),
      };
      const head = await trainHead(set, { packKey, threads: 1 });
      for (const score of scoreHead(head, same)) expect(score).toBeCloseTo(0.5, 1);
      for (const c of head.evaluation.classes) expect(c.roc_auc).toBe(0.5);
    }
  });

  it('reports progress up to 1', async () => {
    const set = syntheticTrainingSet({ examples: 60, classes: 3, dim: DIM, seed: 21 });
    const seen: number[] = [];
    await trainHead(set, { packKey, threads: 1, onProgress: (f) => seen.push(f) });
    expect(seen.length).toBeGreaterThan(2);
    expect(seen[seen.length - 1]).toBe(1);
    seen.forEach((f, k) => k > 0 && expect(f).toBeGreaterThanOrEqual(seen[k - 1]));
  });

  it('uses a held-out split for a large set', async () => {
    const set = syntheticTrainingSet({ examples: 5000, classes: 5, dim: 32, seed: 23 });
    const head = await trainHead(set, { packKey, threads: 2 });
    expect(head.evaluation).toMatchObject({ method: 'holdout', folds: 1, examples: 1000 });
    expect(head.evaluation.accuracy).toBeGreaterThan(0.8);
  });
});

describe('trainHead determinism', () => {
  const set = syntheticTrainingSet({ examples: 200, classes: 3, dim: DIM, seed: 31, spread: 0.3 });

  /** The file without its timestamp. */
  const fingerprint = (head: TrainedHead) => serializeHead({ ...head, trainedAt: '' });

  it('gives a bit-identical head for the same data and seed', async () => {
    const a = await trainHead(set, { packKey, seed: 4, threads: 2 });
    const b = await trainHead(set, { packKey, seed: 4, threads: 2 });
    expect(fingerprint(b).equals(fingerprint(a))).toBe(true);
  });

  it('assigns folds by the seed', async () => {
    const a = await trainHead(set, { packKey, seed: 4, threads: 1 });
    const b = await trainHead(set, { packKey, seed: 5, threads: 1 });
    // The final models see all data either way; the cross-validation differs.
    expect(b.evaluation).not.toEqual(a.evaluation);
  });
});

describe('trainHead input validation', () => {
  const e = (values: number[]) => Float32Array.from(values);
  const valid: TrainingSet = {
    classes: ['a', 'b'],
    embeddings: [e([1, 0]), e([0, 1]), e([1, 1])],
    positives: [[0], [1], []],
  };

  const cases: Array<[string, TrainingSet, RegExp]> = [
    ['no classes', { ...valid, classes: [] }, /at least one class/],
    ['a duplicate class', { ...valid, classes: ['a', 'a'] }, /"a" is listed twice/],
    ['no examples', { classes: ['a'], embeddings: [], positives: [] }, /no examples/],
    ['mismatched label lists', { ...valid, positives: [[0], [1]] }, /one label list per example/],
    ['a class without positives', { ...valid, positives: [[0], [0], []] }, /class "b" has no positive examples/],
    [
      'a class without negatives',
      { classes: ['a'], embeddings: [e([1, 0]), e([0, 1])], positives: [[0], [0]] },
      /class "a" has no negative examples/,
    ],
    [
      'embeddings of different sizes',
      { ...valid, embeddings: [e([1, 0]), e([0, 1, 0]), e([1, 1])] },
      /example 1 has a 3-value embedding but example 0 has 2/,
    ],
    ['a NaN', { ...valid, embeddings: [e([1, 0]), e([0, NaN]), e([1, 1])] }, /example 1 has a NaN or infinite value/],
    ['an unknown class index', { ...valid, positives: [[0], [1], [2]] }, /example 2 names class index 2/],
  ];

  it.each(cases)('rejects %s', async (_, set, message) => {
    await expect(trainHead(set, { packKey })).rejects.toThrow(HeadTrainingError);
    await expect(trainHead(set, { packKey })).rejects.toThrow(message);
  });

  it('rejects fewer than 2 folds', async () => {
    await expect(trainHead(valid, { packKey, folds: 1 })).rejects.toThrow(/folds must be a whole number of at least 2/);
  });

  it('rejects a non-positive regularisation strength or thread count', async () => {
    await expect(trainHead(valid, { packKey, l2: 0 })).rejects.toThrow(/l2 must be a positive number/);
    await expect(trainHead(valid, { packKey, threads: 0 })).rejects.toThrow(/threads must be a positive integer/);
  });
});
