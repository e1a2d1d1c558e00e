import type { Config } from '../config';
import type { CallbackRepository } from '../data-access/callback-repository';
import type { ClassifierRepository } from '../data-access/classifier-repository';
import type { HeadStore } from '../data-access/head-store';
import type { ImageStore } from '../data-access/image-store';
import type { TrainingQueue } from '../data-access/training-queue';
import type { AsyncLock } from '../lib/async-lock';
import type { Logger } from '../logger';

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
  logger: Logger;
  now: () => string;
}
