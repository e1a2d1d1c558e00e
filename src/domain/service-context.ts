import type { Config } from '../config';
import type { CallbackRepository } from '../data-access/db/callback-repository';
import type { ClassifierRepository } from '../data-access/db/classifier-repository';
import type { VersionRepository } from '../data-access/db/version-repository';
import type { ExampleRepository } from '../data-access/db/example-repository';
import type { HeadStore } from '../data-access/files/head-store';
import type { ImageClaims } from '../data-access/db/image-claims';
import type { ImageStore } from '../data-access/files/image-store';
import type { PendingZipRepository } from '../data-access/db/pending-zip-repository';
import type { PendingZipStore } from '../data-access/files/pending-zip-store';
import type { TrainingQueue } from '../data-access/redis/training-queue';
import type { VersionLeaseReader } from '../data-access/redis/version-leases';
import type { Logger } from '../logger';
import type { Embedder } from '../ml';
import type { EmbeddingCache } from '../data-access/db/embedding-cache';

/** What the use cases need from the outside world. */
export interface ServiceContext {
  config: Config;
  classifiers: ClassifierRepository;
  versions: VersionRepository;
  /** A classifier's examples for review: pages, scores, removal and moves (issue 23). */
  examples: ExampleRepository;
  /** Callback secrets per owner (training-end callbacks). */
  callbacks: CallbackRepository;
  images: ImageStore;
  /** Zips accepted and not yet extracted into `images`: their rows (classifier, customer, entry table)… */
  pendingZips: PendingZipRepository;
  /** …and their files. */
  pendingFiles: PendingZipStore;
  heads: HeadStore;
  /** The versions classify requests of any process hold: retention and the orphan sweep spare them. */
  leases: VersionLeaseReader;
  queue: TrainingQueue;
  /** Claims on images of uploads in flight, so a removal (in any process) never races an upload. */
  imageClaims: ImageClaims;
  /** Decodes and embeds example images at upload, so what is accepted is exactly what can train. */
  embedder: Embedder;
  /** Where upload-time embeddings go; the training worker reads them instead of decoding again. */
  embeddings: EmbeddingCache;
  logger: Logger;
  now: () => string;
}
