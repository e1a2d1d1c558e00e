import os from 'node:os';
import { Worker } from 'bullmq';
import { ConfigError, loadConfig, type Config } from '../config';
import { ensureWritableDataDirectory } from '../data-access/files/data-directory';
import { CALLBACK_QUEUE_NAME, CallbackQueue, type CallbackJobData } from '../data-access/redis/callback-queue';
import { MetricsExchange, publishPeriodically } from '../data-access/redis/metrics-exchange';
import { checkRedisAnswers } from '../data-access/redis/redis-server';
import { TRAINING_QUEUE_NAME, redisConnection, type TrainingJobData } from '../data-access/redis/training-queue';
import { relayOutbox, type CallbackDeliveryContext } from '../domain/callbacks';
import type { TrainingContext } from '../domain/train-classifier';
import { WorkerMetrics } from '../lib/metrics';
import { createLogger, type Logger } from '../logger';
import { loadNegativeBank, trainingBank } from '../ml';
import { handleCallbackJob } from './jobs/callback-job';
import { handleTrainingJob, type TrainingJobContext } from './jobs/training-job';
import { openInstance, type Instance } from './open-instance';

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
  await checkRedisAnswers(redisUrl);
  await ensureWritableDataDirectory(config.dataDir);
  const metrics = config.ops.metrics ? new WorkerMetrics() : undefined;
  const instance = await openInstance(config, logger, { redisUrl, metrics });
  const { instanceId, namespace } = instance;
  const shippedBank = loadNegativeBank(instance.embedder.packKey);
  // Every head trains on the bank's farthest-first coreset (trainingBank), not on all of it.
  const negativeBank = shippedBank && trainingBank(shippedBank);
  if (!negativeBank)
    logger.warn(
      { pack: instance.embedder.packKey },
      'no open-set bank for this pack: classifiers train without implicit negatives (the k-NN gate still applies)',
    );
  const training: TrainingContext = {
    classifiers: instance.classifiers,
    versions: instance.versions,
    images: instance.images,
    pendingZips: instance.pendingZips,
    pendingFiles: instance.pendingFiles,
    imageClaims: instance.imageClaims,
    heads: instance.heads,
    leases: instance.leases,
    embedder: instance.embedder,
    cache: instance.embeddings,
    negativeBank,
    threads: config.ortThreads,
    keepVersions: config.keepVersions,
    minImagesPerZip: config.limits.minImagesPerZip,
    logger,
    now: () => new Date().toISOString(),
  };

  // Metrics go to Redis, where the API merges them into its /metrics (several workers, several machines).
  const exchange = metrics && new MetricsExchange(redisUrl, namespace);
  const publisher = metrics && exchange && publishPeriodically(exchange, metrics, config.ops.publishIntervalMs, logger);
  const trainer = trainingWorker(config, redisUrl, namespace, { training, instanceId, metrics, publisher });

  // Training-end callbacks: recorded with the run's result, then delivered by their own BullMQ
  // worker (its own concurrency and retries), so a slow or failing receiver never holds training.
  const callbacks: CallbackDeliveryContext = {
    classifiers: instance.classifiers,
    callbacks: instance.callbacks,
    queue: new CallbackQueue(redisUrl, namespace, config.callbackAttempts, config.callbackBackoffMs),
    allowPrivateNetworks: config.allowPrivateUrls,
    timeoutMs: config.urlFetchTimeoutMs,
    logger,
    now: () => new Date().toISOString(),
  };
  const relay = outboxRelay(callbacks);
  trainer.on('completed', relay);
  trainer.on('failed', relay);
  const deliverer = callbackWorker(redisUrl, namespace, callbacks);
  await Promise.all([trainer.waitUntilReady(), deliverer.waitUntilReady()]);

  await requeueUnfinished(instance, logger);
  relay();
  const stopRequeueing = repeatAfter(config.trainingLockMs, () => {
    relay();
    return requeueUnfinished(instance, logger).catch((err) =>
      logger.warn({ err }, 'could not check for unfinished training'),
    );
  });
  logger.info({ concurrency: config.workerConcurrency, instanceId, namespace }, 'training worker ready');
  process.send?.({ type: 'ready' });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'training worker stopping (finishing the current run)');
    stopRequeueing();
    await trainer.close();
    await publisher?.stop();
    await exchange?.close();
    await deliverer.close();
    await callbacks.queue.close();
    await instance.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  // Only under npm start: a worker started on its own has no parent channel to lose.
  if (process.send) process.on('disconnect', () => void shutdown('parent exited'));
}

/** The BullMQ worker of training runs, with the instance's lock period and this process's concurrency. */
function trainingWorker(
  config: Config,
  redisUrl: string,
  namespace: string,
  ctx: TrainingJobContext,
): Worker<TrainingJobData> {
  const worker = new Worker<TrainingJobData>(TRAINING_QUEUE_NAME, (job) => handleTrainingJob(ctx, job), {
    connection: redisConnection(redisUrl),
    prefix: namespace,
    // Recorded as each job's processedBy: which process (the metrics' process_instance) ran it.
    name: `${os.hostname()}/${process.pid}`,
    concurrency: config.workerConcurrency,
    lockDuration: config.trainingLockMs,
    stalledInterval: Math.max(1000, Math.floor(config.trainingLockMs / 2)),
    maxStalledCount: 2,
  });
  // A lost lock ("could not renew lock for job …") comes as an error; a run taken up again, here.
  worker.on('error', (err) => ctx.training.logger.error({ err }, 'worker error'));
  worker.on('stalled', (jobId) =>
    ctx.training.logger.warn(
      { jobId },
      'a training run stalled (its worker stopped renewing its lock: killed, frozen or blocked): queued again',
    ),
  );
  return worker;
}

/** The BullMQ worker of callback deliveries. */
function callbackWorker(redisUrl: string, namespace: string, ctx: CallbackDeliveryContext): Worker<CallbackJobData> {
  const worker = new Worker<CallbackJobData>(CALLBACK_QUEUE_NAME, (job) => handleCallbackJob(ctx, job), {
    connection: redisConnection(redisUrl),
    prefix: namespace,
    concurrency: 4,
  });
  worker.on('error', (err) => ctx.logger.error({ err }, 'callback worker error'));
  return worker;
}

/** Moves recorded callbacks to the delivery queue, in the background; with Redis down they wait for the next call. */
function outboxRelay(ctx: CallbackDeliveryContext): () => void {
  return () =>
    void relayOutbox(ctx).catch((err) =>
      ctx.logger.warn({ err }, 'could not queue callbacks; they wait for the next try'),
    );
}

/**
 * A classifier left training with no job is queued again: Redis lost its data (also while this
 * worker ran on), a crash came between commit and queue, or a run's final failure could not be
 * recorded (full disk). Run at start, then every lock period, so none waits for the next restart.
 */
async function requeueUnfinished(instance: Instance, logger: Logger): Promise<void> {
  for (const c of await instance.classifiers.listUnfinished()) {
    if (!(await instance.queue.hasPendingJob(c.id))) {
      logger.info({ classifierId: c.id }, 're-queueing unfinished training');
      await instance.queue.enqueue(c.id);
    }
  }
}

/** Runs `task` (which handles its own failures) `intervalMs` after each run ended, until the returned function is called. */
function repeatAfter(intervalMs: number, task: () => Promise<void>): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    timer = setTimeout(() => {
      void task().finally(() => {
        if (!stopped) schedule();
      });
    }, intervalMs);
  };
  schedule();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
