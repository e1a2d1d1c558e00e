/**
 * bench:accuracy: how well custom-classifier heads learn real photos embedded
 * by the installed backbone. Outer 5-fold cross-validation around trainHead
 * (each test fold is never seen by training or calibration), reporting top-1
 * accuracy (argmax of calibrated one-vs-rest scores), macro-F1 of those
 * predictions, and the mean one-vs-rest F1 at the 0.5 threshold.
 *
 *   --l2 <value>   regularisation strength (default: the trainer's fixed one)
 *   --tune         sweep a grid of strengths and choose by inner-CV accuracy only
 *                  (trainHead's own evaluation on the outer training parts of the
 *                  food photos, and on separate Fashion-MNIST test-split images),
 *                  never by the outer test folds: the largest strength whose mean
 *                  inner accuracy is within TUNING_SLACK of the best
 */
import os from 'node:os';
import { ensureBundledPack } from '../src/ml/bundled-pack';
import { Embedder } from '../src/ml/embedder';
import { DEFAULT_L2, scoreHead, trainHead, type TrainingSet } from '../src/ml/heads';
import { seededRandom, shuffleInPlace } from '../src/ml/heads/random';
import { loadBestPack } from '../src/ml/model-pack';
import { loadFashionMnist, loadFoodPhotos, MissingDatasetError, type LabelledImages } from './lib/datasets';
import { modelsDir } from './lib/repo';

const OUTER_FOLDS = 5;
const FASHION_PER_CLASS = 150;
const FASHION_TUNING_PER_CLASS = 100;
const TUNING_GRID = [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03];
/** Prefer the strongest regularisation (fewest rounds, steadiest) whose tuning score is this close to the best. */
const TUNING_SLACK = 0.005;
const TARGETS = { food: 0.9, fashion: 0.8 };

interface EmbeddedSet {
  classes: string[];
  embeddings: Float32Array[];
  labels: number[];
}

interface CrossValidation {
  top1: number;
  macroF1: number;
  ovrF1: number;
  /** Mean of trainHead's own (inner) evaluation accuracy over the outer training parts. */
  innerTop1: number;
  trainSeconds: number;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const tune = args.includes('--tune');
  const l2Arg = args.indexOf('--l2');
  const fixedL2 = l2Arg >= 0 ? Number(args[l2Arg + 1]) : DEFAULT_L2;

  let food: LabelledImages;
  let fashion: LabelledImages;
  let fashionTuning: LabelledImages | undefined;
  try {
    food = loadFoodPhotos();
    fashion = await loadFashionMnist('train', FASHION_PER_CLASS);
    if (tune) fashionTuning = await loadFashionMnist('t10k', FASHION_TUNING_PER_CLASS);
  } catch (error) {
    if (!(error instanceof MissingDatasetError)) throw error;
    console.log(error.install);
    process.exit(1);
  }

  const dir = modelsDir();
  await ensureBundledPack(dir);
  const embedder = await Embedder.create(await loadBestPack(dir), { threads: 2 });
  const started = Date.now();
  const foodSet = await embed(embedder, food);
  const fashionSet = await embed(embedder, fashion);
  const tuningSet = fashionTuning && (await embed(embedder, fashionTuning));
  const embedSeconds = (Date.now() - started) / 1000;
  await embedder.close();
  console.log(`pack ${embedder.packKey}: embedded ${foodSet.labels.length} food photos, ${fashionSet.labels.length}${tuningSet ? ` + ${tuningSet.labels.length} tuning` : ''} Fashion-MNIST images in ${embedSeconds.toFixed(1)} s`);

  const packKey = embedder.packKey;
  let chosen = fixedL2;
  if (tune) {
    console.log('l2\tfood inner\tfashion tuning inner\t| food outer top1\tfashion outer top1 (shown, not used to choose)');
    const scores: Array<{ l2: number; score: number }> = [];
    for (const l2 of TUNING_GRID) {
      const foodCv = await crossValidate(foodSet, packKey, l2);
      const fashionCv = await crossValidate(fashionSet, packKey, l2);
      const tuningHead = await trainHead(toTrainingSet(tuningSet!), { packKey, l2, threads: 2 });
      const tuningTop1 = tuningHead.evaluation.accuracy ?? 0;
      scores.push({ l2, score: (foodCv.innerTop1 + tuningTop1) / 2 });
      console.log(`${l2}\t${fmt(foodCv.innerTop1)}\t\t${fmt(tuningTop1)}\t\t\t| ${fmt(foodCv.top1)}\t\t\t${fmt(fashionCv.top1)}`);
    }
    const best = Math.max(...scores.map((s) => s.score));
    chosen = Math.max(...scores.filter((s) => s.score >= best - TUNING_SLACK).map((s) => s.l2));
    console.log(`best mean inner top-1 ${fmt(best)}; chosen l2 = ${chosen} (largest within ${TUNING_SLACK} of the best)`);
  }

  const foodCv = await crossValidate(foodSet, packKey, chosen);
  const fashionCv = await crossValidate(fashionSet, packKey, chosen);
  for (const [name, cv, target] of [['food (D/E/O/P)', foodCv, TARGETS.food], ['Fashion-MNIST', fashionCv, TARGETS.fashion]] as const) {
    console.log(
      `${name}: top-1 ${fmt(cv.top1)} (target ≥${target}), macro-F1 ${fmt(cv.macroF1)}, one-vs-rest F1@0.5 ${fmt(cv.ovrF1)}, ` +
        `inner-CV top-1 ${fmt(cv.innerTop1)}, ${cv.trainSeconds.toFixed(2)} s per trainHead`,
    );
  }
  console.log(
    JSON.stringify({
      bench: 'accuracy',
      cores: os.cpus().length,
      pack: packKey,
      l2: chosen,
      outerFolds: OUTER_FOLDS,
      food: { examples: foodSet.labels.length, classes: foodSet.classes.length, top1: round(foodCv.top1), macroF1: round(foodCv.macroF1), ovrF1: round(foodCv.ovrF1) },
      fashion: { examples: fashionSet.labels.length, classes: fashionSet.classes.length, top1: round(fashionCv.top1), macroF1: round(fashionCv.macroF1), ovrF1: round(fashionCv.ovrF1) },
      targets: TARGETS,
    }),
  );
}

async function embed(embedder: Embedder, set: LabelledImages): Promise<EmbeddedSet> {
  const analyses = await embedder.analyze(set.images);
  const embeddings = analyses.map((analysis) => {
    if (analysis instanceof Error) throw analysis;
    return analysis.embedding;
  });
  return { classes: set.classes, embeddings, labels: set.images.map((image) => image.label) };
}

function toTrainingSet(set: EmbeddedSet, rows?: number[]): TrainingSet {
  const picked = rows ?? set.labels.map((_, i) => i);
  return { classes: set.classes, embeddings: picked.map((i) => set.embeddings[i]), positives: picked.map((i) => [set.labels[i]]) };
}

/** Stratified outer folds of our own, so trainHead never sees the test fold. */
async function crossValidate(set: EmbeddedSet, packKey: string, l2: number): Promise<CrossValidation> {
  const random = seededRandom(2024);
  const fold = new Array<number>(set.labels.length);
  set.classes.forEach((_, c) => {
    const members = shuffleInPlace(set.labels.flatMap((label, i) => (label === c ? [i] : [])), random);
    members.forEach((i, k) => (fold[i] = k % OUTER_FOLDS));
  });

  const classes = set.classes.length;
  const predicted = new Array<number>(set.labels.length);
  const ovr = Array.from({ length: classes }, () => ({ tp: 0, fp: 0, fn: 0 }));
  let innerTop1 = 0;
  let trainMs = 0;
  for (let f = 0; f < OUTER_FOLDS; f++) {
    const trainRows = fold.flatMap((g, i) => (g !== f ? [i] : []));
    const started = Date.now();
    const head = await trainHead(toTrainingSet(set, trainRows), { packKey, l2, threads: 2 });
    trainMs += Date.now() - started;
    innerTop1 += (head.evaluation.accuracy ?? 0) / OUTER_FOLDS;
    fold.forEach((g, i) => {
      if (g !== f) return;
      const scores = scoreHead(head, set.embeddings[i]);
      predicted[i] = scores.indexOf(Math.max(...scores));
      scores.forEach((score, c) => {
        const actual = set.labels[i] === c;
        if (score >= 0.5 && actual) ovr[c].tp++;
        else if (score >= 0.5) ovr[c].fp++;
        else if (actual) ovr[c].fn++;
      });
    });
  }

  const argmaxCounts = Array.from({ length: classes }, () => ({ tp: 0, fp: 0, fn: 0 }));
  set.labels.forEach((label, i) => {
    if (predicted[i] === label) argmaxCounts[label].tp++;
    else {
      argmaxCounts[predicted[i]].fp++;
      argmaxCounts[label].fn++;
    }
  });
  const top1 = set.labels.filter((label, i) => predicted[i] === label).length / set.labels.length;
  return { top1, macroF1: meanF1(argmaxCounts), ovrF1: meanF1(ovr), innerTop1, trainSeconds: trainMs / 1000 / OUTER_FOLDS };
}

function meanF1(counts: Array<{ tp: number; fp: number; fn: number }>): number {
  return counts.reduce((sum, { tp, fp, fn }) => sum + (tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn)), 0) / counts.length;
}

const fmt = (value: number) => value.toFixed(3);
const round = (value: number) => Math.round(value * 1e4) / 1e4;

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
