import { deserializeHead, type TrainedHead } from '../../ml';
import type { HeadStore } from './head-store';

/** What names one head file for ever: a version of a classifier, stored under a file name written once. */
export interface HeadRef {
  id: number;
  classifierId: string;
  headFile: string;
}

/** Memory a loaded head holds: its arrays (the k-NN gate's stored positives dominate). */
export function headBytes(head: TrainedHead): number {
  return (
    head.center.byteLength + head.weights.byteLength + head.bias.byteLength + (head.gate?.positives.byteLength ?? 0)
  );
}

/** A head unused this long is dropped: see HeadCache. */
const MAX_IDLE_MS = 5 * 60_000;

interface Entry {
  versionId: number;
  head: Promise<TrainedHead>;
  bytes: number;
  /** When a request last asked for it (the cache's clock). */
  usedAt: number;
}

/**
 * Loaded heads, least recently used evicted first once they hold more than `maxBytes` (a head with
 * a k-NN gate carries up to 200 stored positives per class, megabytes per class, so a count of
 * entries would not bound the memory), and any head no request asked for in `maxIdleMs`. Most heads
 * stop being asked for for ever: a retrain replaces the version, a delete the classifier (in any
 * process), and only an idle limit lets this process know; without it the cache would fill up to
 * `maxBytes` with heads nobody can ask for. The key is the whole identity of the version (its id, its
 * classifier and its head file, whose name carries a random part), not the version id alone: a
 * cache must not trust a single number to name one thing for ever, even though version ids are no
 * longer reused. The classifier's current version is read from the database on every request,
 * which is how a swap made by the worker process reaches this process at once. A version removed
 * (customer data deleted), pruned or deleted with its classifier can no longer be asked for; its
 * head leaves memory through forget(), which the classify use case calls with what the database
 * logged since its last request (see VersionRepository.forgottenSince).
 */
export class HeadCache {
  /** In order of use, least recent first (a Map keeps insertion order; a use re-inserts). */
  private readonly entries = new Map<string, Entry>();
  private totalBytes = 0;
  private lastForgotten: number | undefined;
  private readonly maxIdleMs: number;
  private readonly now: () => number;

  constructor(
    private readonly store: HeadStore,
    private readonly maxBytes = 256 * 1024 * 1024,
    options: { maxIdleMs?: number; now?: () => number } = {},
  ) {
    this.maxIdleMs = options.maxIdleMs ?? MAX_IDLE_MS;
    this.now = options.now ?? (() => performance.now());
  }

  /** Bytes held by the loaded heads (for tests and metrics). */
  get size(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.totalBytes };
  }

  get(version: HeadRef): Promise<TrainedHead> {
    const now = this.now();
    this.dropIdle(now);
    const key = JSON.stringify([version.id, version.classifierId, version.headFile]);
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      hit.usedAt = now;
      this.entries.set(key, hit);
      return hit.head;
    }
    const entry: Entry = {
      versionId: version.id,
      head: this.store.read(version.headFile).then((bytes) => deserializeHead(bytes, version.headFile)),
      bytes: 0,
      usedAt: now,
    };
    this.entries.set(key, entry);
    entry.head.then(
      (head) => {
        if (this.entries.get(key) !== entry) return; // evicted while loading
        entry.bytes = headBytes(head);
        this.totalBytes += entry.bytes;
        this.evict(key);
      },
      () => this.remove(key, entry),
    );
    return entry.head;
  }

  /** The last forgotten-heads log entry this cache has applied (see forget); undefined before the first. */
  get forgottenUpTo(): number | undefined {
    return this.lastForgotten;
  }

  /** Drops the heads of these versions, and records `upTo` as the last forgotten-heads log entry applied. */
  forget(versionIds: number[], upTo: number): void {
    const gone = new Set(versionIds);
    for (const [key, entry] of this.entries) if (gone.has(entry.versionId)) this.remove(key, entry);
    this.lastForgotten = Math.max(this.lastForgotten ?? 0, upTo);
  }

  /** Drops the heads unused for longer than maxIdleMs: the least recently used come first. */
  private dropIdle(now: number): void {
    for (const [key, entry] of this.entries) {
      if (now - entry.usedAt <= this.maxIdleMs) return;
      this.remove(key, entry);
    }
  }

  /** Drops least recently used heads until the total fits, never the one just loaded. */
  private evict(keep: string): void {
    for (const [key, entry] of this.entries) {
      if (this.totalBytes <= this.maxBytes) return;
      if (key !== keep) this.remove(key, entry);
    }
  }

  private remove(key: string, entry: Entry): void {
    if (this.entries.get(key) !== entry) return;
    this.entries.delete(key);
    this.totalBytes -= entry.bytes;
  }
}
