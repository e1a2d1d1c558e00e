import type { BuiltinClass } from '../types';
import { COCO_CLASSES } from './coco-labels';
import fittedCalibration from './object-calibration.json';
import { decodeWeights, type PhotoGate } from './photo-gate';

/** Values per detection row: x1, y1, x2, y2, score, class index. */
export const DETECTION_ROW = 6;

/**
 * How a COCO class's raw CenterNet score (its best detection, max over the passes) becomes Watson's
 * score: Platt scaling on the raw score's log-odds, p = sigmoid(slope · logit(raw) + intercept), a
 * monotone map (slope > 0), so the ranking stays the detector's own.
 */
export interface ObjectCalibration {
  slope: number;
  intercept: number;
}

/**
 * The calibration the service uses: fitted by `npm run fit:object-calibration` on labelled real photos
 * (object-calibration.json records which, how many and the detector pass they were seen with); the
 * photos that bench:accuracy reports `default` on are never among them.
 */
export const OBJECT_CALIBRATION: ObjectCalibration = {
  slope: fittedCalibration.slope,
  intercept: fittedCalibration.intercept,
};

/** The photo gate fitted with OBJECT_CALIBRATION (photo-gate.ts), over the detector's taps. */
export const OBJECT_PHOTO_GATE: PhotoGate = {
  weights: decodeWeights(fittedCalibration.photo_gate.weights),
  bias: fittedCalibration.photo_gate.bias,
};

/** Raw scores are clamped into [RAW_EPSILON, 1 − RAW_EPSILON] so their log-odds stay finite. */
const RAW_EPSILON = 1e-6;

/** log(p / (1 − p)) of a raw score, clamped (RAW_EPSILON); NaN counts as 0. */
export function rawLogit(raw: number): number {
  const p = Math.min(1 - RAW_EPSILON, Math.max(RAW_EPSILON, Number.isNaN(raw) ? 0 : raw));
  return Math.log(p / (1 - p));
}

/** A raw CenterNet score (0–1) as a calibrated probability that the image shows the class (0–1). */
export function calibratedScore(raw: number, calibration: ObjectCalibration = OBJECT_CALIBRATION): number {
  const u = calibration.slope * rawLogit(raw) + calibration.intercept;
  return u >= 0 ? 1 / (1 + Math.exp(-u)) : Math.exp(u) / (1 + Math.exp(u));
}

/** The raw score that calibrates to `score`: the inverse of calibratedScore. */
export function rawScoreAt(score: number, calibration: ObjectCalibration = OBJECT_CALIBRATION): number {
  const u = (Math.log(score / (1 - score)) - calibration.intercept) / calibration.slope;
  return 1 / (1 + Math.exp(-u));
}

/**
 * Each COCO class's best raw score over the detection rows of one or more passes on one image (80
 * values in COCO order, 0 where a class has no row).
 * @throws RangeError when a row's class index is not one of the 80 COCO classes
 */
export function bestRawScores(...passes: Float32Array[]): Float32Array {
  const best = new Float32Array(COCO_CLASSES.length);
  for (const detections of passes) {
    for (let row = 0; row + DETECTION_ROW <= detections.length; row += DETECTION_ROW) {
      const classIndex = detections[row + 5];
      if (!Number.isInteger(classIndex) || classIndex < 0 || classIndex >= COCO_CLASSES.length) {
        throw new RangeError(
          `detection class index ${classIndex} is not one of the ${COCO_CLASSES.length} COCO classes`,
        );
      }
      const score = detections[row + 4];
      if (score > best[classIndex]) best[classIndex] = score;
    }
  }
  return best;
}

/**
 * The `default` classes for one image's best raw score per COCO class (bestRawScores): each class
 * with a detection, calibrated, and each supercategory (vehicle, animal, …) scored by its best member,
 * so matches on children boost the parent. Highest first. `photo` is the photo gate's probability that
 * the picture is a photo of things at all (photo-gate.ts): below 0.5 no score may exceed it, so a
 * generated picture names nothing (the classes below the cap keep their order); at 0.5 or more scores stay as
 * calibrated (the gate is a guard against generated pictures, not a calibrated factor for photos).
 * @throws RangeError when `rawScores` does not hold one value per COCO class
 */
export function objectClasses(
  rawScores: Float32Array,
  calibration: ObjectCalibration = OBJECT_CALIBRATION,
  photo = 1,
): BuiltinClass[] {
  if (rawScores.length !== COCO_CLASSES.length) {
    throw new RangeError(`expected ${COCO_CLASSES.length} raw scores, one per COCO class, got ${rawScores.length}`);
  }
  const byName = new Map<string, BuiltinClass>();
  rawScores.forEach((raw, classIndex) => {
    if (!(raw > 0)) return;
    const { name, supercategory, type_hierarchy } = COCO_CLASSES[classIndex];
    const calibrated = calibratedScore(raw, calibration);
    const score = photo >= 0.5 ? calibrated : Math.min(calibrated, photo);
    byName.set(name, { class: name, score, type_hierarchy });
    const parent = byName.get(supercategory);
    if (supercategory !== name && (!parent || parent.score < score)) {
      byName.set(supercategory, { class: supercategory, score, type_hierarchy: `/${supercategory}` });
    }
  });
  return [...byName.values()].sort((a, b) => b.score - a.score || (a.class < b.class ? -1 : a.class > b.class ? 1 : 0));
}
