import os from 'node:os';
import IORedis from 'ioredis';
import { CLAIM_REFRESH_MS, CLAIM_TTL_MS } from './namespace-claim';

/** What Redis says about the instance's processes. */
export type InstanceActivity =
  /** Redis could not be asked; whether a process runs is unknown. */
  | { state: 'unknown'; reason: string }
  /** A process refreshed the instance's namespace claim while we watched. */
  | { state: 'running'; key: string; holder: string }
  /** No claim, or only claims nobody refreshes any more (processes stopped less than CLAIM_TTL_MS ago). */
  | { state: 'stopped'; staleClaims: number };

/** How long a claim is watched for a refresh: every live process refreshes it each CLAIM_REFRESH_MS. */
export const CLAIM_WATCH_MS = CLAIM_REFRESH_MS + 5_000;

function connect(redisUrl: string): IORedis {
  const redis = new IORedis(redisUrl, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 3_000,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  redis.on('error', () => undefined);
  return redis;
}

/**
 * Tells whether any process of the instance runs, from its Redis namespace claims (see
 * NamespaceClaim in namespace-claim.ts): every API and worker process refreshes the key
 * `<QUEUE_PREFIX>:<instance id>:instance` each CLAIM_REFRESH_MS, and a stopped one leaves it to
 * expire. Claims under any QUEUE_PREFIX count. A claim found is watched for up to CLAIM_WATCH_MS
 * (15 s): refreshed means running; gone or never refreshed means its processes have stopped.
 * @param onWatch called once before watching a claim, to say why this waits
 */
export async function instanceActivity(
  redisUrl: string,
  instanceId: string,
  onWatch: (key: string) => void = () => undefined,
): Promise<InstanceActivity> {
  const redis = connect(redisUrl);
  try {
    await redis.connect();
  } catch (error) {
    redis.disconnect();
    return { state: 'unknown', reason: error instanceof Error ? error.message : String(error) };
  }
  try {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `*:${instanceId}:instance`, 'COUNT', 1000);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
    if (keys.length === 0) return { state: 'stopped', staleClaims: 0 };
    onWatch(keys[0]);
    const lastTtl = new Map<string, number>();
    const deadline = Date.now() + CLAIM_WATCH_MS;
    while (Date.now() < deadline) {
      for (const key of keys) {
        const ttl = await redis.pttl(key);
        const before = lastTtl.get(key);
        // A refresh sets the TTL back to CLAIM_TTL_MS: it rises instead of running down.
        if (ttl > 0 && before !== undefined && ttl > before + 1_000) {
          return { state: 'running', key, holder: describeHolder(await redis.get(key)) };
        }
        lastTtl.set(key, ttl);
      }
      if ([...lastTtl.values()].every((ttl) => ttl < 0)) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    return { state: 'stopped', staleClaims: keys.length };
  } finally {
    redis.disconnect();
  }
}

function describeHolder(value: string | null): string {
  try {
    const claim = JSON.parse(value ?? '') as { path?: string; host?: string };
    return `its database ${claim.path ?? '?'} on ${claim.host ?? '?'}`;
  } catch {
    return 'a process of the instance';
  }
}

/**
 * The migration's own claim on the instance's namespace while it copies: a service started
 * meanwhile on the same Redis and QUEUE_PREFIX finds a claim of another database and refuses to
 * start (NamespaceInUseError names `description`). Released (deleted, if still ours) at the end.
 */
export class MigrationClaim {
  private constructor(
    private readonly redis: IORedis,
    private readonly key: string,
    private readonly value: string,
    private readonly timer: NodeJS.Timeout,
  ) {}

  /** Takes the claim, or returns undefined when Redis cannot be reached. */
  static async hold(
    redisUrl: string,
    namespace: string,
    instanceId: string,
    description: string,
  ): Promise<MigrationClaim | undefined> {
    const redis = connect(redisUrl);
    try {
      await redis.connect();
    } catch {
      redis.disconnect();
      return undefined;
    }
    const key = `${namespace}:instance`;
    const value = JSON.stringify({ instanceId, database: 'migration', host: os.hostname(), path: description });
    await redis.set(key, value, 'PX', CLAIM_TTL_MS);
    const timer = setInterval(
      () => void redis.set(key, value, 'PX', CLAIM_TTL_MS).catch(() => undefined),
      CLAIM_REFRESH_MS,
    );
    timer.unref();
    return new MigrationClaim(redis, key, value, timer);
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.redis
      .eval(
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
        1,
        this.key,
        this.value,
      )
      .catch(() => undefined);
    this.redis.disconnect();
  }
}
