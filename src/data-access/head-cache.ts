import { deserializeHead, type TrainedHead } from '../ml/heads';
import type { HeadStore } from './head-store';

/** What names one head file for ever: a version of a classifier, stored under a file name written once. */
export interface HeadRef {
  id: number;
  classifierId: string;
  headFile: string;
}

/**
 * Loaded heads. The key is the whole identity of the version (its id, its classifier and its
 * head file, whose name carries a random part), not the version id alone: a cache must not trust
 * a single number to name one thing for ever, even though version ids are no longer reused.
 * The classifier's current version is read from the database on every request, which is how a
 * swap made by the worker process reaches this process at once.
 */
export class HeadCache {
  private readonly entries = new Map<string, Promise<TrainedHead>>();

  constructor(
    private readonly store: HeadStore,
    private readonly maxEntries = 500,
  ) {}

  get(version: HeadRef): Promise<TrainedHead> {
    const key = JSON.stringify([version.id, version.classifierId, version.headFile]);
    const hit = this.entries.get(key);
    if (hit) {
      // Map order is insertion order: re-inserting marks it as most recently used.
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const loading = this.store.read(version.headFile).then((bytes) => deserializeHead(bytes, version.headFile));
    loading.catch(() => this.entries.delete(key));
    this.entries.set(key, loading);
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    return loading;
  }
}
