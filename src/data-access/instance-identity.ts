import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import IORedis from 'ioredis';
import type { Database } from './database';

/**
 * An instance of the service is its database: the identity is a UUID made with the database
 * (see the `instance` table) and never changes, so every process on the same database, on any
 * machine, is the same instance, and two databases are two instances.
 */
export async function readInstanceId(db: Database): Promise<string> {
  const row = await db.kysely.selectFrom('instance').select('id').where('singleton', '=', 1).executeTakeFirstOrThrow();
  return row.id;
}

/**
 * The Redis namespace (BullMQ prefix) of an instance's queues: `<QUEUE_PREFIX>:<instance id>`.
 * Derived from the identity, so two instances on one Redis never take each other's jobs
 * whatever QUEUE_PREFIX says.
 */
export function queueNamespace(queuePrefix: string, instanceId: string): string {
  return `${queuePrefix}:${instanceId}`;
}

interface Claim {
  instanceId: string;
  database: string;
  /** For the message only: where the claiming process runs. */
  host: string;
  path: string;
}

/** A second database claims a namespace that another live database holds (it is a copy of it). */
export class NamespaceInUseError extends Error {}

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
    held.timer = setInterval(() => void redis.set(key, value, 'PX', CLAIM_TTL_MS).catch(() => undefined), CLAIM_REFRESH_MS);
    held.timer.unref();
    return held;
  }

  /** Stops refreshing; the claim expires by itself, since other processes of the instance may still hold it. */
  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** The data directory holds another instance's images and heads than the database's. */
export class DataDirectoryInUseError extends Error {}

/** The instance the data directory belongs to (DATA_DIR/instance-id), or undefined before its first start. */
export async function readDataDirectoryInstance(dataDir: string): Promise<string | undefined> {
  const text = await fsp.readFile(path.join(dataDir, 'instance-id'), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  return text?.trim() || undefined;
}

/**
 * Binds the data directory to the instance: the first start writes the instance id to
 * `<DATA_DIR>/instance-id`; later starts (any process, any host sharing the directory) must find
 * the same id. With PostgreSQL the database and the files live apart: pointing a second
 * instance's database at this directory would mix two instances' images and heads, and a database
 * that already has versions meeting a directory without an `instance-id` means the wrong (or an
 * unmounted) directory, whose missing head files would fail every classify.
 * @throws DataDirectoryInUseError naming both instances, or the missing files
 */
export async function bindDataDirectory(dataDir: string, instanceId: string, db: Database): Promise<void> {
  const owner = await readDataDirectoryInstance(dataDir);
  if (owner === undefined && db.dialect === 'postgres') {
    const version = await db.kysely.selectFrom('versions').select('head_file').limit(1).executeTakeFirst();
    if (version) {
      throw new DataDirectoryInUseError(
        `The database ${db.location} (instance ${instanceId}) has trained classifiers, but the data directory ${dataDir} has never been used by it ` +
          `(no instance-id; its images and heads are elsewhere). Set DATA_DIR to the instance's data directory, or mount the shared volume that holds it.`,
      );
    }
  }
  if (owner === undefined) {
    await fsp.mkdir(dataDir, { recursive: true });
    await fsp.writeFile(path.join(dataDir, 'instance-id'), `${instanceId}\n`, { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  }
  const bound = await readDataDirectoryInstance(dataDir);
  if (bound !== instanceId) {
    throw new DataDirectoryInUseError(
      `The data directory ${dataDir} belongs to instance ${bound}, but the database ${db.location} is instance ${instanceId}. ` +
        `Point DATA_DIR at this database's data directory, or DATABASE_URL at the database of instance ${bound}.`,
    );
  }
}

/**
 * Records in the data directory that the instance moved to PostgreSQL (npm run migrate): from then
 * on the SQLite file is refused (see Database.open), so no process starts on the stale copy, whose
 * orphan sweep would delete the images uploaded since. Also binds the directory to the instance,
 * if no start did yet.
 */
export async function recordMoveToPostgres(dataDir: string, instanceId: string, target: string, now = new Date()): Promise<void> {
  await fsp.writeFile(path.join(dataDir, 'instance-id'), `${instanceId}\n`, { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  await fsp.writeFile(path.join(dataDir, 'moved-to-postgres'), `${JSON.stringify({ instance: instanceId, to: target, moved: now.toISOString() })}\n`);
}
