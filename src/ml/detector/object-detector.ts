import { decodeImageStretched, ImageDecodeError, type DecodedImage } from '../decode-image';
import { InferenceWorker } from '../inference-worker';
import type { BuiltinClass, ImageInput } from '../types';
import { CENTERNET_INPUT_NAME, CENTERNET_INPUT_SIZE, CENTERNET_MAX_DETECTIONS, CENTERNET_OUTPUT_NAME } from './centernet-converter';
import { COCO_CLASSES } from './coco-labels';

export interface ObjectDetectorOptions {
  /** ONNX Runtime intra-op threads. */
  threads: number;
}

/** Values per detection row: x1, y1, x2, y2, score, class index. */
const ROW = 6;

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
  for (let row = 0; row + ROW <= detections.length; row += ROW) {
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

/**
 * Names the COCO objects in images with the CenterNet detector (see detector-pack.ts). Inference
 * runs in its own thread (onnxruntime-node's run blocks the calling thread), one image at a time
 * (the graph's batch is 1), while this thread decodes the next image.
 */
export class ObjectDetector {
  private constructor(private readonly inference: InferenceWorker) {}

  static async create(modelPath: string, options: ObjectDetectorOptions): Promise<ObjectDetector> {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new RangeError(`threads must be a positive integer, got ${options.threads}`);
    const inference = await InferenceWorker.create(modelPath, { intraOpNumThreads: options.threads });
    if (!inference.inputNames.includes(CENTERNET_INPUT_NAME) || !inference.outputNames.includes(CENTERNET_OUTPUT_NAME)) {
      await inference.close();
      throw new Error(`${modelPath}: not a converted CenterNet model (expected input ${CENTERNET_INPUT_NAME} and output ${CENTERNET_OUTPUT_NAME})`);
    }
    return new ObjectDetector(inference);
  }

  /** Classes per image, in input order; an image that cannot be decoded gets its ImageDecodeError in its slot. */
  async detect(images: ImageInput[]): Promise<Array<BuiltinClass[] | ImageDecodeError>> {
    const results: Array<BuiltinClass[] | ImageDecodeError> = [];
    let next = images.length > 0 ? decode(images[0]) : undefined;
    for (let i = 0; i < images.length; i += 1) {
      const decoded = await next!;
      next = i + 1 < images.length ? decode(images[i + 1]) : undefined;
      // If inference throws, the prefetch's own failure must not surface as an unhandled rejection.
      next?.catch(() => undefined);
      results.push(decoded instanceof ImageDecodeError ? decoded : objectClasses(await this.infer(decoded)));
    }
    return results;
  }

  /** False once its model thread has crashed or been closed. */
  get alive(): boolean {
    return this.inference.alive;
  }

  async close(): Promise<void> {
    await this.inference.close();
  }

  private async infer(image: DecodedImage): Promise<Float32Array> {
    const size = CENTERNET_INPUT_SIZE;
    // The graph takes sharp's interleaved RGB as it is (NHWC), as floats 0–255.
    const outputs = await this.inference.run(CENTERNET_INPUT_NAME, { data: Float32Array.from(image.rgb), dims: [1, size, size, 3] }, [CENTERNET_OUTPUT_NAME]);
    const detections = outputs[CENTERNET_OUTPUT_NAME].data;
    if (detections.length !== CENTERNET_MAX_DETECTIONS * ROW) {
      throw new Error(`${this.inference.modelPath}: expected ${CENTERNET_MAX_DETECTIONS}×${ROW} detection values, got ${detections.length}`);
    }
    return detections;
  }
}

async function decode(image: ImageInput): Promise<DecodedImage | ImageDecodeError> {
  try {
    return await decodeImageStretched(image.bytes, image.name, CENTERNET_INPUT_SIZE);
  } catch (error) {
    if (error instanceof ImageDecodeError) return error;
    throw error;
  }
}
