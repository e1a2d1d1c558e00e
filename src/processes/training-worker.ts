import os from 'node:os';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { ConfigError, loadConfig } from '../config';
import { ClassifierRepository } from '../data-access/db/classifier-repository';
import { VersionRepository } from '../data-access/db/version-repository';
import { Database } from '../data-access/db/database';
import { ImageClaims } from '../data-access/db/image-claims';
import { HeadStore } from '../data-access/files/head-store';
import { ImageStore } from '../data-access/files/image-store';
import { loadNegativeBank, openEmbedder } from '../ml';
import { dataLayout } from '../data-access/files/data-layout';
import { TRAINING_QUEUE_NAME, TrainingQueue, redisConnection, type TrainingJobData } from '../data-access/redis/training-queue';
import { ForeignJobError, TrainingDataError, trainClassifier, type TrainingContext } from '../domain/train-classifier';
import { NamespaceClaim } from '../data-access/redis/namespace-claim';
import { bindDataDirectory, readDataDirectoryInstance } from '../data-access/files/data-directory';
import { queueNamespace, readInstanceId } from '../data-access/db/instance-id';
import { CallbackRepository } from '../data-access/db/callback-repository';
import { CALLBACK_QUEUE_NAME, CallbackQueue, type CallbackJobData } from '../data-access/redis/callback-queue';
import { CallbackDeliveryError } from '../data-access/outbound/callback-sender';
import { deliverCallback, relayOutbox, type CallbackDeliveryContext } from '../domain/callbacks';
import { EmbeddingCache } from '../data-access/db/embedding-cache';
import { createLogger } from '../logger';
import { WorkerMetrics } from '../lib/metrics';
import { MetricsExchange, publishPeriodically } from '../data-access/redis/metrics-exchange';
import { secondsSince } from '../lib/elapsed';

/**
 * The training worker: its own process, so CPU-heavy embedding and head training never stall the
 * API, and BullMQ's lock renewal runs on an event loop that training work does not block
 * (inference and the head's matrix work run on onnxruntime's threads). Started by `npm start`
 * (WorkerSupervisor, which it tells when it is ready and whose exit stops it), or on its own by
 * `npm run worker`, any number of them on any machine sharing the instance's data directory,
 * database and Redis: BullMQ gives each job to one of them.
 */
export async function runTrainingWorker(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, 'worker');
  // `npm start` hands its worker the Redis it resolved; `npm run worker` (a worker-only host) must be told.
  const redisUrl = config.redisUrl;
  if (!redisUrl) {
    throw new ConfigError(
      'REDIS_URL is not set: a training worker started on its own (npm run worker) must use the Redis of the ' +
        'instance its API runs with (REDIS_URL=redis://host:6379); it cannot share the private redis-server that npm start runs.',
    );
  }
  const layout = dataLayout(config.dataDir);
  const db = await Database.open({
    databaseUrl: config.databaseUrl,
    sqliteFile: layout.database,
    dataDirectoryInstance: await readDataDirectoryInstance(config.dataDir),
  });
  const instanceId = await readInstanceId(db);
  const namespace = queueNamespace(config.queuePrefix, instanceId);
  await bindDataDirectory(config.dataDir, instanceId, db);
  const claim = await NamespaceClaim.acquire(redisUrl, namespace, {
    instanceId,
    database: db.fingerprint,
    path: db.location,
  });
  const classifiers = new ClassifierRepository(db);
  const metrics = config.ops.metrics ? new WorkerMetrics() : undefined;
  const cache = new EmbeddingCache(db, (hits, misses) => {
    metrics?.cacheLookups.inc({ result: 'hit' }, hits);
    metrics?.cacheLookups.inc({ result: 'miss' }, misses);
  });
  const embedder = await openEmbedder(config.modelsDir, config.ortThreads, logger);
  const queue = new TrainingQueue(redisUrl, namespace, instanceId, config.trainingAttempts);
  const negativeBank = loadNegativeBank(embedder.packKey);
  if (!negativeBank) logger.warn({ pack: embedder.packKey }, 'no open-set bank for this pack: classifiers train without implicit negatives (the k-NN gate still applies)');
  const ctx: TrainingContext = {
    classifiers,
    versions: new VersionRepository(db),
    images: new ImageStore(layout.images),
    imageClaims: new ImageClaims(db, config.uploadClaimTtlMs),
    heads: new HeadStore(layout.heads),
    embedder,
    cache,
    negativeBank,
    threads: config.ortThreads,
    keepVersions: config.keepVersions,
    logger,
    now: () => new Date().toISOString(),
  };

  // Metrics go to Redis, where the API merges them into its /metrics (several workers, several machines).
  const exchange = metrics && new MetricsExchange(redisUrl, namespace);
  const publisher = metrics && exchange && publishPeriodically(exchange, metrics, config.ops.publishIntervalMs, logger);
  const recordRun = (outcome: string, start: bigint) => {
    metrics?.trainingRuns.inc({ outcome });
    metrics?.trainingDuration.observe({ outcome }, secondsSince(start));
    void publisher?.publishNow();
  };

  const processor = async (job: Job<TrainingJobData>) => {
    const { classifierId } = job.data;
    const finalAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    const start = process.hrtime.bigint();
    try {
      if (job.data.instanceId !== instanceId) {
        throw new ForeignJobError(
          `The training job for '${classifierId}' was queued by instance ${job.data.instanceId}, not by this one (${instanceId}).`,
        );
      }
      const outcome = await trainClassifier(ctx, classifierId, {
        finalAttempt,
        onProgress: (f) => job.updateProgress(Math.round(f * 100)),
      });
      logger.info({ classifierId, outcome }, 'training run finished');
      recordRun(outcome, start);
      return outcome;
    } catch (error) {
      if (error instanceof ForeignJobError) {
        // Never silent: the job stays in the failed set with this reason for the operator to see.
        logger.error({ classifierId, err: error, instanceId }, 'refusing a training job of another instance');
        throw new UnrecoverableError(error.message);
      }
      logger.warn({ classifierId, err: error, finalAttempt }, 'training run failed');
      const unrecoverable = error instanceof TrainingDataError;
      recordRun(unrecoverable || finalAttempt ? 'failed' : 'retry', start);
      if (unrecoverable) throw new UnrecoverableError(error.message);
      throw error;
    }
  };

  const worker = new Worker<TrainingJobData>(TRAINING_QUEUE_NAME, processor, {
    connection: redisConnection(redisUrl),
    prefix: namespace,
    // Recorded as each job's processedBy: which process (the metrics' process_instance) ran it.
    name: `${os.hostname()}/${process.pid}`,
    concurrency: config.workerConcurrency,
    lockDuration: config.trainingLockMs,
    stalledInterval: Math.max(1000, Math.floor(config.trainingLockMs / 2)),
    maxStalledCount: 2,
  });
  worker.on('error', (err) => logger.error({ err }, 'worker error'));

  // Training-end callbacks: recorded with the run's result, then delivered by their own BullMQ
  // worker (its own concurrency and retries), so a slow or failing receiver never holds training.
  const callbackCtx: CallbackDeliveryContext = {
    classifiers,
    callbacks: new CallbackRepository(db),
    queue: new CallbackQueue(redisUrl, namespace, config.callbackAttempts, config.callbackBackoffMs),
    allowPrivateNetworks: config.allowPrivateUrls,
    timeoutMs: config.urlFetchTimeoutMs,
    logger,
    now: () => new Date().toISOString(),
  };
  const relay = () =>
    void relayOutbox(callbackCtx).catch((err) => logger.warn({ err }, 'could not queue callbacks; they wait for the next try'));
  worker.on('completed', relay);
  worker.on('failed', relay);
  const callbackWorker = new Worker<CallbackJobData>(
    CALLBACK_QUEUE_NAME,
    async (job) => {
      try {
        const outcome = await deliverCallback(callbackCtx, job.data);
        logger.info({ deliveryId: job.data.deliveryId, classifierId: job.data.classifierId, outcome }, 'callback handled');
        return outcome;
      } catch (error) {
        logger.warn({ deliveryId: job.data.deliveryId, err: error, attempt: job.attemptsMade + 1 }, 'callback not delivered');
        if (error instanceof CallbackDeliveryError && error.permanent) throw new UnrecoverableError(error.message);
        throw error;
      }
    },
    { connection: redisConnection(redisUrl), prefix: namespace, concurrency: 4 },
  );
  callbackWorker.on('error', (err) => logger.error({ err }, 'callback worker error'));
  await Promise.all([worker.waitUntilReady(), callbackWorker.waitUntilReady()]);

  // A classifier left training with no job is queued again: Redis lost its data (also while this
  // worker ran on), a crash came between commit and queue, or a run's final failure could not be
  // recorded (full disk). At start, then every lock period, so none waits for the next restart.
  const requeueUnfinished = async () => {
    for (const c of await classifiers.listUnfinished()) {
      if (!(await queue.hasPendingJob(c.id))) {
        logger.info({ classifierId: c.id }, 're-queueing unfinished training');
        await queue.enqueue(c.id);
      }
    }
  };
  await requeueUnfinished();
  relay();
  let stopping = false;
  let requeueTimer: NodeJS.Timeout | undefined;
  const scheduleRequeue = () => {
    requeueTimer = setTimeout(() => {
      relay();
      requeueUnfinished()
        .catch((err) => logger.warn({ err }, 'could not check for unfinished training'))
        .finally(() => {
          if (!stopping) scheduleRequeue();
        });
    }, config.trainingLockMs);
  };
  scheduleRequeue();
  logger.info({ concurrency: config.workerConcurrency, instanceId, namespace }, 'training worker ready');
  process.send?.({ type: 'ready' });

  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'training worker stopping (finishing the current run)');
    clearTimeout(requeueTimer);
    await worker.close();
    await publisher?.stop();
    await exchange?.close();
    await callbackWorker.close();
    await callbackCtx.queue.close();
    await queue.close();
    await claim.release();
    await embedder.close();
    await db.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  // Only under npm start: a worker started on its own has no parent channel to lose.
  if (process.send) process.on('disconnect', () => void shutdown('parent exited'));
}
