import type { BuiltinClass } from '../types';
import { COCO_CLASSES } from './coco-labels';

/** Values per detection row: x1, y1, x2, y2, score, class index. */
export const DETECTION_ROW = 6;

/**
 * Calibration choice: CenterNet's raw scores of correct objects sit around 0.4–0.7 (dog.jpg: car 0.56,
 * bicycle 0.49, dog 0.43), so at Watson's default threshold of 0.5 many true objects would vanish. The
 * raw score is mapped piecewise-linearly through (0, 0), (RAW_SCORE_AT_HALF, 0.5), (1, 1): monotone, so
 * the ranking stays the detector's own, and a raw 0.4, just below the weakest correct object on the
 * sample photos (dog 0.43), lands on Watson's default threshold. Raw 0.3 would keep more true objects
 * but also let through guesses on drawn shapes (orange, apple, stop sign at raw 0.30–0.37 on red circles)
 * and dog.jpg's truck 0.32 and parking meter 0.31; they stay visible with a lower threshold.
 */
export const RAW_SCORE_AT_HALF = 0.4;

export function calibratedScore(raw: number): number {
  const clamped = Math.min(1, Math.max(0, raw));
  return clamped <= RAW_SCORE_AT_HALF
    ? (clamped / RAW_SCORE_AT_HALF) * 0.5
    : 0.5 + ((clamped - RAW_SCORE_AT_HALF) / (1 - RAW_SCORE_AT_HALF)) * 0.5;
}

/**
 * The `default` classes for one image's detection rows: each COCO class found, scored by its best
 * detection, and each supercategory (vehicle, animal, …) scored by its best member, so matches on
 * children boost the parent. Scores are calibrated (calibratedScore); highest first.
 */
export function objectClasses(detections: Float32Array): BuiltinClass[] {
  const bestRaw = new Map<number, number>();
  for (let row = 0; row + DETECTION_ROW <= detections.length; row += DETECTION_ROW) {
    const classIndex = detections[row + 5];
    if (!Number.isInteger(classIndex) || classIndex < 0 || classIndex >= COCO_CLASSES.length) {
      throw new RangeError(`detection class index ${classIndex} is not one of the ${COCO_CLASSES.length} COCO classes`);
    }
    bestRaw.set(classIndex, Math.max(bestRaw.get(classIndex) ?? 0, detections[row + 4]));
  }
  const byName = new Map<string, BuiltinClass>();
  for (const [classIndex, raw] of bestRaw) {
    const { name, supercategory, type_hierarchy } = COCO_CLASSES[classIndex];
    const score = calibratedScore(raw);
    byName.set(name, { class: name, score, type_hierarchy });
    const parent = byName.get(supercategory);
    if (supercategory !== name && (!parent || parent.score < score)) {
      byName.set(supercategory, { class: supercategory, score, type_hierarchy: `/${supercategory}` });
    }
  }
  return [...byName.values()].sort((a, b) => b.score - a.score || (a.class < b.class ? -1 : a.class > b.class ? 1 : 0));
}
