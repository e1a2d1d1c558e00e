import IORedis from 'ioredis';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import type { Store } from 'express-rate-limit';

/** The rate limiter's counters in the instance's Redis, shared by all its API processes. */
export interface RateLimitStore {
  store: Store;
  close(): Promise<void>;
}

/**
 * A store for express-rate-limit that keeps each owner's count under
 * `<instance namespace>:rate-limit:<owner>` (rate-limit-redis: one Lua INCR with the window as its
 * expiry), so the limit an owner meets is the same however many API processes, on however many
 * machines, answer. Connects before returning, so the store's scripts load at once.
 *
 * Its own connection without an offline queue: while Redis is down a count fails at once, and the
 * limiter lets the request through (see expensiveRequestLimit) instead of holding it.
 */
export async function openRateLimitStore(redisUrl: string, namespace: string): Promise<RateLimitStore> {
  const redis = new IORedis(redisUrl, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
  });
  // Errors surface through the commands; ioredis reconnects on its own.
  redis.on('error', () => undefined);
  await redis.connect();
  const store = new RedisStore({
    prefix: `${namespace}:rate-limit:`,
    sendCommand: (command: string, ...args: string[]) => redis.call(command, ...args) as Promise<RedisReply>,
  });
  return {
    store,
    close: async () => {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
