import os from 'node:os';
import { colorClasses } from './color-classes';
import { decodeImageViews, ImageDecodeError, type DecodedImage, type SquareView } from './decode-image';
import { CENTERNET_INPUT_NAME, CENTERNET_MAX_DETECTIONS, CENTERNET_OUTPUT_NAME } from './detector/centernet-converter';
import type { DetectorPack } from './detector/detector-pack';
import {
  bestRawScores,
  DETECTION_ROW,
  OBJECT_CALIBRATION,
  OBJECT_PHOTO_GATE,
  objectClasses,
  type ObjectCalibration,
} from './detector/object-detector';
import { gateInput, photoProbability, type PhotoGate } from './detector/photo-gate';
import { needsZoomOut, zoomedOut } from './detector/zoom-out';
import { InferenceWorker, type InferencePriority } from './inference-worker';
import { checkUploadImage } from './image-check';
import { PackError, type LoadedPack } from './model-pack';
import { MissingOutputsError } from './onnx/graph-cut';
import { packKey, type BuiltinClass, type ImageInput, type PackManifest } from './types';
import { secondsSince } from '../lib/elapsed';

export interface ImageAnalysis {
  /** L2-normalised embedding of `dim` values, under the embedder's packKey. */
  embedding: Float32Array;
  /**
   * With a detector: the embedding of the pack's own taps alone, the one heads trained before the
   * detector's taps joined (key: the pack's key, e.g. bundled@1) were trained on, so they keep serving
   * until their retrain under the new key is ready.
   */
  packEmbedding?: { key: string; embedding: Float32Array };
  /** When asked for, with a detector: the COCO objects found, scored and with supercategories (see objectClasses). */
  objects?: BuiltinClass[];
  /** With `objects`: each COCO class's best raw detector score (80, COCO order), max over the passes run. */
  objectScores?: Float32Array;
  /** With `objects`: whether the zoomed-out second detector pass ran (detector/zoom-out.ts). */
  zoomedOut?: boolean;
  /** With `objects`: the probability that the picture is a photo of things, not a generated one (detector/photo-gate.ts). */
  photoProbability?: number;
  /** When asked for: the probability that the image is explicit (packs with an explicit head only). */
  explicit?: number;
  /** When asked for: raw ImageNet logits (packs with an ImageNet head only). */
  imagenetLogits?: Float32Array;
  /** When asked for: the colour classes. */
  colors?: BuiltinClass[];
  /** Size of the original picture as viewed. */
  width: number;
  height: number;
}

export interface EmbedderOptions {
  /** ONNX Runtime intra-op threads: 1 per worker when several workers share a machine. */
  threads: number;
  /** Images per inference call (default 16). */
  batchSize?: number;
  /**
   * The CenterNet pack (detector-pack.ts). Its pooled backbone taps join the embedding (key
   * `<pack>+<detector key>`) and its detections name objects; one decode feeds both networks.
   */
  detector?: DetectorPack;
  /**
   * When the detector's zoomed-out second pass runs for `objects` (detector/zoom-out.ts): 'when-needed'
   * (default: the first pass asks for it), 'never' or 'always' (benchmarks measure what it buys).
   */
  zoomOut?: ZoomOutPolicy;
  /**
   * Raw detector score → Watson score for `objects`, and with it the zoom-out's "seen but not named"
   * test; default the fitted OBJECT_CALIBRATION (the fitting script tries its candidates here).
   */
  calibration?: ObjectCalibration;
  /** The photo gate for `objects` (detector/photo-gate.ts); default the fitted OBJECT_PHOTO_GATE. */
  photoGate?: PhotoGate;
}

export type ZoomOutPolicy = 'when-needed' | 'never' | 'always';

/** The detector's thread and how its detections become objects. */
interface DetectorRun {
  pack: DetectorPack;
  inference: InferenceWorker;
  /** The zoomed-out pass's own smaller graph on its own thread, started at its first use (most processes never name objects). */
  zoomInference?: Promise<InferenceWorker>;
  threads: number;
  zoomOut: ZoomOutPolicy;
  calibration: ObjectCalibration;
  photoGate: PhotoGate;
}

/** Told how long each batch's decode (sharp) and each network's run (MobileNetV2 backbone, CenterNet detector) took, in seconds. */
export type StageObserver = (stage: 'decode' | 'backbone' | 'detector', seconds: number) => void;

/**
 * Parts of an analysis beyond the embedding, asked for by name since each costs time: `objects` runs
 * CenterNet's detection head (about half of that network), `explicit` and `imagenetLogits` the pack's
 * layers after its taps, `colors` a pass over the pixels. Without them each network runs only up to its
 * embedding taps.
 */
export type AnalysisPart = 'objects' | 'explicit' | 'imagenetLogits' | 'colors';

/**
 * nsfwjs's softmax classes that depict sexual content explicitly: photographed (porn) or drawn
 * (hentai). "sexy" is suggestive but not explicit, "drawing" and "neutral" are safe. The classes
 * are exclusive, so the sum is the model's probability that an image is explicit.
 */
const EXPLICIT_LABELS = ['porn', 'hentai'];

/**
 * Runs a model pack, and with it the CenterNet detector when given, over images: decode once, batch,
 * infer on both networks at once, and turn outputs into analyses.
 */
export class Embedder {
  /** Key of `embedding`: cached embeddings and trained heads record it. */
  readonly packKey: string;
  /** With a detector: key of `packEmbedding` (the pack's taps alone), which older heads were trained on. */
  readonly packOnlyKey?: string;
  readonly dim: number;
  private readonly explicitIndices: number[];
  /** pixel·scale[c] + offset[c] = (pixel/255 − mean[c]) / std[c] */
  private readonly scale: number[];
  private readonly offset: number[];

  private readonly views: SquareView[];
  private readonly poolFactor: number;

  private constructor(
    readonly manifest: PackManifest,
    /** Inference runs in its own thread, one batch at a time, while this thread decodes the next batch. */
    private readonly inference: InferenceWorker,
    private readonly batchSize: number,
    private readonly decodeConcurrency: number,
    private readonly detector?: DetectorRun,
  ) {
    this.packKey = detector ? `${packKey(manifest)}+${detector.pack.key}` : packKey(manifest);
    if (detector) this.packOnlyKey = packKey(manifest);
    this.dim = manifest.embedding.dim + (detector?.pack.taps.reduce((sum, tap) => sum + tap.dim, 0) ?? 0);
    // With the detector, one square serves both networks: CenterNet's stretched S×S, and the pack's input
    // is its k×k block average (S = k × the pack's size), which an exported model computes the same way.
    this.poolFactor = detector ? detector.pack.inputSize / manifest.input.size : 1;
    this.views = [
      detector ? { size: detector.pack.inputSize, fit: 'fill' } : { size: manifest.input.size, fit: 'cover' },
    ];
    this.scale = manifest.input.std.map((std) => 1 / (255 * std));
    this.offset = manifest.input.mean.map((mean, c) => -mean / manifest.input.std[c]);
    this.explicitIndices = EXPLICIT_LABELS.map((label) => manifest.heads.explicit?.labels.indexOf(label) ?? -1);
  }

  static async create(pack: LoadedPack, options: EmbedderOptions): Promise<Embedder> {
    const batchSize = options.batchSize ?? 16;
    if (!Number.isInteger(options.threads) || options.threads < 1)
      throw new RangeError(`threads must be a positive integer, got ${options.threads}`);
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    const { manifest } = pack;
    const explicitLabels = manifest.heads.explicit?.labels;
    if (explicitLabels && !EXPLICIT_LABELS.every((label) => explicitLabels.includes(label))) {
      throw new PackError(pack.modelPath, `the explicit head's labels must include ${EXPLICIT_LABELS.join(' and ')}`);
    }
    const heads = [manifest.heads.explicit?.output, manifest.heads.imagenet?.output].filter(
      (name): name is string => !!name,
    );
    const inference = await InferenceWorker.create(pack.modelPath, {
      intraOpNumThreads: options.threads,
      cuts: heads.length > 0 ? [manifest.embedding.outputs] : [],
    }).catch((error: unknown) => {
      throw error instanceof MissingOutputsError
        ? new PackError(pack.modelPath, `the model lacks ${error.missing.join(', ')} named in the manifest`)
        : error;
    });
    const wanted = [...manifest.embedding.outputs, ...heads];
    const missing = wanted.filter((name) => !inference.outputNames.includes(name));
    if (!inference.inputNames.includes(manifest.input.name)) missing.unshift(`input ${manifest.input.name}`);
    if (missing.length > 0) {
      await inference.close();
      throw new PackError(pack.modelPath, `the model lacks ${missing.join(', ')} named in the manifest`);
    }
    let detector: DetectorRun | undefined;
    if (options.detector) {
      const pack = options.detector;
      if (!Number.isInteger(pack.inputSize / manifest.input.size)) {
        await inference.close();
        throw new PackError(
          pack.modelPath,
          `the detector's input (${pack.inputSize}) is not a whole multiple of the pack's (${manifest.input.size})`,
        );
      }
      const tapOutputs = pack.taps.map((tap) => tap.output);
      const detectorInference = await InferenceWorker.create(pack.modelPath, {
        intraOpNumThreads: options.threads,
        cuts: [tapOutputs],
      }).catch(async (error: unknown) => {
        await inference.close();
        throw error instanceof MissingOutputsError
          ? new PackError(pack.modelPath, `the detector model lacks ${error.missing.join(', ')} named in its manifest`)
          : error;
      });
      const lacking = [CENTERNET_OUTPUT_NAME, ...pack.taps.map((tap) => tap.output)].filter(
        (name) => !detectorInference.outputNames.includes(name),
      );
      if (!detectorInference.inputNames.includes(CENTERNET_INPUT_NAME))
        lacking.unshift(`input ${CENTERNET_INPUT_NAME}`);
      if (lacking.length > 0) {
        await Promise.all([inference.close(), detectorInference.close()]);
        throw new PackError(pack.modelPath, `the detector model lacks ${lacking.join(', ')} named in its manifest`);
      }
      detector = {
        pack,
        inference: detectorInference,
        threads: options.threads,
        zoomOut: options.zoomOut ?? 'when-needed',
        calibration: options.calibration ?? OBJECT_CALIBRATION,
        photoGate: options.photoGate ?? OBJECT_PHOTO_GATE,
      };
    }
    // Enough decodes in flight to keep libuv's pool busy, few enough to bound memory for huge photos.
    const decodeConcurrency = Math.max(2, Math.min(batchSize, os.availableParallelism() * 2));
    return new Embedder(manifest, inference, batchSize, decodeConcurrency, detector);
  }

  /**
   * Analyses images in input order. An image that cannot be decoded gets its ImageDecodeError in
   * its slot; the others are unaffected. The next batch decodes while the current one runs.
   * `observeStage` is told each batch's decode and model times (metrics of the caller's kind of work).
   * `options.batchSize` (at most the embedder's own) bounds each inference run: background work
   * sharing the thread with classify requests uses small batches, so a classify waits for one
   * small batch rather than a large one. `options.priority` 'background' (uploads, training) lets
   * every classify request waiting on the model threads go first. `options.parts` names what the
   * analyses hold beyond the embedding (default: nothing more); the embedding is the same whatever is asked.
   */
  async analyze(
    images: ImageInput[],
    observeStage: StageObserver = () => undefined,
    options: { batchSize?: number; priority?: InferencePriority; parts?: readonly AnalysisPart[] } = {},
  ): Promise<Array<ImageAnalysis | ImageDecodeError>> {
    const priority = options.priority ?? 'interactive';
    const parts = new Set(options.parts);
    const batchSize = Math.max(1, Math.min(this.batchSize, options.batchSize ?? this.batchSize));
    const results = new Array<ImageAnalysis | ImageDecodeError>(images.length);
    const batches: ImageInput[][] = [];
    for (let start = 0; start < images.length; start += batchSize) batches.push(images.slice(start, start + batchSize));

    let next = batches.length > 0 ? this.decodeBatch(batches[0], observeStage) : undefined;
    let offset = 0;
    for (let b = 0; b < batches.length; b += 1) {
      const decoded = await next!;
      next = b + 1 < batches.length ? this.decodeBatch(batches[b + 1], observeStage) : undefined;
      // If inference throws, the prefetch's own failure must not surface as an unhandled rejection.
      next?.catch(() => undefined);
      const good = decoded.filter((d): d is DecodedImage[] => !(d instanceof ImageDecodeError));
      const analyses = good.length > 0 ? await this.infer(good, observeStage, priority, parts) : [];
      let g = 0;
      decoded.forEach((d, i) => {
        results[offset + i] = d instanceof ImageDecodeError ? d : analyses[g++];
      });
      offset += decoded.length;
    }
    return results;
  }

  /**
   * An uploaded image checked without decoding its pixels where that suffices (format, header, pixel
   * limit, structure), and decoded in full to this embedder's square only when that check flags it:
   * see checkUploadImage. Returns the ImageDecodeError analyze would give it, or undefined. Runs no model.
   */
  checkImage(image: ImageInput): Promise<ImageDecodeError | undefined> {
    return checkUploadImage(image, this.views);
  }

  /** False once a model thread (the pack's or the detector's) has crashed or been closed. */
  get alive(): boolean {
    return this.inference.alive && (this.detector?.inference.alive ?? true);
  }

  async close(): Promise<void> {
    const zoom = this.detector?.zoomInference?.then(
      (worker) => worker.close(),
      () => undefined, // it never started: nothing to close
    );
    await Promise.all([this.inference.close(), this.detector?.inference.close(), zoom]);
  }

  /** Each image decoded once: the pack's square (cover), or with a detector CenterNet's (stretched), which feeds both. */
  private async decodeBatch(
    batch: ImageInput[],
    observeStage: StageObserver,
  ): Promise<Array<DecodedImage[] | ImageDecodeError>> {
    const start = process.hrtime.bigint();
    const decoded = await mapLimited(batch, this.decodeConcurrency, async (image) => {
      try {
        return await decodeImageViews(image.bytes, image.name, this.views);
      } catch (error) {
        if (error instanceof ImageDecodeError) return error;
        throw error;
      }
    });
    observeStage('decode', secondsSince(start));
    return decoded;
  }

  private async infer(
    decoded: DecodedImage[][],
    observeStage: StageObserver,
    priority: InferencePriority,
    parts: Set<AnalysisPart>,
  ): Promise<ImageAnalysis[]> {
    const { manifest } = this;
    const { name, size } = manifest.input;
    const images = decoded.map(([square]) => square);
    const explicitHead = parts.has('explicit') ? manifest.heads.explicit : undefined;
    const imagenetHead = parts.has('imagenetLogits') ? manifest.heads.imagenet : undefined;
    const heads = [explicitHead?.output, imagenetHead?.output].filter((output): output is string => !!output);
    const start = process.hrtime.bigint();
    const running = this.inference.run(
      name,
      { data: this.toNchw(images), dims: [images.length, 3, size, size] },
      [...manifest.embedding.outputs, ...heads],
      priority,
    );
    const observed = <T>(stage: 'backbone' | 'detector', work: Promise<T>): Promise<T> =>
      work.then((result) => {
        observeStage(stage, secondsSince(start));
        return result;
      });
    // CenterNet's graph takes one image: each goes as its own request, all queued at once on the detector's thread.
    const detecting =
      this.detector &&
      observed('detector', Promise.all(images.map((image) => this.detect(image, priority, parts.has('objects')))));
    const colors = parts.has('colors') ? images.map(colorClasses) : undefined; // while the workers infer
    const [outputs, detected] = await Promise.all([observed('backbone', running), detecting]);
    const data = (outputName: string): Float32Array => outputs[outputName].data;
    const embeddingParts = manifest.embedding.outputs.map(data);
    const explicitProbs = explicitHead && data(explicitHead.output);
    const imagenetLogits = imagenetHead && data(imagenetHead.output);
    return images.map((image, i) => {
      const packParts = embeddingParts.map((part) => slice(part, i, images.length));
      const analysis: ImageAnalysis = {
        embedding: this.embedding([...packParts, ...(detected?.[i].taps ?? [])]),
        width: image.width,
        height: image.height,
      };
      if (colors) analysis.colors = colors[i];
      if (detected)
        analysis.packEmbedding = {
          key: packKey(manifest),
          embedding: this.embedding(packParts, manifest.embedding.dim),
        };
      const found = detected?.[i];
      if (found?.objects) {
        const { scores, photo, zoomedOut } = found.objects;
        analysis.objects = objectClasses(scores, this.detector!.calibration, photo);
        analysis.objectScores = scores;
        analysis.zoomedOut = zoomedOut;
        analysis.photoProbability = photo;
      }
      if (explicitProbs) {
        const per = explicitProbs.length / images.length;
        analysis.explicit = Math.min(
          1,
          this.explicitIndices.reduce((sum, k) => sum + explicitProbs[i * per + k], 0),
        );
      }
      if (imagenetLogits) {
        const per = imagenetLogits.length / images.length;
        analysis.imagenetLogits = Float32Array.from(imagenetLogits.subarray(i * per, (i + 1) * per));
      }
      return analysis;
    });
  }

  /**
   * One image through CenterNet: its pooled taps, in the pack's order, and with `withDetections` each
   * COCO class's best raw score, over the zoomed-out second pass too when it runs (zoom-out.ts), and the
   * photo gate's probability (photo-gate.ts); without, only the backbone up to the taps runs. A picture
   * the gate calls generated is never zoomed out: no object of it can reach 0.5 whatever the detector says.
   */
  private async detect(
    image: DecodedImage,
    priority: InferencePriority,
    withDetections: boolean,
  ): Promise<{ objects?: { scores: Float32Array; photo: number; zoomedOut: boolean }; taps: Float32Array[] }> {
    const { pack, inference, zoomOut, calibration, photoGate } = this.detector!;
    const size = pack.inputSize;
    const taps = pack.taps.map((tap) => tap.output);
    // The graph takes sharp's interleaved RGB as it is (NHWC), as floats 0–255.
    const outputs = await inference.run(
      CENTERNET_INPUT_NAME,
      { data: Float32Array.from(image.rgb), dims: [1, size, size, 3] },
      withDetections ? [CENTERNET_OUTPUT_NAME, ...taps] : taps,
      priority,
    );
    const tapValues = taps.map((output) => outputs[output].data);
    if (!withDetections) return { taps: tapValues };
    const detections = this.checkedDetections(outputs[CENTERNET_OUTPUT_NAME].data);
    const photo = photoProbability(photoGate, gateInput(tapValues));
    const zoom =
      zoomOut === 'always' ||
      (zoomOut === 'when-needed' && photo >= 0.5 && needsZoomOut(detections, size, calibration));
    if (!zoom) return { objects: { scores: bestRawScores(detections), photo, zoomedOut: false }, taps: tapValues };
    const zoomSize = pack.zoomOut.inputSize;
    const second = await (
      await this.zoomInference()
    ).run(
      CENTERNET_INPUT_NAME,
      { data: zoomedOut(image.rgb, size, image.width, image.height, zoomSize), dims: [1, zoomSize, zoomSize, 3] },
      [CENTERNET_OUTPUT_NAME],
      priority,
    );
    const zoomed = this.checkedDetections(second[CENTERNET_OUTPUT_NAME].data);
    return { objects: { scores: bestRawScores(detections, zoomed), photo, zoomedOut: true }, taps: tapValues };
  }

  /** The zoomed-out pass's thread, started on first use; a failed start is retried at the next use. */
  private zoomInference(): Promise<InferenceWorker> {
    const run = this.detector!;
    if (!run.zoomInference) {
      run.zoomInference = InferenceWorker.create(run.pack.zoomOut.modelPath, { intraOpNumThreads: run.threads });
      run.zoomInference.catch(() => (run.zoomInference = undefined));
    }
    return run.zoomInference;
  }

  private checkedDetections(detections: Float32Array): Float32Array {
    if (detections.length !== CENTERNET_MAX_DETECTIONS * DETECTION_ROW) {
      throw new Error(
        `${this.detector!.pack.modelPath}: expected ${CENTERNET_MAX_DETECTIONS}×${DETECTION_ROW} detection values, got ${detections.length}`,
      );
    }
    return detections;
  }

  /** HWC uint8 pixels of each image into one normalised NCHW float batch at the pack's size (k×k block means of larger squares). */
  private toNchw(images: DecodedImage[]): Float32Array {
    const size = this.manifest.input.size;
    const plane = size ** 2;
    const k = this.poolFactor;
    const out = new Float32Array(images.length * 3 * plane);
    images.forEach((image, n) => {
      const { rgb } = image;
      const row = image.size * 3;
      for (let c = 0; c < 3; c += 1) {
        const scale = this.scale[c] / (k * k);
        const offset = this.offset[c];
        const base = (n * 3 + c) * plane;
        if (k === 1) {
          for (let p = 0, src = c; p < plane; p += 1, src += 3) out[base + p] = rgb[src] * this.scale[c] + offset;
          continue;
        }
        for (let y = 0; y < size; y += 1) {
          for (let x = 0; x < size; x += 1) {
            let sum = 0;
            for (let dy = 0; dy < k; dy += 1)
              for (let dx = 0; dx < k; dx += 1) sum += rgb[(y * k + dy) * row + (x * k + dx) * 3 + c];
            out[base + y * size + x] = sum * scale + offset;
          }
        }
      }
    });
    return out;
  }

  /** Each tap L2-normalised, concatenated, and the whole L2-normalised again. */
  private embedding(parts: Float32Array[], dim = this.dim): Float32Array {
    const out = new Float32Array(dim);
    let at = 0;
    for (const part of parts) {
      if (at + part.length > dim)
        throw new PackError(this.packKey, `embedding outputs hold more than the manifests' dim ${dim}`);
      const norm = l2Norm(part);
      for (let j = 0; j < part.length; j += 1) out[at + j] = norm > 0 ? part[j] / norm : 0;
      at += part.length;
    }
    if (at !== dim) throw new PackError(this.packKey, `embedding outputs hold ${at} values, the manifests say ${dim}`);
    const norm = l2Norm(out);
    if (norm > 0) for (let j = 0; j < out.length; j += 1) out[j] /= norm;
    return out;
  }
}

/** Image `index`'s share of a batched output. */
function slice(output: Float32Array, index: number, batch: number): Float32Array {
  const per = output.length / batch;
  return output.subarray(index * per, (index + 1) * per);
}

function l2Norm(values: Float32Array): number {
  let sum = 0;
  for (let j = 0; j < values.length; j += 1) sum += values[j] * values[j];
  return Math.sqrt(sum);
}

/** Like Promise.all(items.map(fn)) with at most `limit` calls in flight. */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let nextIndex = 0;
  const worker = async (): Promise<void> => {
    while (nextIndex < items.length) {
      const index = nextIndex;
      nextIndex += 1;
      results[index] = await fn(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
