/**
 * The open-set mechanisms of custom heads, each on a generated case that fails without it:
 * the pooled gate radius, gating the top class only, the "any of my classes" head's rejection, and
 * bank photos that look like a class not being learned as its negatives.
 */
import { HEAD_FORMAT_VERSION, deserializeHead, scoreHead, serializeHead, trainHead } from '../../src/ml/heads';
import { buildGate, gateDistance, type HeadGate } from '../../src/ml/heads/knn-gate';
import { seededRandom } from '../../src/ml/heads/random';
import { KNOWN_CAP_SLOPE } from '../../src/ml/heads/score';
import type { TrainedHead } from '../../src/ml/heads';

const DIM = 16;

function unit(values: ArrayLike<number>): Float32Array {
  const norm = Math.hypot(...Array.from(values));
  return Float32Array.from(values, (v) => v / norm);
}

/** A unit vector near axis `axis`: `spread` of seeded noise in the last eight dimensions. */
function near(axis: number, spread: number, random: () => number): Float32Array {
  return unit(Array.from({ length: DIM }, (_, k) => (k === axis ? 1 : k >= 8 ? spread * (random() * 2 - 1) : 0)));
}

const logit = (p: number) => Math.log(p / (1 - p));

/** A head whose calibrated log-odds are the given constants, whatever the image (zero weights). */
function constantHead(scores: number[], gate?: HeadGate): TrainedHead {
  return {
    formatVersion: HEAD_FORMAT_VERSION,
    packKey: 'test@1',
    dim: DIM,
    classes: scores.map((_, c) => `class ${c}`),
    center: new Float32Array(DIM),
    weights: new Float32Array(scores.length * DIM),
    bias: new Float32Array(scores.length),
    platt: scores.map((p) => ({ a: 0, b: logit(p) })),
    ...(gate ? { gate } : {}),
    evaluation: { method: 'k-fold', folds: 2, examples: 0, classes: [] },
    trainedAt: new Date(0).toISOString(),
  };
}

describe('the pooled gate radius', () => {
  // Class 0: four positives all equally far from each other (a regular simplex: every leave-one-out
  // distance is the same). Class 1: twenty positives whose spread varies, as real photos' does.
  const random = seededRandom(3);
  const simplex = [8, 9, 10, 11].map((k) =>
    unit(Array.from({ length: DIM }, (_, j) => (j === 0 ? 4 : j === k ? 1 : 0))),
  );
  const varied = Array.from({ length: 20 }, (_, i) => near(1, 0.2 + 0.04 * i, random));
  const embeddings = [...simplex, ...varied];
  const labels = [0, 1].map((c) => Uint8Array.from(embeddings, (_, i) => ((i < 4 ? 0 : 1) === c ? 1 : 0)));
  // A new photo of class 0 a little farther from its positives than they lie from each other.
  const newPositive = unit(Array.from({ length: DIM }, (_, j) => (j === 0 ? 4 : j === 12 ? 1.15 : 0)));

  it('lets a new positive of a small class through that the largest leave-one-out distance alone rejects', async () => {
    const pooled = await buildGate(embeddings, labels, DIM, { seed: 1 });
    const largestOnly = await buildGate(embeddings, labels, DIM, { seed: 1, pooledQuantile: 0 });
    const distance = gateDistance(pooled, 0, newPositive);
    expect(distance).toBeGreaterThan(largestOnly.radius[0]);
    expect(distance).toBeLessThanOrEqual(pooled.radius[0]);
    expect(scoreHead(constantHead([0.9, 0.1], pooled), newPositive)[0]).toBeCloseTo(0.9, 12);
    expect(scoreHead(constantHead([0.9, 0.1], largestOnly), newPositive)[0]).toBeLessThan(0.5);
    // Never narrower than the largest leave-one-out distance; far images still fail.
    expect(pooled.radius[1]).toBeGreaterThanOrEqual(largestOnly.radius[1]);
    expect(scoreHead(constantHead([0.9, 0.1], pooled), near(5, 0, random))[0]).toBeLessThan(0.5);
  });
});

describe('gating the top class only', () => {
  it('keeps the ranking when the gate rejects: the top class is capped and every class moves down with it', async () => {
    const random = seededRandom(5);
    const embeddings = [
      ...Array.from({ length: 8 }, () => near(0, 0.1, random)),
      ...Array.from({ length: 8 }, () => near(1, 0.1, random)),
    ];
    const labels = [0, 1].map((c) => Uint8Array.from(embeddings, (_, i) => (Math.floor(i / 8) === c ? 1 : 0)));
    const gate = await buildGate(embeddings, labels, DIM, { seed: 1 });
    // Far from both classes, nearer class 1's positives than class 0's: per class, class 0 is capped harder.
    const image = unit(Array.from({ length: DIM }, (_, k) => (k === 0 ? 0.2 : k === 1 ? 0.5 : k === 2 ? 1 : 0)));
    expect(gateDistance(gate, 0, image)).toBeGreaterThan(gateDistance(gate, 1, image));
    const head = constantHead([0.9, 0.8], gate);
    const top = scoreHead(head, image);
    expect(top[0]).toBeLessThan(0.5);
    expect(top[0]).toBeGreaterThan(top[1]); // class 0 still ranks first
    expect(top[0]).toBeCloseTo((0.5 * gate.radius[0]) / gateDistance(gate, 0, image), 12);
    const each = scoreHead(head, image, { gate: 'each' });
    expect(each[1]).toBeGreaterThan(each[0]); // the per-class gate reorders the classes
  });
});

describe('the "any of my classes" head', () => {
  const known = (decisionMinusThreshold: number) => ({
    weights: Float32Array.from({ length: DIM }, (_, k) => (k === 0 ? 1 : 0)),
    bias: 0,
    threshold: -decisionMinusThreshold, // decision = embedding[0] − center[0] = 0 for the images below
  });
  const image = new Float32Array(DIM);

  it('below its threshold, brings every class below 0.5 by one shift of the log-odds, keeping the ranking', () => {
    const head = { ...constantHead([0.97, 0.8, 0.3]), known: known(-0.7) };
    const scores = scoreHead(head, image);
    expect(Math.max(...scores)).toBeLessThan(0.5);
    expect(scores[0]).toBeCloseTo(1 / (1 + Math.exp(0.7)), 12); // the top is capped at the margin
    expect(scores[0]).toBeGreaterThan(scores[1]);
    expect(scores[1]).toBeGreaterThan(scores[2]);
    const shift = logit(0.97) - logit(scores[0]);
    expect(logit(scores[1])).toBeCloseTo(logit(0.8) - shift, 9);
    // Without it the classifier says yes to this image.
    expect(scoreHead(constantHead([0.97, 0.8, 0.3]), image)[0]).toBeCloseTo(0.97, 12);
  });

  it('at or above its threshold leaves "yes" a yes, and calibrated scores alone a short way above it', () => {
    const atThreshold = scoreHead({ ...constantHead([0.97, 0.2]), known: known(0) }, image);
    expect(atThreshold[0]).toBeGreaterThanOrEqual(0.5);
    const above = scoreHead({ ...constantHead([0.97, 0.2]), known: known(4 / (1 + KNOWN_CAP_SLOPE)) }, image);
    expect(above[0]).toBeCloseTo(0.97, 12);
  });

  it('is trained against the bank, stored in the head file, and its threshold passes the own positives out of fold', async () => {
    const random = seededRandom(11);
    const embeddings = [0, 1, 2].flatMap((axis) => Array.from({ length: 12 }, () => near(axis, 0.3, random)));
    const bank = [3, 4, 5, 6, 7].flatMap((axis) => Array.from({ length: 12 }, () => near(axis, 0.3, random)));
    const head = await trainHead(
      {
        classes: ['a', 'b', 'c'],
        embeddings,
        positives: embeddings.map((_, i) => [Math.floor(i / 12)]),
        implicitNegatives: bank,
      },
      { packKey: 'test@1', threads: 1 },
    );
    expect(head.known).toBeDefined();
    expect(head.evaluation.open_set).toMatchObject({ bank_photos: 60 });
    expect(head.evaluation.open_set!.recall).toBeGreaterThanOrEqual(0.9);
    expect(head.evaluation.open_set!.false_positive_rate).toBeLessThanOrEqual(0.05);
    const back = deserializeHead(serializeHead(head));
    expect(back.known!.threshold).toBe(head.known!.threshold);
    expect(Array.from(back.known!.weights)).toEqual(Array.from(head.known!.weights));
    const fresh = near(3, 0.3, random); // like the bank
    expect(scoreHead(back, fresh)).toEqual(scoreHead(head, fresh));
    // Without the bank there is no world to learn against: no known head.
    const plain = await trainHead(
      { classes: ['a', 'b', 'c'], embeddings, positives: embeddings.map((_, i) => [Math.floor(i / 12)]) },
      { packKey: 'test@1', threads: 1 },
    );
    expect(plain.known).toBeUndefined();
    expect(plain.evaluation.open_set).toBeUndefined();
  });
});

describe('bank photos that look like a class', () => {
  it('are no negatives of it: the "any of my classes" head keeps rejecting unrelated photos and the class keeps its recall', async () => {
    const random = seededRandom(17);
    const spread = 0.35;
    const train = [0, 1, 2].flatMap((axis) => Array.from({ length: 10 }, () => near(axis, spread, random)));
    const heldOut = Array.from({ length: 40 }, () => near(0, spread, random));
    // The bank holds many photos of class 0's subject, and photos of other things.
    const bank = [
      ...Array.from({ length: 200 }, () => near(0, spread, random)),
      ...[4, 5, 6, 7].flatMap((axis) => Array.from({ length: 15 }, () => near(axis, spread, random))),
    ];
    // Unrelated photos of a subject neither the classes nor the bank show, partly like class 0.
    const unrelated = Array.from({ length: 40 }, () => {
      const e = near(3, spread, random);
      e[0] = 0.6;
      return unit(e);
    });
    const set = {
      classes: ['a', 'b', 'c'],
      embeddings: train,
      positives: train.map((_, i) => [Math.floor(i / 10)]),
      implicitNegatives: bank,
    };
    const recall = (head: TrainedHead) =>
      heldOut.filter((embedding) => scoreHead(head, embedding)[0] >= 0.5).length / heldOut.length;
    // The known head's own effect: the gate is left out of these scores.
    const falsePositives = (head: TrainedHead) =>
      unrelated.filter((e) => scoreHead({ ...head, gate: undefined }, e).some((s) => s >= 0.5)).length /
      unrelated.length;
    const excluding = await trainHead(set, { packKey: 'test@1', threads: 1, openSet: { excludeLookalikes: true } });
    const learningThem = await trainHead(set, { packKey: 'test@1', threads: 1 });
    const radiusOnly = await trainHead(set, {
      packKey: 'test@1',
      threads: 1,
      openSet: { excludeLookalikes: true, lookalikeMargin: 1 },
    });
    expect(recall(excluding)).toBeGreaterThanOrEqual(0.9);
    expect(falsePositives(excluding)).toBeLessThanOrEqual(0.05);
    // Learned as "the world", the class's own subject drags the known head's threshold down: it rejects nothing.
    expect(falsePositives(learningThem)).toBeGreaterThanOrEqual(0.5);
    // Look-alikes just outside the radius, learned as negatives, cost the class its new photos.
    expect(recall(radiusOnly)).toBeLessThan(0.9);
  });
});
