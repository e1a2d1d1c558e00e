import IORedis from 'ioredis';
import { isSnapshot, type MetricsSnapshot, type ProcessMetrics } from '../../lib/metrics';
import type { Logger } from '../../logger';
import { withTimeout } from '../../lib/timeout';

const SCAN_BATCH = 100;

/**
 * Carries every process's metrics to whichever API process is scraped, through the instance's
 * Redis: each training worker and each API process (on this machine or another sharing the Redis)
 * writes its registry snapshot under `<queue prefix>:metrics:<host/pid>` with a TTL, and the
 * scraped API process reads all of them. A process that dies stops refreshing its key and drops
 * out when the TTL runs out.
 *
 * Its own connection without an offline queue: while Redis is down every command fails at once
 * instead of waiting for a reconnect, so neither a scrape nor a readiness check hangs.
 */
export class MetricsExchange {
  private readonly redis: IORedis;
  private readonly keyPrefix: string;

  constructor(redisUrl: string, queuePrefix: string) {
    this.redis = new IORedis(redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000 });
    // Errors surface through the commands; ioredis reconnects on its own.
    this.redis.on('error', () => undefined);
    this.keyPrefix = `${queuePrefix}:metrics:`;
  }

  /** Resolves once connected (at most `timeoutMs`), so the first publish or check does not fail for want of a connection. */
  async ready(timeoutMs = 2000): Promise<void> {
    if (this.redis.status === 'ready') return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.redis.once('ready', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Writes one process's snapshot; it expires after `ttlSeconds` unless written again. */
  async publish(instance: string, snapshot: MetricsSnapshot, ttlSeconds: number): Promise<void> {
    await this.redis.set(this.keyPrefix + instance, JSON.stringify(snapshot), 'EX', ttlSeconds);
  }

  /** Removes a process's snapshot (on a clean stop). */
  async withdraw(instance: string): Promise<void> {
    await this.redis.del(this.keyPrefix + instance);
  }

  /** Every snapshot published and not yet expired, with its process (`host/pid`); values that are not snapshots are skipped. */
  async collect(): Promise<Array<{ instance: string; snapshot: MetricsSnapshot }>> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.redis.scan(cursor, 'MATCH', `${this.keyPrefix}*`, 'COUNT', SCAN_BATCH);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    if (keys.length === 0) return [];
    const values = await this.redis.mget(...keys);
    const snapshots: Array<{ instance: string; snapshot: MetricsSnapshot }> = [];
    for (const [i, value] of values.entries()) {
      if (value === null) continue; // expired between SCAN and MGET
      try {
        const parsed: unknown = JSON.parse(value);
        if (isSnapshot(parsed)) snapshots.push({ instance: keys[i].slice(this.keyPrefix.length), snapshot: parsed });
      } catch {
        // not ours
      }
    }
    return snapshots;
  }

  /** Throws unless Redis answers PING within `timeoutMs`. */
  async ping(timeoutMs = 1000): Promise<void> {
    await withTimeout(this.redis.ping(), timeoutMs, 'Redis');
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/**
 * Publishes a process's metrics now and every `intervalMs` (living three intervals, so one missed
 * write does not drop the process from a scrape). Failures (Redis down) are logged at debug level:
 * the next tick tries again.
 */
export function publishPeriodically(
  exchange: MetricsExchange,
  metrics: ProcessMetrics,
  intervalMs: number,
  logger: Logger,
): { publishNow(): Promise<void>; stop(): Promise<void> } {
  const ttlSeconds = Math.max(1, Math.ceil((3 * intervalMs) / 1000));
  const publishNow = async () => {
    try {
      await exchange.publish(metrics.instance, await metrics.publishedSnapshot(), ttlSeconds);
    } catch (err) {
      logger.debug({ err }, 'could not publish metrics');
    }
  };
  const timer = setInterval(() => void publishNow(), intervalMs);
  timer.unref();
  void exchange.ready().then(publishNow);
  return {
    publishNow,
    async stop() {
      clearInterval(timer);
      await exchange.withdraw(metrics.instance).catch(() => undefined);
    },
  };
}
