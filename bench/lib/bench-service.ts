import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import IORedis from 'ioredis';
import { WorkerSupervisor } from '../../src/processes/worker-supervisor';
import { createLogger } from '../../src/logger';
import { modelsDir } from './repo';
import type { BenchServiceReady } from './service-process';

/** How long the service may take to start, and to stop before it is killed. */
export const START_TIMEOUT_MS = 180_000;
export const STOP_TIMEOUT_MS = 30_000;
/** USER_HZ of /proc times: 100 on Linux. */
const CLOCK_TICKS_PER_S = 100;

/** Thrown when nothing answers at the Redis URL the bench would give the service. */
export class RedisNotAnsweringError extends Error {
  constructor(
    readonly redisUrl: string,
    reason: string,
  ) {
    super(
      `No Redis answers at ${redisUrl} (${reason}): start redis-server (apt-get install redis-server) or set REDIS_URL`,
    );
    this.name = 'RedisNotAnsweringError';
  }
}

export class BenchServiceStartError extends Error {
  constructor(reason: string) {
    super(`The service process did not start: ${reason}`);
    this.name = 'BenchServiceStartError';
  }
}

/** The real service running in a child process on 127.0.0.1, on a temp data dir and its own queue prefix. */
export interface BenchService {
  url: string;
  apiKey: string;
  /** The API process (the child); with API_PROCESSES > 1, the cluster's primary. Its training worker is `workerPid`. */
  pid: number;
  /** The processes that answer API calls: `[pid]`, or the cluster's API processes (the primary's children). */
  apiPids: number[];
  workerPid?: number;
  dataDir: string;
  /** The environment the service was started with (DATA_DIR, REDIS_URL, QUEUE_PREFIX, DATABASE_URL…): what another process of the same instance needs. */
  env: NodeJS.ProcessEnv;
  /** Stops the service, removes the data dir and the queue prefix's Redis keys. */
  stop(): Promise<void>;
}

async function checkRedis(redisUrl: string): Promise<void> {
  const redis = new IORedis(redisUrl, {
    lazyConnect: true,
    connectTimeout: 2000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    throw new RedisNotAnsweringError(redisUrl, error instanceof Error ? error.message : String(error));
  } finally {
    redis.disconnect();
  }
}

async function deleteKeys(redisUrl: string, prefix: string): Promise<void> {
  const redis = new IORedis(redisUrl, { maxRetriesPerRequest: 1 });
  try {
    const stream = redis.scanStream({ match: `${prefix}:*`, count: 500 });
    for await (const keys of stream as AsyncIterable<string[]>) {
      if (keys.length) await redis.del(...keys);
    }
  } finally {
    await redis.quit();
  }
}

/** Waits for the child's ready line; other stdout lines (the service's warn logs) go to our stderr. */
function waitForReady(child: ChildProcess): Promise<BenchServiceReady> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new BenchServiceStartError(`no ready line within ${START_TIMEOUT_MS / 1000} s`)),
      START_TIMEOUT_MS,
    );
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let message: { benchServiceReady?: BenchServiceReady } | undefined;
      try {
        message = JSON.parse(line);
      } catch {
        // not JSON: plain output of the service
      }
      if (message?.benchServiceReady) {
        clearTimeout(timer);
        resolve(message.benchServiceReady);
      } else {
        process.stderr.write(`[service] ${line}\n`);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new BenchServiceStartError(`it exited with code ${code}, signal ${signal}`));
    });
  });
}

/**
 * Starts the real service in a child process (`service-process`, from source under ts-node, else
 * compiled) with `env`, `options.niceness` steps nicer than this process when given, in a session of
 * its own (so a terminal's Ctrl-C reaches only this process). Its stdin is a pipe: when this process
 * dies, the service stops. `ready` resolves with its ready line, and
 * rejects (BenchServiceStartError) if it exits first or prints none within START_TIMEOUT_MS.
 */
export function spawnServiceProcess(
  env: NodeJS.ProcessEnv,
  options: { niceness?: number } = {},
): { child: ChildProcess; ready: Promise<BenchServiceReady> } {
  // Compiled, this is dist/bench/lib/*.js; under ts-node, the .ts sources.
  const fromSource = __filename.endsWith('.ts');
  const script = path.join(__dirname, fromSource ? 'service-process.ts' : 'service-process.js');
  // BENCH_NODE_ARGS: extra node flags for the service, e.g. '--cpu-prof --cpu-prof-dir=/tmp/prof' (node refuses --cpu-prof in NODE_OPTIONS).
  const execArgv = [
    ...(fromSource ? ['-r', 'ts-node/register/transpile-only'] : []),
    ...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
  ];
  const command = [process.execPath, ...execArgv, script];
  // `nice` execs node in place, so the child's pid is the API's.
  if (options.niceness !== undefined) command.unshift('nice', '-n', String(options.niceness));
  // Its own session (setsid), hence its own scheduler autogroup: on a shared machine where every
  // session gets an equal share of the CPU, the load generator's work (making zips, checking answers)
  // would otherwise come out of the service's share and count as the service's latency.
  const child = spawn(command[0], command.slice(1), { env, stdio: ['pipe', 'pipe', 'inherit'], detached: true });
  return { child, ready: waitForReady(child) };
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    child.once('exit', () => {
      clearTimeout(killer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * Boots the service in a child process (`service-process`) with REDIS_URL (env or
 * redis://127.0.0.1:6379), a unique QUEUE_PREFIX, API_KEYS=bench:<random key>,
 * LOG_LEVEL=warn, RATE_LIMIT_PER_MINUTE=0 (no per-account limit), MODELS_DIR (env or <repo>/models) and a temp DATA_DIR;
 * `overrides` adds or replaces other variables (ORT_THREADS, API_PROCESSES, say), and removes
 * those it sets to undefined (DATABASE_URL, for the embedded SQLite); `options.niceness` starts it
 * that many steps nicer than this process.
 */
export async function startBenchService(
  overrides: Record<string, string | undefined> = {},
  options: { niceness?: number } = {},
): Promise<BenchService> {
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  await checkRedis(redisUrl);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-bench-'));
  const queuePrefix = `wvr-bench-${crypto.randomBytes(4).toString('hex')}`;
  const apiKey = crypto.randomBytes(18).toString('base64url');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    MODELS_DIR: modelsDir(),
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: queuePrefix,
    API_KEYS: `bench:${apiKey}`,
    LOG_LEVEL: 'warn',
    // The per-account limit (600/min by default) would answer a load test with 429s.
    RATE_LIMIT_PER_MINUTE: '0',
    ...overrides,
  };
  for (const [name, value] of Object.entries(overrides)) if (value === undefined) delete env[name];
  const { child, ready: whenReady } = spawnServiceProcess(env, options);

  const cleanUp = async () => {
    await stopChild(child);
    fs.rmSync(dataDir, { recursive: true, force: true });
    await deleteKeys(redisUrl, queuePrefix);
  };
  let ready: BenchServiceReady;
  try {
    ready = await whenReady;
  } catch (error) {
    await cleanUp();
    throw error;
  }
  let stopping = false;
  child.once('exit', (code, signal) => {
    // Calls fail from here on; this says why.
    if (!stopping)
      console.error(
        `[bench] the service process exited during the bench (code ${code}, signal ${signal}); its output is above`,
      );
  });
  const stop = async () => {
    stopping = true;
    await cleanUp();
  };
  return {
    url: ready.url,
    apiKey,
    pid: ready.pid,
    apiPids: ready.apiPids ?? [ready.pid],
    workerPid: ready.workerPid,
    dataDir,
    env,
    stop,
  };
}

/** A training worker started beside a bench service, on its data directory, database and Redis namespace. */
export interface ExtraWorker {
  pid: number;
  stop(): Promise<void>;
}

/**
 * Starts another training worker process for `service`'s instance (the one `npm run worker` runs,
 * launched as `npm start` launches its own, with the service's environment), resolving once it is
 * ready: BullMQ then hands each training job to one of the instance's workers. It stops when this
 * process exits.
 */
export async function startExtraWorker(service: BenchService): Promise<ExtraWorker> {
  const supervisor = new WorkerSupervisor(service.env, createLogger('warn', 'bench-worker'));
  await supervisor.start();
  return { pid: supervisor.pid!, stop: () => supervisor.stop() };
}

/**
 * CPU seconds used so far by all of `pids` together (see cpuSeconds); undefined when any is
 * unreadable, so a sum never silently leaves a process out.
 */
export function summedCpuSeconds(pids: Array<number | undefined>): number | undefined {
  let sum = 0;
  for (const pid of new Set(pids)) {
    const cpu = cpuSeconds(pid);
    if (cpu === undefined) return undefined;
    sum += cpu;
  }
  return sum;
}

/** Resident memory of a process in MB (VmRSS of /proc/<pid>/status), or undefined where unreadable. */
export function residentMb(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Math.round(Number(match[1]) / 102.4) / 10 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system, all threads) a process has used so far, from /proc/<pid>/stat; undefined where unreadable. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is the 3rd field of the line, utime the 14th and stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/**
 * Open file descriptors of a process (entries of /proc/<pid>/fd), not counting the TCP connections
 * clients opened to `serverPort`, which come and go with the load (listening sockets do count).
 * `clientConnections` counts those. Undefined where /proc is unreadable (not Linux, process gone).
 */
export function openFileDescriptors(
  pid: number | undefined,
  serverPort?: number,
): { open: number; clientConnections: number } | undefined {
  if (pid === undefined) return undefined;
  let links: string[];
  try {
    links = fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return ''; // closed between the listing and the read
      }
    });
  } catch {
    return undefined;
  }
  const accepted = serverPort === undefined ? new Set<string>() : acceptedConnectionInodes(pid, serverPort);
  let clientConnections = 0;
  let open = 0;
  for (const link of links) {
    const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (inode !== undefined && accepted.has(inode)) clientConnections++;
    else if (link !== '') open++;
  }
  return { open, clientConnections };
}

/** Inodes of the TCP sockets whose local port is `port` and that are not listening (st 0A), from /proc/<pid>/net/tcp{,6}. */
function acceptedConnectionInodes(pid: number, port: number): Set<string> {
  const inodes = new Set<string>();
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    // Columns: sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
    for (const line of text.split('\n').slice(1)) {
      const columns = line.trim().split(/\s+/);
      if (columns.length < 10) continue;
      const localPort = parseInt(columns[1].split(':')[1], 16);
      if (localPort === port && columns[3] !== '0A') inodes.add(columns[9]);
    }
  }
  return inodes;
}
