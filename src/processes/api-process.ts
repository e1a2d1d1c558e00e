import type { Express } from 'express';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig, type Config } from '../config';
import { StartupError } from '../errors';
import type { ApiKeyRepository } from '../data-access/db/api-key-repository';
import { dataLayout } from '../data-access/files/data-layout';
import { ensureWritableDataDirectory } from '../data-access/files/data-directory';
import { resolveRedis } from '../data-access/redis/redis-server';
import { readInstanceId } from '../data-access/db/instance-id';
import { bootstrapApiKeys } from '../domain/bootstrap-keys';
import { removeOrphanHeads, removeOrphanImages } from '../domain/ingest-examples';
import { removeOrphanPendingZips } from '../domain/pending-zips';
import type { ServiceContext } from '../domain/service-context';
import { createApp, createOperationsApp } from '../entry-points/http/app';
import { applyConnectionTimeouts } from '../entry-points/http/connection-timeouts';
import { openApiDocument } from '../entry-points/http/openapi';
import type { OperationsDependencies } from '../entry-points/http/operations-routes';
import { MetricsExchange, publishPeriodically } from '../data-access/redis/metrics-exchange';
import { openRateLimitStore } from '../data-access/redis/rate-limit-store';
import { UploadTempDir } from '../data-access/files/upload-temp';
import { ApiMetrics } from '../lib/metrics';
import packageJson from '../../package.json';
import { WorkerSupervisor } from './worker-supervisor';
import { createLogger } from '../logger';
import { HeadCache } from '../data-access/files/head-cache';
import { fetchImageFromUrl } from '../data-access/outbound/image-fetcher';
import type { ClassifyContext } from '../domain/classify-images';
import { openInstance } from './open-instance';

export interface RunningService {
  config: Config;
  /** The instance's identity (made with its database) and its Redis namespace. */
  instanceId: string;
  queueNamespace: string;
  port: number;
  url: string;
  /** Where /metrics, /healthz and /readyz are when OPS_PORT gives them their own port. */
  opsUrl?: string;
  ctx: ServiceContext;
  classify: ClassifyContext;
  apiKeys: ApiKeyRepository;
  worker?: WorkerSupervisor;
  /** Set when this start generated the first API key (shown once). */
  generatedKey?: string;
  close(): Promise<void>;
}

/**
 * Starts one API process and, unless START_WORKER=false, a supervised training worker process.
 * Any number of these may run on one data directory and database (API_PROCESSES, or several
 * machines): what one process keeps for itself (uploads in flight) lives in its own folder.
 */
export async function startService(env: NodeJS.ProcessEnv = process.env): Promise<RunningService> {
  const config = loadConfig(env);
  const logger = createLogger(config.logLevel, 'api');
  const layout = dataLayout(config.dataDir);
  await ensureWritableDataDirectory(config.dataDir);

  const redis = await resolveRedis(config.redisUrl, config.dataDir, logger);
  const metrics = config.ops.metrics ? new ApiMetrics() : undefined;
  const instance = await openInstance(config, logger, { redisUrl: redis.url, metrics }).catch(
    async (error: unknown) => {
      await redis.stop();
      throw error;
    },
  );
  const { db, instanceId, namespace, embedder, queue, apiKeys } = instance;
  logger.info({ instanceId, namespace, database: db.location }, 'instance identity');
  const ctx: ServiceContext = {
    config,
    classifiers: instance.classifiers,
    versions: instance.versions,
    examples: instance.examples,
    callbacks: instance.callbacks,
    images: instance.images,
    pendingZips: instance.pendingZips,
    pendingFiles: instance.pendingFiles,
    heads: instance.heads,
    leases: instance.leases,
    queue,
    imageClaims: instance.imageClaims,
    embedder,
    embeddings: instance.embeddings,
    logger,
    now: () => new Date().toISOString(),
  };

  const classify: ClassifyContext = {
    classifiers: ctx.classifiers,
    versions: ctx.versions,
    leases: instance.leases,
    headCache: new HeadCache(ctx.heads),
    embedder,
    namesObjects: config.objectDetection,
    limits: config.limits,
    fetchImage: (url) =>
      fetchImageFromUrl(url, {
        maxBytes: config.limits.maxClassifyImageBytes,
        timeoutMs: config.urlFetchTimeoutMs,
        maxRedirects: 5,
        allowPrivateNetworks: config.allowPrivateUrls,
      }),
    observer: metrics && {
      stage: (stage, seconds) => metrics.observeStage(stage, seconds),
      images: (outcome, count) => metrics.classifyImages.inc({ outcome }, count),
    },
  };

  // At start, then now and then: images a process killed mid-upload (this one or another, on any
  // host) left behind, and head files of training runs killed between writing a head and publishing it (a live run
  // publishes within moments, so only files older than ten minutes are candidates).
  const sweepOrphans = async () => {
    const orphans = await removeOrphanImages(ctx);
    if (orphans > 0) logger.info({ orphans }, 'removed images left behind by an interrupted upload');
    const zips = await removeOrphanPendingZips(ctx);
    if (zips > 0) logger.info({ zips }, 'removed zips kept by an upload that was cut off before it was recorded');
    const heads = await removeOrphanHeads(ctx, 10 * 60_000);
    if (heads > 0) logger.info({ heads }, 'removed head files of interrupted training runs');
  };
  await sweepOrphans();
  const sweeper = setInterval(
    () => void sweepOrphans().catch((err) => logger.warn({ err }, 'could not remove orphaned files')),
    config.orphanSweepMs,
  );
  sweeper.unref();

  // A new pack key (a new eye, or the ImageNet pack installed) retrains every classifier from its stored
  // examples; each old version serves until its new one is ready.
  const stale = await ctx.classifiers.markStalePackForRetraining(embedder.packKey);
  for (const id of stale) await queue.enqueue(id);
  if (stale.length > 0)
    logger.info({ classifiers: stale.length, pack: embedder.packKey }, 'queued retraining for the new model pack');

  let worker: WorkerSupervisor | undefined;
  if (config.startWorker) {
    worker = new WorkerSupervisor({ ...env, REDIS_URL: redis.url }, logger);
    await worker.start();
  }

  // Publishes this process's metrics, reads every other process's for /metrics, and answers /readyz's Redis check.
  const exchange = new MetricsExchange(redis.url, namespace);
  const publisher = metrics && publishPeriodically(exchange, metrics, config.ops.publishIntervalMs, logger);
  const ops: OperationsDependencies = {
    metrics,
    health: config.ops.health,
    exchange,
    queue,
    logger,
    probes: {
      database: () => readInstanceId(db).then(() => undefined),
      redis: () => exchange.ping(),
      models: () => {
        if (!embedder.alive) return 'The embedding models have stopped: restart the service.';
        return undefined;
      },
    },
  };
  const openApi = openApiDocument(config, packageJson.version);
  // Uploads of crashed processes are removed; those of live ones (other API processes) stay.
  const uploads = await UploadTempDir.open(layout.tmp, logger);
  const rateLimit = config.rateLimitPerMinute > 0 ? await openRateLimitStore(redis.url, namespace) : undefined;
  // A generated key is shown only once, by the caller after this returns: made after the last step that can
  // fail for a passing reason (Redis, the database under load), so a failed start never loses it.
  const { generatedKey } = await bootstrapApiKeys(apiKeys, config.apiKeys);
  const app = createApp({
    ctx,
    classify,
    apiKeys,
    openApi,
    ops,
    uploadDir: uploads.path,
    rateLimitStore: rateLimit?.store,
  });
  const server = await listen(app, config.port, config.host, config.keepAliveTimeoutMs, 'PORT');
  const port = (server.address() as AddressInfo).port;
  logger.info({ port }, 'Watson Visual Recognition v3 API listening');
  const opsServer =
    config.ops.port !== undefined && (config.ops.metrics || config.ops.health)
      ? await listen(
          createOperationsApp(ctx, ops),
          config.ops.port,
          config.ops.host,
          config.keepAliveTimeoutMs,
          'OPS_PORT',
        )
      : undefined;
  const opsPort = opsServer ? (opsServer.address() as AddressInfo).port : undefined;
  if (opsServer) logger.info({ port: opsPort }, 'operations endpoints listening');

  return {
    config,
    instanceId,
    queueNamespace: namespace,
    port,
    url: `http://127.0.0.1:${port}`,
    opsUrl: opsPort === undefined ? undefined : `http://127.0.0.1:${opsPort}`,
    ctx,
    classify,
    apiKeys,
    worker,
    generatedKey,
    close: async () => {
      clearInterval(sweeper);
      // The worker stops taking runs (finishing the one it has) while the API finishes its requests: a
      // container's stop (SIGTERM, then SIGKILL after a grace period) waits for the longer of the two, not both.
      await Promise.all([stopListening(server), opsServer && stopListening(opsServer), worker?.stop()]);
      await uploads.close();
      await rateLimit?.close();
      await publisher?.stop();
      await exchange.close();
      await instance.close();
      await redis.stop();
    },
  };
}

/**
 * Listens on `host:port`. A port taken by another process, or one this user may not bind, is a
 * StartupError naming `variable` (PORT or OPS_PORT), the setting that picks another.
 */
async function listen(
  app: Express,
  port: number,
  host: string,
  keepAliveTimeoutMs: number,
  variable: 'PORT' | 'OPS_PORT',
): Promise<Server> {
  const server = app.listen(port, host);
  applyConnectionTimeouts(server, keepAliveTimeoutMs);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') {
        reject(
          new StartupError(
            `Port ${port} on ${host} is already in use (another program, or this service started twice). Stop that program, or set ${variable} to a free port.`,
          ),
        );
      } else if (error.code === 'EACCES') {
        reject(
          new StartupError(
            `This user may not listen on port ${port} on ${host} (ports below 1024 need privileges). Set ${variable} to a port above 1023.`,
          ),
        );
      } else {
        reject(error);
      }
    });
  });
  return server;
}

function stopListening(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
