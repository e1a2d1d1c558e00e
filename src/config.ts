import path from 'node:path';
import os from 'node:os';
import { z } from 'zod';
import { StartupError } from './errors';

const MB = 1024 * 1024;

const intFrom = (fallback: number, min = 0) => z.coerce.number().int().min(min).default(fallback);

const booleanFrom = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .default(fallback ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** Environment variables the service reads. Every one is documented in README.md. */
const environmentSchema = z.object({
  PORT: intFrom(8080, 0).refine((p) => p <= 65535, 'must be a TCP port (0-65535)'),
  HOST: z.string().default('0.0.0.0'),
  KEEP_ALIVE_TIMEOUT_MS: intFrom(125_000, 1000),
  DATA_DIR: z.string().default('./data'),
  MODELS_DIR: z.string().optional(),
  REDIS_URL: z.string().url().optional(),
  DATABASE_URL: z
    .string()
    .regex(
      /^postgres(ql)?:\/\/\S+$/,
      'must be a PostgreSQL URL (postgres://user:password@host:5432/database); leave it unset for the embedded SQLite',
    )
    .optional(),
  DATABASE_STALL_TIMEOUT_MS: intFrom(30_000, 1000),
  API_PROCESSES: intFrom(1, 1),
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_:-]+$/, 'letters, digits, _ : - only')
    .default('watson-vr'),
  API_KEYS: z.string().optional(),
  WORKER_CONCURRENCY: intFrom(1, 1),
  ORT_THREADS: intFrom(Math.min(2, os.cpus().length), 1),
  START_WORKER: booleanFrom(true),
  MAX_ZIP_MB: intFrom(100, 1),
  MAX_REQUEST_MB: intFrom(256, 1),
  MIN_IMAGES_PER_ZIP: intFrom(10, 1),
  MAX_IMAGES_PER_ZIP: intFrom(10_000, 1),
  MAX_CLASSIFY_IMAGE_MB: intFrom(10, 1),
  MAX_CLASSIFY_ZIP_IMAGES: intFrom(20, 1),
  TRAINING_ATTEMPTS: intFrom(3, 1),
  URL_FETCH_TIMEOUT_MS: intFrom(10_000, 100),
  ALLOW_PRIVATE_URLS: booleanFrom(false),
  TRAINING_LOCK_MS: intFrom(60_000, 1000),
  CORS_ORIGINS: z.string().default(''),
  OBJECT_DETECTION: booleanFrom(true),
  RATE_LIMIT_PER_MINUTE: intFrom(600, 0),
  METRICS_ENABLED: booleanFrom(true),
  HEALTH_ENABLED: booleanFrom(true),
  OPS_PORT: z.coerce.number().int().min(0).max(65535, 'must be a TCP port (0-65535)').optional(),
  OPS_HOST: z.string().optional(),
  METRICS_PUBLISH_INTERVAL_MS: intFrom(5000, 100),
  KEEP_VERSIONS: intFrom(10, 1),
  UPLOAD_CLAIM_TTL_MS: intFrom(120_000, 1000),
  VERSION_LEASE_TTL_MS: intFrom(30_000, 1000),
  ORPHAN_SWEEP_MS: intFrom(600_000, 1000),
  CALLBACK_ATTEMPTS: intFrom(8, 1),
  CALLBACK_BACKOFF_MS: intFrom(10_000, 10),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export interface Config {
  port: number;
  host: string;
  /** Idle keep-alive connections stay open this long: longer than any client's or proxy's reuse of them. */
  keepAliveTimeoutMs: number;
  dataDir: string;
  modelsDir: string;
  redisUrl?: string;
  /** PostgreSQL to keep metadata in; undefined: the embedded SQLite file under DATA_DIR. */
  databaseUrl?: string;
  /**
   * PostgreSQL: a process stopped this long (ms) inside a transaction (frozen, hung, or not reading
   * the server's answer) has its session ended by the server and the transaction rolled back, so it
   * holds the others' writes at most this long (see DatabaseTarget.stallTimeoutMs). The default,
   * 30 s, is far above the longest write transaction measured (0.4 s, the cluster fault test at load
   * average 10 on 2 cores) and the longest event-loop stall seen on a loaded CI machine (4 s).
   */
  databaseStallTimeoutMs: number;
  /** API processes `npm start` runs on the one port (node:cluster); each has its own model threads. */
  apiProcesses: number;
  /** Redis key prefix of the BullMQ queues, so several instances can share one Redis. */
  queuePrefix: string;
  apiKeys: Array<{ owner: string; key: string }>;
  workerConcurrency: number;
  ortThreads: number;
  startWorker: boolean;
  limits: {
    maxZipBytes: number;
    maxRequestBytes: number;
    minImagesPerZip: number;
    maxImagesPerZip: number;
    maxClassifyImageBytes: number;
    maxClassifyZipImages: number;
  };
  trainingAttempts: number;
  urlFetchTimeoutMs: number;
  /** Lets /v3/classify fetch URLs on loopback and private networks (off by default: SSRF). */
  allowPrivateUrls: boolean;
  /** BullMQ lock duration: a killed worker's run is picked up again after about this long. */
  trainingLockMs: number;
  /** Run the COCO object detector for `default` (≈50–75 ms of CPU per image). */
  objectDetection: boolean;
  /** Origins allowed to call the API from a browser; empty: CORS off. */
  corsOrigins: string[];
  /** Expensive requests (create, update, classify) per owner per minute; 0: no limit. */
  rateLimitPerMinute: number;
  /** Operations endpoints: /metrics and /healthz + /readyz, on the API's port or on their own. */
  ops: {
    metrics: boolean;
    health: boolean;
    /** Serve them on this port (and not on the API's); undefined: on the API's port. */
    port?: number;
    host: string;
    /** How often a training worker publishes its metrics to Redis (its snapshot lives 3 times as long). */
    publishIntervalMs: number;
  };
  /** Retention: the newest versions per classifier whose head files are kept (the current one always is). */
  keepVersions: number;
  /**
   * How long an upload's claim on its images lasts unless renewed (it is, every quarter of this, while
   * the upload runs): after a process dies mid-upload, its images become removable orphans this much later.
   */
  uploadClaimTtlMs: number;
  /**
   * How long a process's leases on the versions its classify requests use last in Redis unless
   * renewed (they are, every third of this, while a request holds them): after a process dies, the
   * versions it held become prunable this much later.
   */
  versionLeaseTtlMs: number;
  /** How often each API process removes orphaned image files (also once at start). */
  orphanSweepMs: number;
  /** Training-end callbacks: tries per delivery, and the first retry's delay (doubling after each try). */
  callbackAttempts: number;
  callbackBackoffMs: number;
  logLevel: string;
}

export class ConfigError extends StartupError {}

/** Parses the API_KEYS variable: `owner:key,owner2:key2`. */
function parseApiKeys(raw: string | undefined): Array<{ owner: string; key: string }> {
  if (!raw || raw.trim() === '') return [];
  return raw.split(',').map((pair, i) => {
    const at = pair.indexOf(':');
    const owner = pair.slice(0, at).trim();
    const key = pair.slice(at + 1).trim();
    if (at <= 0 || key.length < 8 || !/^[A-Za-z0-9_.@-]+$/.test(owner)) {
      throw new ConfigError(
        `API_KEYS entry ${i + 1} is not "owner:key" (owner of letters, digits, _.@- and a key of at least 8 characters)`,
      );
    }
    return { owner, key };
  });
}

/** Reads and validates the configuration once; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = environmentSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`Invalid configuration: ${problems}`);
  }
  const e = parsed.data;
  const dataDir = path.resolve(e.DATA_DIR);
  return {
    port: e.PORT,
    host: e.HOST,
    keepAliveTimeoutMs: e.KEEP_ALIVE_TIMEOUT_MS,
    dataDir,
    modelsDir: path.resolve(e.MODELS_DIR ?? path.join(dataDir, 'models')),
    redisUrl: e.REDIS_URL,
    databaseUrl: e.DATABASE_URL,
    databaseStallTimeoutMs: e.DATABASE_STALL_TIMEOUT_MS,
    apiProcesses: e.API_PROCESSES,
    queuePrefix: e.QUEUE_PREFIX,
    apiKeys: parseApiKeys(e.API_KEYS),
    workerConcurrency: e.WORKER_CONCURRENCY,
    ortThreads: e.ORT_THREADS,
    startWorker: e.START_WORKER,
    limits: {
      maxZipBytes: e.MAX_ZIP_MB * MB,
      maxRequestBytes: e.MAX_REQUEST_MB * MB,
      minImagesPerZip: e.MIN_IMAGES_PER_ZIP,
      maxImagesPerZip: e.MAX_IMAGES_PER_ZIP,
      maxClassifyImageBytes: e.MAX_CLASSIFY_IMAGE_MB * MB,
      maxClassifyZipImages: e.MAX_CLASSIFY_ZIP_IMAGES,
    },
    trainingAttempts: e.TRAINING_ATTEMPTS,
    urlFetchTimeoutMs: e.URL_FETCH_TIMEOUT_MS,
    allowPrivateUrls: e.ALLOW_PRIVATE_URLS,
    trainingLockMs: e.TRAINING_LOCK_MS,
    objectDetection: e.OBJECT_DETECTION,
    corsOrigins: e.CORS_ORIGINS.split(',')
      .map((o) => o.trim())
      .filter(Boolean),
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    ops: {
      metrics: e.METRICS_ENABLED,
      health: e.HEALTH_ENABLED,
      port: e.OPS_PORT,
      host: e.OPS_HOST ?? e.HOST,
      publishIntervalMs: e.METRICS_PUBLISH_INTERVAL_MS,
    },
    keepVersions: e.KEEP_VERSIONS,
    uploadClaimTtlMs: e.UPLOAD_CLAIM_TTL_MS,
    versionLeaseTtlMs: e.VERSION_LEASE_TTL_MS,
    orphanSweepMs: e.ORPHAN_SWEEP_MS,
    callbackAttempts: e.CALLBACK_ATTEMPTS,
    callbackBackoffMs: e.CALLBACK_BACKOFF_MS,
    logLevel: e.LOG_LEVEL,
  };
}
