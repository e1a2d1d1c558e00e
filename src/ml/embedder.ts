import os from 'node:os';
import { colorClasses } from './color-classes';
import { decodeImage, ImageDecodeError, type DecodedImage } from './decode-image';
import { InferenceWorker } from './inference-worker';
import { PackError, type LoadedPack } from './model-pack';
import { packKey, type BuiltinClass, type ImageInput, type PackManifest } from './types';

export interface ImageAnalysis {
  /** L2-normalised embedding of `dim` values. */
  embedding: Float32Array;
  /** Probability that the image is explicit (packs with an explicit head only). */
  explicit?: number;
  /** Raw ImageNet logits (packs with an ImageNet head only). */
  imagenetLogits?: Float32Array;
  colors: BuiltinClass[];
  /** Size of the original picture as viewed. */
  width: number;
  height: number;
}

export interface EmbedderOptions {
  /** ONNX Runtime intra-op threads: 1 per worker when several workers share a machine. */
  threads: number;
  /** Images per inference call (default 16). */
  batchSize?: number;
}

/** Told how long each batch's decode (sharp) and model run took, in seconds. */
export type StageObserver = (stage: 'decode' | 'backbone', seconds: number) => void;

const secondsSince = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;

/**
 * nsfwjs's softmax classes that depict sexual content explicitly: photographed (porn) or drawn
 * (hentai). "sexy" is suggestive but not explicit, "drawing" and "neutral" are safe. The classes
 * are exclusive, so the sum is the model's probability that an image is explicit.
 */
const EXPLICIT_LABELS = ['porn', 'hentai'];

/** Runs a model pack over images: decode, batch, infer, and turn outputs into analyses. */
export class Embedder {
  readonly packKey: string;
  readonly dim: number;
  private readonly explicitIndices: number[];
  /** pixel·scale[c] + offset[c] = (pixel/255 − mean[c]) / std[c] */
  private readonly scale: number[];
  private readonly offset: number[];

  private constructor(
    readonly manifest: PackManifest,
    /** Inference runs in its own thread, one batch at a time, while this thread decodes the next batch. */
    private readonly inference: InferenceWorker,
    private readonly batchSize: number,
    private readonly decodeConcurrency: number,
  ) {
    this.packKey = packKey(manifest);
    this.dim = manifest.embedding.dim;
    this.scale = manifest.input.std.map((std) => 1 / (255 * std));
    this.offset = manifest.input.mean.map((mean, c) => -mean / manifest.input.std[c]);
    this.explicitIndices = EXPLICIT_LABELS.map((label) => manifest.heads.explicit?.labels.indexOf(label) ?? -1);
  }

  static async create(pack: LoadedPack, options: EmbedderOptions): Promise<Embedder> {
    const batchSize = options.batchSize ?? 16;
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new RangeError(`threads must be a positive integer, got ${options.threads}`);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    const { manifest } = pack;
    const explicitLabels = manifest.heads.explicit?.labels;
    if (explicitLabels && !EXPLICIT_LABELS.every((label) => explicitLabels.includes(label))) {
      throw new PackError(pack.modelPath, `the explicit head's labels must include ${EXPLICIT_LABELS.join(' and ')}`);
    }
    const inference = await InferenceWorker.create(pack.modelPath, { intraOpNumThreads: options.threads });
    const wanted = [...manifest.embedding.outputs, manifest.heads.explicit?.output, manifest.heads.imagenet?.output].filter((name): name is string => !!name);
    const missing = wanted.filter((name) => !inference.outputNames.includes(name));
    if (!inference.inputNames.includes(manifest.input.name)) missing.unshift(`input ${manifest.input.name}`);
    if (missing.length > 0) {
      await inference.close();
      throw new PackError(pack.modelPath, `the model lacks ${missing.join(', ')} named in the manifest`);
    }
    // Enough decodes in flight to keep libuv's pool busy, few enough to bound memory for huge photos.
    const decodeConcurrency = Math.max(2, Math.min(batchSize, os.availableParallelism() * 2));
    return new Embedder(manifest, inference, batchSize, decodeConcurrency);
  }

  /**
   * Analyses images in input order. An image that cannot be decoded gets its ImageDecodeError in
   * its slot; the others are unaffected. The next batch decodes while the current one runs.
   * `observeStage` is told each batch's decode and model times (metrics of the caller's kind of work).
   * `options.batchSize` (at most the embedder's own) bounds each inference run: background work
   * sharing the thread with classify requests uses small batches, so a classify waits for one
   * small batch rather than a large one.
   */
  async analyze(
    images: ImageInput[],
    observeStage: StageObserver = () => undefined,
    options: { batchSize?: number } = {},
  ): Promise<Array<ImageAnalysis | ImageDecodeError>> {
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
      const good = decoded.filter((d): d is DecodedImage => !(d instanceof ImageDecodeError));
      const analyses = good.length > 0 ? await this.infer(good, observeStage) : [];
      let g = 0;
      decoded.forEach((d, i) => {
        results[offset + i] = d instanceof ImageDecodeError ? d : analyses[g++];
      });
      offset += decoded.length;
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

  private async decodeBatch(batch: ImageInput[], observeStage: StageObserver): Promise<Array<DecodedImage | ImageDecodeError>> {
    const size = this.manifest.input.size;
    const start = process.hrtime.bigint();
    const decoded = await mapLimited(batch, this.decodeConcurrency, async (image) => {
      try {
        return await decodeImage(image.bytes, image.name, size);
      } catch (error) {
        if (error instanceof ImageDecodeError) return error;
        throw error;
      }
    });
    observeStage('decode', secondsSince(start));
    return decoded;
  }

  private async infer(images: DecodedImage[], observeStage: StageObserver): Promise<ImageAnalysis[]> {
    const { manifest } = this;
    const { name, size } = manifest.input;
    const heads = [manifest.heads.explicit?.output, manifest.heads.imagenet?.output].filter((output): output is string => !!output);
    const start = process.hrtime.bigint();
    const running = this.inference.run(name, { data: this.toNchw(images), dims: [images.length, 3, size, size] }, [...manifest.embedding.outputs, ...heads]);
    const colors = images.map(colorClasses); // while the worker infers
    const outputs = await running;
    observeStage('backbone', secondsSince(start));
    const data = (outputName: string): Float32Array => outputs[outputName].data;
    const embeddingParts = manifest.embedding.outputs.map(data);
    const explicitProbs = manifest.heads.explicit && data(manifest.heads.explicit.output);
    const imagenetLogits = manifest.heads.imagenet && data(manifest.heads.imagenet.output);
    return images.map((image, i) => {
      const analysis: ImageAnalysis = {
        embedding: this.embedding(embeddingParts, i, images.length),
        colors: colors[i],
        width: image.width,
        height: image.height,
      };
      if (explicitProbs) {
        const per = explicitProbs.length / images.length;
        analysis.explicit = Math.min(1, this.explicitIndices.reduce((sum, k) => sum + explicitProbs[i * per + k], 0));
      }
      if (imagenetLogits) {
        const per = imagenetLogits.length / images.length;
        analysis.imagenetLogits = Float32Array.from(imagenetLogits.subarray(i * per, (i + 1) * per));
      }
      return analysis;
    });
  }

  /** HWC uint8 pixels of each image into one normalised NCHW float batch. */
  private toNchw(images: DecodedImage[]): Float32Array {
    const plane = this.manifest.input.size ** 2;
    const out = new Float32Array(images.length * 3 * plane);
    images.forEach((image, n) => {
      const { rgb } = image;
      for (let c = 0; c < 3; c += 1) {
        const scale = this.scale[c];
        const offset = this.offset[c];
        const base = (n * 3 + c) * plane;
        for (let p = 0, src = c; p < plane; p += 1, src += 3) out[base + p] = rgb[src] * scale + offset;
      }
    });
    return out;
  }

  /** Each output's slice L2-normalised, concatenated, and the whole L2-normalised again. */
  private embedding(parts: Float32Array[], index: number, batch: number): Float32Array {
    const out = new Float32Array(this.dim);
    let at = 0;
    for (const part of parts) {
      const per = part.length / batch;
      if (at + per > this.dim) throw new PackError(this.packKey, `embedding outputs hold more than the manifest's dim ${this.dim}`);
      const slice = part.subarray(index * per, (index + 1) * per);
      const norm = l2Norm(slice);
      for (let j = 0; j < per; j += 1) out[at + j] = norm > 0 ? slice[j] / norm : 0;
      at += per;
    }
    if (at !== this.dim) throw new PackError(this.packKey, `embedding outputs hold ${at} values, the manifest says ${this.dim}`);
    const norm = l2Norm(out);
    if (norm > 0) for (let j = 0; j < out.length; j += 1) out[j] /= norm;
    return out;
  }
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
