import type { Config } from '../config';
import type { CallbackRepository } from '../data-access/callback-repository';
import type { ClassifierRepository } from '../data-access/classifier-repository';
import type { HeadStore } from '../data-access/head-store';
import type { ImageStore } from '../data-access/image-store';
import type { TrainingQueue } from '../data-access/training-queue';
import type { AsyncLock } from '../lib/async-lock';
import type { Logger } from '../logger';
import type { Embedder } from '../ml/embedder';
import type { EmbeddingCache } from '../ml/embedding-cache';

/** What the use cases need from the outside world. */
export interface ServiceContext {
  config: Config;
  classifiers: ClassifierRepository;
  /** Callback secrets per owner (training-end callbacks). */
  callbacks: CallbackRepository;
  images: ImageStore;
  heads: HeadStore;
  queue: TrainingQueue;
  /** Serialises storing example images with removing unreferenced ones, so a removal never races an upload. */
  imageLock: AsyncLock;
  /** Decodes and embeds example images at upload, so what is accepted is exactly what can train. */
  embedder: Embedder;
  /** Where upload-time embeddings go; the training worker reads them instead of decoding again. */
  embeddings: EmbeddingCache;
  logger: Logger;
  now: () => string;
}
