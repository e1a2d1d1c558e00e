import cluster, { type Worker } from 'node:cluster';
import { loadConfig } from '../config';
import { StartupError } from '../errors';
import { resolveRedis } from '../data-access/redis/redis-server';
import { createLogger } from '../logger';
import { startService, type RunningService } from './api-process';
import { WorkerSupervisor } from './worker-supervisor';

/** A dead API process is replaced after this, doubling while replacements die before they serve, up to the maximum. */
const RESTART_DELAY_MS = 1000;
const MAX_RESTART_DELAY_MS = 30_000;

/** What an API process tells the primary once it listens. */
interface ApiProcessReady {
  type: 'api-ready';
  port: number;
  opsPort?: number;
  generatedKey?: string;
}

function isReady(message: unknown): message is ApiProcessReady {
  return (message as ApiProcessReady | undefined)?.type === 'api-ready';
}

/** An API process exited before it listened, while the cluster was starting (it printed why). */
export class ApiProcessStartError extends StartupError {}

export interface RunningCluster {
  /** The port all API processes share. */
  port: number;
  url: string;
  opsUrl?: string;
  /** Set when this start generated the first API key (shown once). */
  generatedKey?: string;
  /** The API processes now serving. */
  apiPids(): number[];
  /** The training worker started beside them (START_WORKER), if any. */
  workerPid(): number | undefined;
  /** Stops the API processes (each finishing its requests), the worker, and the private Redis if one was started. */
  close(): Promise<void>;
}

/**
 * The primary of API_PROCESSES > 1 (node:cluster): the API processes share one port, and the
 * primary hands each new connection to the next one (round robin).
 *
 * Redis is resolved here, once (so at most one private redis-server is started, and every process
 * gets its URL). The first API process then starts alone: on a first start it converts the models
 * and migrates the database while the others would only wait for its locks, and a bad database or
 * data directory stops the start with one message, not N. The others start after it. The training
 * worker (START_WORKER) is the primary's child, as it is the API's in one process. A dead API
 * process is replaced; the others go on answering meanwhile.
 *
 * Call it from an entry script that runs `runApiProcess` when `cluster.isWorker`: node:cluster
 * runs the same script for the API processes.
 */
export async function startApiCluster(env: NodeJS.ProcessEnv): Promise<RunningCluster> {
  const config = loadConfig(env);
  const logger = createLogger(config.logLevel, 'primary');
  const redis = await resolveRedis(config.redisUrl, config.dataDir, logger);
  const apiEnv: NodeJS.ProcessEnv = { ...env, REDIS_URL: redis.url, START_WORKER: 'false' };
  const processes = new Set<Worker>();
  let stopping = false;
  let starting = true;
  let restartDelay = RESTART_DELAY_MS;
  let restartTimer: NodeJS.Timeout | undefined;

  const fork = (): Promise<ApiProcessReady> => {
    const child = cluster.fork(apiEnv);
    processes.add(child);
    let served = false;
    return new Promise((resolve, reject) => {
      child.on('message', (message: unknown) => {
        if (!isReady(message)) return;
        served = true;
        resolve(message);
      });
      child.once('exit', (code, signal) => {
        processes.delete(child);
        reject(
          new ApiProcessStartError(
            `An API process exited while starting (code ${code}, signal ${signal}); its message is above.`,
          ),
        );
        // One that dies before it serves during the cluster's start fails the start (a bad database, say): no restart loop.
        if (stopping || (starting && !served)) return;
        logger.error(
          { pid: child.process.pid, code, signal, restartInMs: restartDelay },
          'API process died; starting another',
        );
        scheduleReplacement();
      });
    });
  };

  const scheduleReplacement = () => {
    const delay = restartDelay;
    restartDelay = Math.min(MAX_RESTART_DELAY_MS, restartDelay * 2);
    restartTimer = setTimeout(() => {
      if (stopping) return;
      fork().then(
        () => {
          restartDelay = RESTART_DELAY_MS;
        },
        () => undefined, // its exit schedules the next try
      );
    }, delay);
  };

  let worker: WorkerSupervisor | undefined;
  const close = async () => {
    stopping = true;
    clearTimeout(restartTimer);
    await Promise.all(
      [...processes].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.isDead()) return resolve();
            child.once('exit', () => resolve());
            child.process.kill('SIGTERM');
          }),
      ),
    );
    await worker?.stop();
    await redis.stop();
  };

  try {
    const first = await fork();
    const others = await Promise.all(Array.from({ length: config.apiProcesses - 1 }, () => fork()));
    if (config.startWorker) {
      worker = new WorkerSupervisor({ ...env, REDIS_URL: redis.url }, logger);
      await worker.start();
    }
    starting = false;
    logger.info(
      { port: first.port, apiProcesses: processes.size, pids: [...processes].map((p) => p.process.pid) },
      'API processes listening',
    );
    return {
      port: first.port,
      url: `http://127.0.0.1:${first.port}`,
      opsUrl: first.opsPort === undefined ? undefined : `http://127.0.0.1:${first.opsPort}`,
      generatedKey: [first, ...others].find((ready) => ready.generatedKey)?.generatedKey,
      apiPids: () => [...processes].filter((p) => !p.isDead()).map((p) => p.process.pid!),
      workerPid: () => worker?.pid,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * An API process of the cluster: the service without a worker (the primary runs it), telling the
 * primary when it listens. Stops on SIGTERM/SIGINT, also one that comes while it is starting (the
 * primary stopping while it replaced a dead process): it then stops as soon as it has started, so
 * it leaves nothing behind. node:cluster ends it if the primary dies.
 */
export async function runApiProcess(env: NodeJS.ProcessEnv): Promise<RunningService> {
  const starting = startService(env);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    const service = await starting.catch(() => undefined);
    await service?.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  const service = await starting;
  const opsPort = service.opsUrl === undefined ? undefined : Number(new URL(service.opsUrl).port);
  const ready: ApiProcessReady = { type: 'api-ready', port: service.port, opsPort, generatedKey: service.generatedKey };
  if (!stopping) process.send?.(ready);
  return service;
}
