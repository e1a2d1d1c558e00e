import crypto from 'node:crypto';
import os from 'node:os';
import IORedis from 'ioredis';

/**
 * Adds the members ARGV[2..] to the sorted set KEYS[1] with a score of Redis's own clock + ARGV[1]
 * ms (their expiry), so every process of the instance, on any machine, measures expiry on one clock.
 */
const HOLD_SCRIPT = `
local t = redis.call('TIME')
local expires = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], expires, ARGV[i]) end
return expires`;

/** Drops the members of KEYS[1] whose expiry has passed on Redis's clock and returns the rest. */
const HELD_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)`;

/** One request's hold on versions: end it once (more calls do nothing) when the request has answered. */
export interface VersionLease {
  release(): Promise<void>;
}

/** What a classify request needs: a hold on the versions it uses. */
export interface VersionLeaseHolder {
  hold(versionIds: number[]): Promise<VersionLease>;
}

/** What retention needs: the versions some request of the instance (in any process) holds now. */
export interface VersionLeaseReader {
  /** @throws when Redis cannot be asked: the caller must then remove nothing a request might use */
  held(): Promise<Set<number>>;
}

/**
 * The instance's leases on versions that classify requests in flight use, in Redis, so that classify
 * writes nothing to the database and retention in any process (API or training worker, on any
 * machine) sees them. The sorted set `<namespace>:version-leases` holds one member
 * `<version id>@<process>` per version a process holds, scored with its expiry on Redis's clock.
 *
 * Each process counts its requests per version in memory and touches Redis only when a version's
 * count leaves or returns to zero (a steady load on one version writes nothing per request). While it
 * holds any version, the process renews all its members every `ttlMs / 3`, so a lease outlives any
 * request however slow; a process that dies stops renewing, and its members expire `ttlMs` later
 * (VERSION_LEASE_TTL_MS), so a crashed process never pins a version for good.
 *
 * When Redis cannot be written, a request still gets its versions, unleased (classifying must work
 * wherever reading the database does); the renewal writes every held version again once Redis is
 * back. Retention that cannot read the leases removes nothing (see VersionLeaseReader).
 */
export class VersionLeases implements VersionLeaseHolder, VersionLeaseReader {
  private readonly counts = new Map<number, number>();
  /** Writes of versions whose count just left zero: a second request of the same version waits for the first's. */
  private readonly writing = new Map<number, Promise<void>>();
  private readonly timer: NodeJS.Timeout;
  private readonly key: string;
  /** This process's name in the members: host, pid and a random part (a pid is reused after a restart). */
  private readonly holder = `${os.hostname()}/${process.pid}/${crypto.randomBytes(4).toString('hex')}`;

  private constructor(
    private readonly redis: IORedis,
    namespace: string,
    private readonly ttlMs: number,
    private readonly onError: (error: unknown) => void,
  ) {
    this.key = `${namespace}:version-leases`;
    this.timer = setInterval(() => void this.renew(), Math.max(100, Math.floor(ttlMs / 3)));
    this.timer.unref();
  }

  /**
   * Connects to the instance's Redis.
   * @param namespace the instance's Redis namespace (see queueNamespace)
   * @param ttlMs how long a member lives without renewal (VERSION_LEASE_TTL_MS, 30 s by default)
   * @param onError told when a lease could not be written, renewed or removed (they then expire or are written again)
   * @throws when Redis cannot be reached at start
   */
  static async open(
    redisUrl: string,
    namespace: string,
    ttlMs: number,
    onError: (error: unknown) => void = () => undefined,
  ): Promise<VersionLeases> {
    // Fail fast instead of queueing: a request must not wait for Redis to come back.
    const redis = new IORedis(redisUrl, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 2_000,
    });
    redis.on('error', () => undefined);
    redis.defineCommand('holdVersions', { numberOfKeys: 1, lua: HOLD_SCRIPT });
    redis.defineCommand('heldVersions', { numberOfKeys: 1, lua: HELD_SCRIPT });
    try {
      await redis.connect();
      // Loaded now, so a hold never goes out as EVALSHA, fails NOSCRIPT and is sent again behind a later release.
      await redis.script('LOAD', HOLD_SCRIPT);
      await redis.script('LOAD', HELD_SCRIPT);
    } catch (error) {
      redis.disconnect();
      throw error;
    }
    return new VersionLeases(redis, namespace, ttlMs, onError);
  }

  /**
   * Holds the versions (ids) until the returned lease is released: resolves once Redis has them (or
   * failed to take them: the request then runs unleased). Never throws.
   */
  async hold(versionIds: number[]): Promise<VersionLease> {
    const ids = [...new Set(versionIds)];
    const fresh: number[] = [];
    const waits: Promise<void>[] = [];
    for (const id of ids) {
      const count = this.counts.get(id) ?? 0;
      this.counts.set(id, count + 1);
      if (count === 0) fresh.push(id);
      else if (this.writing.has(id)) waits.push(this.writing.get(id)!);
    }
    if (fresh.length > 0) {
      const write = this.write(fresh);
      for (const id of fresh) this.writing.set(id, write);
      waits.push(
        write.finally(() => {
          for (const id of fresh) if (this.writing.get(id) === write) this.writing.delete(id);
        }),
      );
    }
    await Promise.all(waits);
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        await this.release(ids);
      },
    };
  }

  /** The versions held now by any live process of the instance. */
  async held(): Promise<Set<number>> {
    const members = (await (this.redis as unknown as LeaseCommands).heldVersions(this.key)) as string[];
    return new Set(members.map((m) => Number(m.slice(0, m.indexOf('@')))));
  }

  /** Stops renewing and removes this process's members (what is left expires). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    const ids = [...this.counts.keys()];
    this.counts.clear();
    if (ids.length > 0) await this.redis.zrem(this.key, ...ids.map((id) => this.member(id))).catch(() => undefined);
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private member(versionId: number): string {
    return `${versionId}@${this.holder}`;
  }

  private async write(ids: number[]): Promise<void> {
    try {
      await (this.redis as unknown as LeaseCommands).holdVersions(
        this.key,
        this.ttlMs,
        ...ids.map((id) => this.member(id)),
      );
    } catch (error) {
      this.onError(error);
    }
  }

  private async release(ids: number[]): Promise<void> {
    const ended: number[] = [];
    for (const id of ids) {
      const count = (this.counts.get(id) ?? 1) - 1;
      if (count > 0) this.counts.set(id, count);
      else {
        this.counts.delete(id);
        ended.push(id);
      }
    }
    if (ended.length === 0) return;
    // Sent on the one connection, so a hold of the same version that follows lands after it.
    await this.redis
      .zrem(this.key, ...ended.map((id) => this.member(id)))
      .catch((error: unknown) => this.onError(error));
  }

  private async renew(): Promise<void> {
    if (this.counts.size === 0) return;
    await this.write([...this.counts.keys()]);
  }
}

interface LeaseCommands {
  holdVersions(key: string, ttlMs: number, ...members: string[]): Promise<number>;
  heldVersions(key: string): Promise<string[]>;
}
