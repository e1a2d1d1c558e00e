import type { Config } from '../config';
import { ApiKeyRepository } from '../data-access/db/api-key-repository';
import { CallbackRepository } from '../data-access/db/callback-repository';
import { ClassifierRepository } from '../data-access/db/classifier-repository';
import { Database } from '../data-access/db/database';
import { EmbeddingCache } from '../data-access/db/embedding-cache';
import { ImageClaims } from '../data-access/db/image-claims';
import { queueNamespace, readInstanceId } from '../data-access/db/instance-id';
import { ExampleRepository } from '../data-access/db/example-repository';
import { VersionRepository } from '../data-access/db/version-repository';
import { bindDataDirectory, readDataDirectoryInstance } from '../data-access/files/data-directory';
import { dataLayout } from '../data-access/files/data-layout';
import { HeadStore } from '../data-access/files/head-store';
import { ImageStore } from '../data-access/files/image-store';
import { PendingZipRepository } from '../data-access/db/pending-zip-repository';
import { PendingZipStore } from '../data-access/files/pending-zip-store';
import { NamespaceClaim } from '../data-access/redis/namespace-claim';
import { TrainingQueue } from '../data-access/redis/training-queue';
import { VersionLeases } from '../data-access/redis/version-leases';
import type { ProcessMetrics } from '../lib/metrics';
import type { Logger } from '../logger';
import { openEmbedder, type Embedder } from '../ml';

/** What every process of an instance (API process or training worker) works with. */
export interface Instance {
  db: Database;
  /** The instance's identity, made with its database. */
  instanceId: string;
  /** The instance's Redis namespace (queues, metrics, claims). */
  namespace: string;
  /** Held (refreshed) while this process runs, so a copy of the database cannot use the namespace meanwhile. */
  claim: NamespaceClaim;
  embedder: Embedder;
  /** Counts its hits and misses in this process's metrics, when it keeps any. */
  embeddings: EmbeddingCache;
  queue: TrainingQueue;
  classifiers: ClassifierRepository;
  versions: VersionRepository;
  examples: ExampleRepository;
  callbacks: CallbackRepository;
  apiKeys: ApiKeyRepository;
  imageClaims: ImageClaims;
  images: ImageStore;
  /** Zips accepted and not yet extracted into `images`: rows and files. */
  pendingZips: PendingZipRepository;
  pendingFiles: PendingZipStore;
  heads: HeadStore;
  /** The versions classify requests of every process hold, in Redis (retention spares them). */
  leases: VersionLeases;
  /** Closes what openInstance opened (the queue, the leases, the claim, the embedder, the database). */
  close(): Promise<void>;
}

export interface OpenInstanceOptions {
  /** The instance's Redis: the API process resolves it (or starts a private one); a worker is given REDIS_URL. */
  redisUrl: string;
  /** This process's metrics, if it keeps any: the embedding cache counts its hits and misses there. */
  metrics?: ProcessMetrics;
}

/**
 * Opens the instance in the order every process must: the database first (a wrong DATABASE_URL or
 * a foreign data directory stops the start at once), its identity and namespace, the data
 * directory's binding to it, the namespace claim, then the models. A step that fails closes what
 * the earlier ones opened; the caller owns Redis.
 */
export async function openInstance(config: Config, logger: Logger, options: OpenInstanceOptions): Promise<Instance> {
  const layout = dataLayout(config.dataDir);
  const db = await Database.open({
    databaseUrl: config.databaseUrl,
    sqliteFile: layout.database,
    dataDirectoryInstance: await readDataDirectoryInstance(config.dataDir),
    stallTimeoutMs: config.databaseStallTimeoutMs,
  });
  const { instanceId, namespace, claim } = await claimNamespace(config, db, options.redisUrl).catch(
    async (error: unknown) => {
      await db.close();
      throw error;
    },
  );
  // Converts the bundled pack and the COCO detector on first start, before the worker needs them.
  const embedder = await openEmbedder(config.modelsDir, config.ortThreads, logger).catch(async (error: unknown) => {
    await claim.release();
    await db.close();
    throw error;
  });
  const leases = await VersionLeases.open(
    options.redisUrl,
    namespace,
    config.versionLeaseTtlMs,
    warnAtMostEvery(config.versionLeaseTtlMs, (err) =>
      logger.warn({ err }, 'could not write a version lease to Redis (it is written again, or expires)'),
    ),
  ).catch(async (error: unknown) => {
    await embedder.close();
    await claim.release();
    await db.close();
    throw error;
  });
  const { metrics } = options;
  const queue = new TrainingQueue(options.redisUrl, namespace, instanceId, config.trainingAttempts);
  return {
    db,
    instanceId,
    namespace,
    claim,
    embedder,
    embeddings: new EmbeddingCache(db, (hits, misses) => {
      metrics?.cacheLookups.inc({ result: 'hit' }, hits);
      metrics?.cacheLookups.inc({ result: 'miss' }, misses);
    }),
    queue,
    classifiers: new ClassifierRepository(db),
    versions: new VersionRepository(db),
    examples: new ExampleRepository(db),
    callbacks: new CallbackRepository(db),
    apiKeys: new ApiKeyRepository(db),
    imageClaims: new ImageClaims(db, config.uploadClaimTtlMs),
    images: new ImageStore(layout.images),
    pendingZips: new PendingZipRepository(db),
    pendingFiles: new PendingZipStore(layout.pending),
    heads: new HeadStore(layout.heads),
    leases,
    close: async () => {
      await queue.close();
      await leases.close();
      await claim.release();
      await embedder.close();
      await db.close();
    },
  };
}

/** The database's identity and namespace, with the data directory bound to it and the namespace claimed. */
async function claimNamespace(config: Config, db: Database, redisUrl: string) {
  const instanceId = await readInstanceId(db);
  const namespace = queueNamespace(config.queuePrefix, instanceId);
  await bindDataDirectory(config.dataDir, instanceId, db);
  const claim = await NamespaceClaim.acquire(redisUrl, namespace, {
    instanceId,
    database: db.fingerprint,
    path: db.location,
  });
  return { instanceId, namespace, claim };
}

/** `report`, at most once per `intervalMs`: a Redis that is away fails every request's lease. */
function warnAtMostEvery(intervalMs: number, report: (error: unknown) => void): (error: unknown) => void {
  let last = -Infinity;
  return (error) => {
    if (Date.now() - last < intervalMs) return;
    last = Date.now();
    report(error);
  };
}
