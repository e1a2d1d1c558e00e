import os from 'node:os';
import IORedis from 'ioredis';
import { StartupError } from '../../errors';

interface Claim {
  instanceId: string;
  database: string;
  /** For the message only: where the claiming process runs. */
  host: string;
  path: string;
}

/** A second database claims a namespace that another live database holds (it is a copy of it). */
export class NamespaceInUseError extends StartupError {}

/** How long a claim lives without a refresh, and how often every process of the instance refreshes it. */
export const CLAIM_TTL_MS = 30_000;
export const CLAIM_REFRESH_MS = 10_000;

/**
 * Holds the instance's claim on its Redis namespace while a process runs: a key with a TTL,
 * refreshed by every process of the instance. A process whose database is another one than the
 * claim's (a copied data directory has the same identity) refuses to start, since both would take
 * each other's jobs; once the other stops, its claim expires and the namespace is free.
 */
export class NamespaceClaim {
  private timer?: NodeJS.Timeout;

  private constructor(
    private readonly redis: IORedis,
    private readonly key: string,
    private readonly value: string,
  ) {}

  /**
   * Claims `namespace` for the database, or throws NamespaceInUseError naming the holder.
   * @param redisUrl the Redis the queue uses
   */
  static async acquire(
    redisUrl: string,
    namespace: string,
    claim: { instanceId: string; database: string; path: string },
  ): Promise<NamespaceClaim> {
    const redis = new IORedis(redisUrl, { maxRetriesPerRequest: 3, lazyConnect: true });
    await redis.connect();
    const key = `${namespace}:instance`;
    const value = JSON.stringify({ ...claim, host: os.hostname() } satisfies Claim);
    try {
      const taken = await redis.set(key, value, 'PX', CLAIM_TTL_MS, 'NX');
      if (taken === null) {
        const held = await redis.get(key);
        const holder = held ? (JSON.parse(held) as Claim) : undefined;
        if (holder && holder.database !== claim.database) {
          throw new NamespaceInUseError(
            `The Redis namespace '${namespace}' is in use by another database with this instance's identity ` +
              `(${holder.path} on ${holder.host}), not this one (${claim.path}). If the other processes of this instance use ` +
              `that database, start this one with the same DATABASE_URL. Otherwise this data directory is a copy of it: stop the other ` +
              `instance, or give this one its own namespace with another QUEUE_PREFIX or REDIS_URL.`,
          );
        }
        await redis.set(key, value, 'PX', CLAIM_TTL_MS);
      }
    } catch (error) {
      redis.disconnect();
      throw error;
    }
    const held = new NamespaceClaim(redis, key, value);
    held.timer = setInterval(
      () => void redis.set(key, value, 'PX', CLAIM_TTL_MS).catch(() => undefined),
      CLAIM_REFRESH_MS,
    );
    held.timer.unref();
    return held;
  }

  /** Stops refreshing; the claim expires by itself, since other processes of the instance may still hold it. */
  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
