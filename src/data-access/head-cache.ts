import { deserializeHead, type TrainedHead } from '../ml/heads';
import type { HeadStore } from './head-store';

/**
 * Loaded heads by version id. Versions are immutable, so an entry never goes stale; the
 * classifier's current version id is read from the database on every request, which is how a
 * swap made by the worker process reaches this process at once.
 */
export class HeadCache {
  private readonly entries = new Map<number, Promise<TrainedHead>>();

  constructor(
    private readonly store: HeadStore,
    private readonly maxEntries = 500,
  ) {}

  get(versionId: number, headFile: string): Promise<TrainedHead> {
    const hit = this.entries.get(versionId);
    if (hit) {
      // Map order is insertion order: re-inserting marks it as most recently used.
      this.entries.delete(versionId);
      this.entries.set(versionId, hit);
      return hit;
    }
    const loading = this.store.read(headFile).then((bytes) => deserializeHead(bytes, headFile));
    loading.catch(() => this.entries.delete(versionId));
    this.entries.set(versionId, loading);
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    return loading;
  }
}
