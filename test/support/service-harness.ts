import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import IORedis from 'ioredis';
import { Database } from '../../src/data-access/db/database';
import { dataLayout } from '../../src/data-access/files/data-layout';
import { startService, type RunningService } from '../../src/processes/api-process';
import { OpenApiContract } from './openapi-contract';
import { createTestDatabase, testsUsePostgres } from './postgres';

export const ALICE_KEY = 'alice-key-0123456789';
export const BOB_KEY = 'bob-key-0123456789';
export const VERSION = 'version=2018-03-19';

export interface TestService {
  service: RunningService;
  url: string;
  dataDir: string;
  /**
   * fetch against the service with alice's key (Basic apikey:<key>) unless headers say otherwise.
   * Every answer is checked against the service's OpenAPI document (status documented for the
   * operation, body matching its schema); a mismatch throws, failing the test that made the call.
   */
  call(
    method: string,
    pathAndQuery: string,
    init?: { body?: FormData | string; headers?: Record<string, string>; key?: string | null },
  ): Promise<{ status: number; body: any }>;
  /** Stops the API and worker and starts them again on the same data dir and Redis namespace. */
  restart(): Promise<void>;
  /** A connection of the test's own to the service's database (SQLite file or PostgreSQL); close it after use. */
  openDatabase(): Promise<Database>;
  close(): Promise<void>;
}

/** The environment of a training worker process of this test's service (same data dir, database, Redis namespace). */
export function workerEnvironment(t: TestService, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const c = t.service.config;
  return {
    ...process.env,
    DATA_DIR: c.dataDir,
    MODELS_DIR: c.modelsDir,
    REDIS_URL: c.redisUrl,
    QUEUE_PREFIX: c.queuePrefix,
    ...(c.databaseUrl ? { DATABASE_URL: c.databaseUrl } : {}),
    ORT_THREADS: '1',
    LOG_LEVEL: 'warn',
    ...extra,
  };
}

export function basicAuth(key: string): string {
  return `Basic ${Buffer.from(`apikey:${key}`).toString('base64')}`;
}

/**
 * Boots the real service (API on port 0 + training worker process) on a temp data dir and the local
 * Redis; with TEST_DATABASE=postgres (npm run test:postgres), on a new PostgreSQL database of its own.
 */
export async function bootService(overrides: Record<string, string> = {}): Promise<TestService> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'wvr-test-'));
  const database = testsUsePostgres() && !('DATABASE_URL' in overrides) ? await createTestDatabase() : undefined;
  const queuePrefix = `wvr-test-${crypto.randomBytes(4).toString('hex')}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    QUEUE_PREFIX: queuePrefix,
    API_KEYS: `alice:${ALICE_KEY},bob:${BOB_KEY}`,
    LOG_LEVEL: 'warn',
    ORT_THREADS: '1',
    // Long enough that a worker busy training on a loaded machine keeps its job's lock: at 4 s, the baseline run
    // logged 296 failed lock renewals and trainings thrown away and run again ("Missing lock … moveToFinished").
    // Tests that kill a worker set a short one themselves, so its run is picked up again soon.
    TRAINING_LOCK_MS: '30000',
    ...(database ? { DATABASE_URL: database.url } : {}),
    ...overrides,
  };
  const service = await startService(env);
  // The document does not change across restarts: the same env gives the same config.
  const contract = new OpenApiContract(
    (await (await fetch(`${service.url}/v3/openapi.json`)).json()) as ConstructorParameters<typeof OpenApiContract>[0],
  );
  const t: TestService = {
    service,
    get url() {
      return this.service.url;
    },
    dataDir,
    openDatabase() {
      return Database.open({ databaseUrl: env.DATABASE_URL, sqliteFile: dataLayout(dataDir).database });
    },
    async restart() {
      await t.service.close();
      t.service = await startService(env);
    },
    async call(method, pathAndQuery, init = {}) {
      const headers: Record<string, string> = { ...(init.headers ?? {}) };
      const key = init.key === undefined ? ALICE_KEY : init.key;
      if (key !== null && !headers.Authorization) headers.Authorization = basicAuth(key);
      const res = await fetch(`${t.url}${pathAndQuery}`, { method, body: init.body, headers });
      const text = await res.text();
      let body: any = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: keep the text so the assertion shows it
      }
      const problems = contract.problems(method, pathAndQuery, res.status, res.headers.get('content-type'), body);
      if (problems.length > 0) throw new Error(`The answer breaks the OpenAPI document:\n${problems.join('\n')}`);
      return { status: res.status, body };
    },
    async close() {
      await t.service.close();
      await database?.drop();
      await fs.rm(dataDir, { recursive: true, force: true });
      const redis = new IORedis(env.REDIS_URL!);
      const keys = await redis.keys(`${queuePrefix}:*`);
      if (keys.length) await redis.del(...keys);
      await redis.quit();
    },
  };
  return t;
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 90_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Polls GET /v3/classifiers/{id} until the status is one of `statuses`. */
export async function waitForStatus(t: TestService, id: string, statuses: string[], timeoutMs = 90_000) {
  return waitFor(
    `classifier ${id} to be ${statuses.join('/')}`,
    async () => {
      const res = await t.call('GET', `/v3/classifiers/${id}?${VERSION}`);
      return statuses.includes(res.body.status) ? res.body : undefined;
    },
    timeoutMs,
  );
}
