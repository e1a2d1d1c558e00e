import * as os from 'os';
import { HeadTrainingError } from './errors';
import { planEvaluation, type EvaluationPlan } from './folds';
import { HEAD_FORMAT_VERSION } from './head-file';
import { minimizeAll, type BatchEvaluator } from './lbfgs';
import { LogisticLossEvaluator } from './logistic-graph';
import { ASSUMED_CURVATURE, precondition } from './preconditioner';
import { confusionAt, confusionMatrix, f1Score, precision, recall, rocAuc } from './metrics';
import { fitPlatt, sigmoid } from './platt';
import { buildGate, gateDistances, insideGate, logOddsCapAt, quantileOf, type HeadGate } from './knn-gate';
import { seededRandom, shuffleInPlace } from './random';
import { cappedScores, gatedClass, knownLogOddsCap } from './score';
import type { ClassEvaluation, HeadEvaluation, KnownHead, TrainedHead, TrainHeadOptions, TrainingSet } from './types';
import { validateTrainingSet } from './validate';

/**
 * L2 strength: the objective is Σ (class-balanced weight × log-loss) + ½·l2·‖w‖²,
 * so the penalty weighs like l2 of one example and fades as examples grow.
 * Chosen with `bench/accuracy.ts --tune` on real photos by inner cross-validation
 * only (see there) and fixed. Embeddings are unit vectors whose centred spread
 * is small (total variance 0.02–0.06), hence the small value.
 */
export const DEFAULT_L2 = 0.001;
/**
 * Weight of one implicit negative (the open-set bank) relative to one of the user's negatives: the trade
 * between closed-set accuracy and open-set false positives. Measured with bench:accuracy's embeddings
 * (5-fold top-1; share of unrelated photos scoring ≥ 0.5 for a food classifier, GCompris / thumbnails):
 * 0.3: GCompris-5 0.952, food 0.927, 22.9% / 36%; 1: 0.934, 0.927, 14.1% / 23%; 3: 0.934, 0.907, 8.4% / 12%.
 */
export const IMPLICIT_NEGATIVE_WEIGHT = 1;
/**
 * The "any of my classes" head's threshold: this quantile of the classifier's own positives'
 * out-of-fold decisions, so about 2% of new positives fall below it. Study (open-set-study.md, Q2 §5):
 * food classifier, recall 0.924, false positives 0–3% on every unrelated set.
 */
export const KNOWN_THRESHOLD_QUANTILE = 0.02;
const DEFAULT_FOLDS = 5;
/** Holdout plans hold one bank photo in this many out of the held-out model's training. */
const HOLDOUT_BANK_SHARE = 5;
const DEFAULT_SEED = 1;
/**
 * A tolerance of 1e-5 leaves calibrated scores within about 0.01 of the exact
 * optimum's. Memory 6 took as few rounds as 10 (±10%) at less cost per round.
 */
const OPTIMIZER = { decreaseTolerance: 1e-5, maxIterations: 300, memory: 6 };

/**
 * One logistic-regression problem: one class against the rest, trained on every
 * example except those held out for `fold` (-1: the final model, all examples).
 */
interface Column {
  classIndex: number;
  fold: number;
  targets: Float32Array;
  /** Class-balanced sample weights; 0 for held-out rows. */
  weights: Float32Array;
  /** Rows this model is evaluated on. */
  heldOut: Int32Array;
  trainable: boolean;
}

/**
 * Trains one-vs-rest logistic regression heads, all cross-validation models and
 * the final models at once, then calibrates them on the out-of-fold decisions
 * and evaluates them.
 */
export async function trainHead(set: TrainingSet, options: TrainHeadOptions): Promise<TrainedHead> {
  const dim = validateTrainingSet(set);
  const requestedFolds = options.folds ?? DEFAULT_FOLDS;
  if (!Number.isInteger(requestedFolds) || requestedFolds < 2) {
    throw new HeadTrainingError(`folds must be a whole number of at least 2 (got ${requestedFolds})`);
  }
  const threads = options.threads ?? Math.min(2, os.cpus().length);
  const l2 = options.l2 ?? DEFAULT_L2;
  if (!(l2 > 0 && Number.isFinite(l2))) throw new RangeError(`l2 must be a positive number, got ${l2}`);
  const implicit = set.implicitNegatives ?? [];
  const badImplicit = implicit.findIndex((embedding) => embedding.length !== dim);
  if (badImplicit >= 0)
    throw new HeadTrainingError(
      `implicit negative ${badImplicit} has ${implicit[badImplicit].length} values, the examples ${dim}`,
    );
  const userExamples = set.embeddings.length;
  const userLabels = set.classes.map((_, c) => Uint8Array.from(set.positives, (list) => (list.includes(c) ? 1 : 0)));
  const seed = options.seed ?? DEFAULT_SEED;
  const openSet = options.openSet ?? {};
  const userPlan = planEvaluation(userLabels, userExamples, requestedFolds, seed);
  // The gate first: a bank photo inside a class's gate looks like the class and is no negative of it.
  const gate = await buildGate(set.embeddings, userLabels, dim, {
    maxPositives: options.gateMaxPositives,
    pooledQuantile: openSet.pooledRadius === false ? 0 : undefined,
    seed,
    threads,
  });
  const classes = set.classes.length;
  const lookalikes =
    implicit.length > 0 && openSet.excludeLookalikes === true
      ? await insideGate(gate, implicit, dim, threads, openSet.lookalikeMargin)
      : set.classes.map(() => new Uint8Array(implicit.length));
  // A class keeps the bank as its negatives when nothing else would be (no example outside the class).
  lookalikes.forEach((mask, c) => {
    if (userLabels[c].every((label) => label === 1)) mask.fill(0);
  });
  const userNegatives = set.positives.some((list) => list.length === 0);
  const withKnown =
    implicit.length > 0 && openSet.knownHead !== false && (userNegatives || !allInside(lookalikes, implicit.length));
  // The known head's column: positives of any class against everything else (inside no class's gate).
  const anyLabels = Uint8Array.from(set.positives, (list) => (list.length > 0 ? 1 : 0));
  const anyLookalike = Uint8Array.from({ length: implicit.length }, (_, i) =>
    lookalikes.some((mask) => mask[i]) ? 1 : 0,
  );
  const columnLabels = withKnown ? [...userLabels, anyLabels] : userLabels;
  const excluded = withKnown ? [...lookalikes, anyLookalike] : lookalikes;

  // Implicit negatives follow the user's examples: labelled 0 for every class. Each is held out of one
  // fold's models (seeded), so its out-of-fold scores measure false positives on photos of no class.
  const embeddings = implicit.length > 0 ? [...set.embeddings, ...implicit] : set.embeddings;
  const examples = embeddings.length;
  const labelsOf = (labels: Uint8Array) => {
    const all = new Uint8Array(examples);
    all.set(labels);
    return all;
  };
  const classLabels = columnLabels.map(labelsOf);
  const testFold = new Int32Array(examples).fill(-1);
  testFold.set(userPlan.testFold);
  const bankOrder = shuffleInPlace(
    Array.from({ length: implicit.length }, (_, i) => i),
    seededRandom(seed + 1),
  );
  bankOrder.forEach((i, rank) => {
    // k-fold: every bank photo in one fold; holdout: one in HOLDOUT_BANK_SHARE in the held-out part.
    if (userPlan.method === 'k-fold') testFold[userExamples + i] = rank % userPlan.folds;
    else if (rank % HOLDOUT_BANK_SHARE === 0) testFold[userExamples + i] = 0;
  });
  const plan = { ...userPlan, testFold };

  const centred = centredFeatures(embeddings, dim);
  const curvature = options.assumedCurvature ?? ASSUMED_CURVATURE;
  const problem = await precondition(centred.features, examples, dim, l2, seed, threads, curvature);
  const columns = buildColumns(
    classLabels,
    plan,
    userExamples,
    options.implicitWeight ?? IMPLICIT_NEGATIVE_WEIGHT,
    excluded,
  );
  const trainable = columns.filter((column) => column.trainable);
  const evaluator = await LogisticLossEvaluator.create(problem, examples, l2, threads);

  // The bias is preconditioned too: its curvature (about ASSUMED_CURVATURE × the summed weights) dwarfs l2.
  const biasScale = Math.sqrt(l2 / (curvature * examples));
  let progress = 0;
  const results = await minimizeAll(
    trainable.map(() => new Float64Array(problem.dim + 1)),
    columnEvaluator(evaluator, trainable, biasScale),
    {
      ...OPTIMIZER,
      onRound: (finished, round) => {
        progress = Math.max(progress, Math.min(0.99, finished, round / OPTIMIZER.maxIterations));
        options.onProgress?.(progress);
      },
    },
  );

  const solutions = new Map(trainable.map((column, k) => [column, results[k]]));
  const weights = new Float32Array(classes * dim);
  const bias = new Float32Array(classes);
  const knownWeights = new Float32Array(dim);
  let knownBias = 0;
  const outOfFold = columnLabels.map(() => new Float64Array(examples));
  for (const column of columns) {
    const solution = solutions.get(column);
    if (column.fold === -1) {
      // Validation guarantees the final models are trainable (the known head's: positives and the bank).
      const point = solution!.point;
      const w = problem.weightsFor(point.subarray(0, problem.dim));
      const b = point[problem.dim] * biasScale;
      if (column.classIndex < classes) {
        weights.set(w, column.classIndex * dim);
        bias[column.classIndex] = b;
      } else {
        knownWeights.set(w);
        knownBias = b;
      }
    } else if (solution) {
      column.heldOut.forEach((row, k) => (outOfFold[column.classIndex][row] = solution.extra[k]));
    }
    // An untrainable fold model (its training part lacks positives or negatives) decides 0 everywhere.
  }

  const evaluated = Int32Array.from({ length: userExamples }, (_, row) => row).filter((row) => plan.testFold[row] >= 0);
  const calibration = set.classes.map((name, c) => calibrateAndEvaluate(name, outOfFold[c], classLabels[c], evaluated));
  let known: KnownHead | undefined;
  if (withKnown) {
    const own = Float64Array.from(
      Array.from(evaluated).filter((row) => anyLabels[row]),
      (row) => outOfFold[classes][row],
    ).sort();
    known = { weights: knownWeights, bias: knownBias, threshold: quantileOf(own, KNOWN_THRESHOLD_QUANTILE) };
  }
  const calibrated = (row: number) => calibration.map((c, k) => c.platt.a * outOfFold[k][row] + c.platt.b);
  const knownCap = (row: number) => (known ? knownLogOddsCap(known, outOfFold[classes][row]) : Infinity);
  const heldOutBank = Int32Array.from({ length: implicit.length }, (_, i) => userExamples + i).filter(
    (row) => plan.testFold[row] >= 0,
  );
  const openSetFigures =
    implicit.length > 0
      ? openSetEvaluation(
          evaluated,
          heldOutBank,
          await rejectedScoresOf(
            Int32Array.from([...evaluated, ...heldOutBank]),
            calibrated,
            knownCap,
            gate,
            embeddings,
            threads,
          ),
          (row) => (row < userExamples ? set.positives[row] : []),
          (row, c) => row >= userExamples && lookalikes[c][row - userExamples] === 1,
        )
      : undefined;
  options.onProgress?.(1);
  return {
    formatVersion: HEAD_FORMAT_VERSION,
    packKey: options.packKey,
    dim,
    classes: [...set.classes],
    center: centred.center,
    weights,
    bias,
    platt: calibration.map((c) => c.platt),
    gate,
    ...(known ? { known } : {}),
    evaluation: {
      method: plan.method,
      folds: plan.folds,
      examples: evaluated.length,
      classes: calibration.map((c) => c.evaluation),
      ...topOneAccuracy(
        calibration.map((c) => c.logOdds),
        classLabels.slice(0, classes),
        evaluated,
      ),
      confusion_matrix: outOfSampleConfusion(
        set.classes,
        calibration.map((c) => c.logOdds),
        classLabels.slice(0, classes),
        evaluated,
      ),
      ...(openSetFigures ? { open_set: openSetFigures } : {}),
    },
    trainedAt: new Date().toISOString(),
    outOfFoldScores: outOfFoldScores(
      userExamples,
      evaluated,
      calibration.map((c) => c.logOdds),
    ),
  };
}

/** Per user example, the calibrated out-of-sample score of each class; null when it was never held out. */
function outOfFoldScores(userExamples: number, evaluated: Int32Array, logOdds: Float64Array[]): Array<number[] | null> {
  const scores: Array<number[] | null> = new Array(userExamples).fill(null);
  evaluated.forEach((row, k) => {
    if (row < userExamples) scores[row] = logOdds.map((classLogOdds) => sigmoid(classLogOdds[k]));
  });
  return scores;
}

/** Whether every implicit row lies inside some class's gate (the known head would have no negatives). */
function allInside(masks: Uint8Array[], rows: number): boolean {
  for (let i = 0; i < rows; i++) if (!masks.some((mask) => mask[i])) return false;
  return true;
}

/** Embeddings as one row-major matrix minus their mean: the bias absorbs the shift, conditioning improves. */
function centredFeatures(embeddings: Float32Array[], dim: number): { features: Float32Array; center: Float32Array } {
  const mean = new Float64Array(dim);
  for (const embedding of embeddings) for (let k = 0; k < dim; k++) mean[k] += embedding[k];
  const center = Float32Array.from(mean, (sum) => sum / embeddings.length);
  const features = new Float32Array(embeddings.length * dim);
  embeddings.forEach((embedding, i) => {
    const offset = i * dim;
    for (let k = 0; k < dim; k++) features[offset + k] = embedding[k] - center[k];
  });
  return { features, center };
}

/**
 * `implicitFrom`: the first implicit-negative row; each weighs `implicitWeight` times a user negative,
 * and the negatives together still balance the positives. `excluded[c][i]` = 1: implicit row i is no
 * negative of column c (it lies inside the class's gate), weight 0.
 */
function buildColumns(
  classLabels: Uint8Array[],
  plan: EvaluationPlan,
  implicitFrom: number,
  implicitWeight: number,
  excluded: Uint8Array[],
): Column[] {
  const examples = plan.testFold.length;
  const columns: Column[] = [];
  classLabels.forEach((labels, classIndex) => {
    const skip = (row: number) => row >= implicitFrom && excluded[classIndex][row - implicitFrom] === 1;
    for (let fold = 0; fold <= plan.folds; fold++) {
      const modelFold = fold === plan.folds ? -1 : fold;
      const inTraining = (row: number) => modelFold === -1 || plan.testFold[row] !== modelFold;
      let positives = 0;
      let userNegatives = 0;
      let implicitNegatives = 0;
      for (let row = 0; row < examples; row++) {
        if (!inTraining(row) || skip(row)) continue;
        if (labels[row]) positives++;
        else if (row >= implicitFrom) implicitNegatives++;
        else userNegatives++;
      }
      const trainingRows = positives + userNegatives + implicitNegatives;
      const weightedNegatives = userNegatives + implicitWeight * implicitNegatives;
      const weights = new Float32Array(examples);
      for (let row = 0; row < examples; row++) {
        if (!inTraining(row) || skip(row)) continue;
        if (labels[row]) weights[row] = trainingRows / (2 * positives);
        else weights[row] = (trainingRows / (2 * weightedNegatives)) * (row >= implicitFrom ? implicitWeight : 1);
      }
      columns.push({
        classIndex,
        fold: modelFold,
        targets: Float32Array.from(labels),
        weights,
        heldOut:
          modelFold === -1
            ? new Int32Array(0)
            : Int32Array.from(plan.testFold.keys()).filter((row) => !inTraining(row)),
        trainable: positives > 0 && userNegatives + implicitNegatives > 0,
      });
    }
  });
  return columns;
}

/**
 * Out-of-fold open-set figures (HeadEvaluation.open_set): recall over the evaluated examples' own
 * classes and the false-positive rate over held-out bank rows, both with scores after rejection
 * (`scores`: every such row's, from rejectedScoresOf). `looksLike(row, c)`: the row lies inside
 * class c's gate, so c scoring it ≥ 0.5 is no false positive.
 */
function openSetEvaluation(
  evaluated: Int32Array,
  bankRows: Int32Array,
  scores: Map<number, number[]>,
  positivesOf: (row: number) => number[],
  looksLike: (row: number, c: number) => boolean,
): NonNullable<HeadEvaluation['open_set']> {
  let pairs = 0;
  let hits = 0;
  for (const row of evaluated) {
    const own = positivesOf(row);
    if (own.length === 0) continue;
    const rowScores = scores.get(row)!;
    pairs += own.length;
    hits += own.filter((c) => rowScores[c] >= 0.5).length;
  }
  let falsePositives = 0;
  for (const row of bankRows) {
    if (scores.get(row)!.some((score, c) => score >= 0.5 && !looksLike(row, c))) falsePositives++;
  }
  return {
    bank_photos: bankRows.length,
    false_positive_rate: bankRows.length > 0 ? falsePositives / bankRows.length : 0,
    recall: pairs > 0 ? hits / pairs : 0,
  };
}

/**
 * Scores after rejection of `rows` (score.ts's rejectedScores, from their calibrated log-odds and the
 * known head's cap), the gate distances measured per class in one batch (gateDistances) rather than
 * image by image. Returns each row's scores.
 */
async function rejectedScoresOf(
  rows: Int32Array,
  logOddsOf: (row: number) => number[],
  knownCapOf: (row: number) => number,
  gate: HeadGate,
  embeddings: Float32Array[],
  threads: number,
): Promise<Map<number, number[]>> {
  const logOdds = Array.from(rows, logOddsOf);
  const caps = Float64Array.from(rows, knownCapOf);
  const gated = Int32Array.from(rows, (_, i) => gatedClass(logOdds[i], caps[i]));
  const dim = embeddings[0]?.length ?? 0;
  for (let c = 0; c < gate.counts.length; c++) {
    if (!Number.isFinite(gate.radius[c])) continue;
    const at = Int32Array.from(gated.keys()).filter((i) => gated[i] === c);
    const stacked = new Float32Array(at.length * dim);
    at.forEach((i, q) => stacked.set(embeddings[rows[i]], q * dim));
    const distances = await gateDistances(gate, c, stacked, at.length, dim, threads);
    at.forEach((i, q) => (caps[i] = Math.min(caps[i], logOddsCapAt(gate, c, distances[q]))));
  }
  return new Map(Array.from(rows, (row, i) => [row, cappedScores(logOdds[i], caps[i])]));
}

/**
 * Evaluates the objective of a batch of columns in one onnxruntime run. A
 * column's point is its (preconditioned) weights followed by its scaled,
 * unregularised bias; the extra kept per point is the decision value on the
 * column's held-out rows.
 */
function columnEvaluator(
  evaluator: LogisticLossEvaluator,
  columns: Column[],
  biasScale: number,
): BatchEvaluator<Float32Array> {
  const { rows, dim } = evaluator;
  let batch: number[] = [];
  let targets = new Float32Array(0);
  let weights = new Float32Array(0);
  return async (problems, points) => {
    const width = problems.length;
    if (problems.length !== batch.length || problems.some((p, j) => p !== batch[j])) {
      batch = [...problems];
      targets = new Float32Array(rows * width);
      weights = new Float32Array(rows * width);
      problems.forEach((p, j) => {
        const column = columns[p];
        for (let row = 0; row < rows; row++) {
          targets[row * width + j] = column.targets[row];
          weights[row * width + j] = column.weights[row];
        }
      });
    }
    const u = new Float32Array(dim * width);
    const b = Float32Array.from(points, (point) => point[dim] * biasScale);
    for (let k = 0, at = 0; k < dim; k++) for (let j = 0; j < width; j++, at++) u[at] = points[j][k];
    const result = await evaluator.evaluate(u, b, targets, weights, width);
    const gradients = points.map(() => new Float64Array(dim + 1));
    for (let k = 0, at = 0; k < dim; k++) for (let j = 0; j < width; j++, at++) gradients[j][k] = result.gradU[at];
    return problems.map((p, j) => {
      gradients[j][dim] = result.gradB[j] * biasScale;
      const extra = Float32Array.from(columns[p].heldOut, (row) => result.decision[row * width + j]);
      return { value: result.value[j], gradient: gradients[j], extra };
    });
  };
}

/**
 * Fits Platt scaling to a class's out-of-sample decisions (cross-validated or
 * held out) and measures the calibrated scores at the 0.5 threshold. The two
 * Platt parameters are fitted on the decisions they are measured on, a small
 * optimism; bench/accuracy.ts measures with an outer split that nothing sees.
 * Returns the calibrated log-odds too, which rank like the scores without
 * saturating to ties.
 */
function calibrateAndEvaluate(
  name: string,
  decisions: Float64Array,
  labels: Uint8Array,
  evaluated: Int32Array,
): { platt: { a: number; b: number }; logOdds: Float64Array; evaluation: ClassEvaluation } {
  const z = Float64Array.from(evaluated, (row) => decisions[row]);
  const y = Uint8Array.from(evaluated, (row) => labels[row]);
  const positives = y.reduce((sum, v) => sum + v, 0);
  const negatives = y.length - positives;
  // Balanced weights: a score is the probability under equal priors, so 0.5 suits rare classes too.
  const w = Float64Array.from(y, (v) => y.length / (2 * (v ? positives : negatives)));
  const platt = fitPlatt(z, y, w);
  const logOdds = z.map((value) => platt.a * value + platt.b);
  const counts = confusionAt(logOdds.map(sigmoid), y, 0.5);
  return {
    platt,
    logOdds,
    evaluation: {
      class: name,
      precision: precision(counts),
      recall: recall(counts),
      f1: f1Score(counts),
      roc_auc: rocAuc(logOdds, y),
      support: positives,
    },
  };
}

/** The confusion matrix of the evaluated examples' calibrated out-of-sample scores (see HeadEvaluation). */
function outOfSampleConfusion(
  classes: string[],
  scores: Float64Array[],
  classLabels: Uint8Array[],
  evaluated: Int32Array,
): NonNullable<HeadEvaluation['confusion_matrix']> {
  const actual = Int32Array.from(evaluated, (row) => {
    const own = classLabels.flatMap((labels, c) => (labels[row] ? [c] : []));
    return own.length === 0 ? classes.length : own.length === 1 ? own[0] : -1;
  });
  return { labels: [...classes, null], counts: confusionMatrix(scores, actual) };
}

/** Share of single-label evaluated examples whose highest calibrated score (log-odds) is their class. */
function topOneAccuracy(
  scores: Float64Array[],
  classLabels: Uint8Array[],
  evaluated: Int32Array,
): Pick<HeadEvaluation, 'accuracy'> {
  let counted = 0;
  let correct = 0;
  evaluated.forEach((row, k) => {
    const own = classLabels.flatMap((labels, c) => (labels[row] ? [c] : []));
    if (own.length !== 1) return;
    counted++;
    let best = 0;
    for (let c = 1; c < scores.length; c++) if (scores[c][k] > scores[best][k]) best = c;
    if (best === own[0]) correct++;
  });
  return counted > 0 ? { accuracy: correct / counted } : {};
}
