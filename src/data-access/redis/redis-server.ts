import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import IORedis from 'ioredis';
import lockfile from 'proper-lockfile';
import { StartupError } from '../../errors';
import type { Logger } from '../../logger';
import { isRunning, PID_SCOPE } from '../../lib/process-tag';

export class RedisUnavailableError extends StartupError {}

export interface RedisHandle {
  url: string;
  /** Stops the private redis-server, if this process started one. */
  stop(): Promise<void>;
}

/** Sends PING and waits for +PONG. */
export function pingRedis(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function commandExists(command: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => dir && fs.existsSync(path.join(dir, command)));
}

/**
 * Checks once, at start, that the Redis at `url` (REDIS_URL) answers, so that a stopped, unreachable or
 * password-protected one stops the start with a message naming it rather than an error from the first
 * queue that uses it. Waits up to `timeoutMs` for the connection: a first start loads the CPU.
 * @throws RedisUnavailableError
 */
export async function checkRedisAnswers(url: string, timeoutMs = 10_000): Promise<void> {
  const redis = new IORedis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  let cause: string | undefined;
  redis.on('error', (error: Error) => (cause ??= error.message));
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    const shown = new URL(url);
    if (shown.password) shown.password = '***';
    throw new RedisUnavailableError(
      `The Redis at ${shown.toString()} (REDIS_URL) does not answer (${cause ?? (error as Error).message}). ` +
        "Start it, or set REDIS_URL to the instance's Redis (with its password, if it has one).",
    );
  } finally {
    redis.disconnect();
  }
}

/**
 * REDIS_URL if given (and answering); else a Redis answering on 127.0.0.1:6379; else a private redis-server
 * (AOF on, data under the data dir, noeviction, so queued training survives restarts).
 */
export async function resolveRedis(
  redisUrl: string | undefined,
  dataDir: string,
  logger: Logger,
): Promise<RedisHandle> {
  if (redisUrl) {
    await checkRedisAnswers(redisUrl);
    return { url: redisUrl, stop: async () => undefined };
  }
  if (await pingRedis('127.0.0.1', 6379)) {
    logger.info('using the Redis answering on 127.0.0.1:6379');
    return { url: 'redis://127.0.0.1:6379', stop: async () => undefined };
  }
  if (!commandExists('redis-server')) {
    throw new RedisUnavailableError(
      'No Redis answers on 127.0.0.1:6379 and redis-server is not installed. ' +
        'Install it (Debian/Ubuntu: apt-get install redis-server) or set REDIS_URL to a Redis you run.',
    );
  }
  return startPrivateRedis(dataDir, logger);
}

/** The private redis-server's lock is refreshed every half of this; a holder silent this long is dead. */
const OWNER_LOCK_STALE_MS = 30_000;

interface Owner {
  host: string;
  /** Whose pids `pid` and `redisPid` are (PID_SCOPE): only a process of the same scope may judge them. */
  scope?: string;
  pid: number;
  redisPid?: number;
  url?: string;
}

/**
 * Starts a redis-server of its own on DATA_DIR/redis, holding the lock `redis/owner.lock` while it
 * runs: a second `npm start` on the same data directory (on this machine, or another sharing the
 * volume) would run a second server on the same append-only file, and queue into a Redis of its
 * own, so it is refused with a message instead. (API_PROCESSES starts one for all its processes.)
 * The lock of a process of this pid scope (this machine, this container) that has died is taken over
 * at once, after stopping the redis-server it left running; another scope's, once it is stale.
 */
export async function startPrivateRedis(dataDir: string, logger: Logger): Promise<RedisHandle> {
  const dir = path.join(dataDir, 'redis');
  fs.mkdirSync(dir, { recursive: true });
  const ownerFile = path.join(dir, 'owner.json');
  const lockPath = path.join(dir, 'owner.lock');
  const lock = () =>
    lockfile.lock(dir, {
      realpath: false,
      lockfilePath: lockPath,
      stale: OWNER_LOCK_STALE_MS,
      onCompromised: (err) =>
        logger.error({ err }, 'lost the lock on the private redis-server: another process took it as stale'),
    });
  let release: () => Promise<void>;
  try {
    release = await lock();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error;
    const owner = readOwner(ownerFile);
    if (!owner || owner.scope !== PID_SCOPE || isRunning(owner.pid)) {
      const who = owner ? ` (pid ${owner.pid} on ${owner.host}${owner.url ? `, ${owner.url}` : ''})` : '';
      throw new RedisUnavailableError(
        `The private redis-server of ${dataDir} is run by another service process${who} on this data directory. ` +
          'The processes of one instance share one Redis: run more API processes with API_PROCESSES, or set REDIS_URL ' +
          'on every process (a worker-only host needs it too).',
      );
    }
    logger.warn(
      { pid: owner.pid, redisPid: owner.redisPid },
      'the last owner of the private redis-server died; taking it over',
    );
    if (owner.redisPid !== undefined) await stopOrphan(owner.redisPid);
    fs.rmSync(lockPath, { recursive: true, force: true });
    release = await lock();
  }
  try {
    fs.writeFileSync(
      ownerFile,
      JSON.stringify({ host: os.hostname(), scope: PID_SCOPE, pid: process.pid } satisfies Owner),
    );
    const server = await spawnRedisServer(dir, logger);
    fs.writeFileSync(
      ownerFile,
      JSON.stringify({
        host: os.hostname(),
        scope: PID_SCOPE,
        pid: process.pid,
        redisPid: server.pid,
        url: server.url,
      } satisfies Owner),
    );
    return {
      url: server.url,
      stop: async () => {
        await server.stop();
        fs.rmSync(ownerFile, { force: true });
        await release().catch(() => undefined);
      },
    };
  } catch (error) {
    await release().catch(() => undefined);
    throw error;
  }
}

function readOwner(ownerFile: string): Owner | undefined {
  try {
    const owner = JSON.parse(fs.readFileSync(ownerFile, 'utf8')) as Partial<Owner>;
    return typeof owner.host === 'string' && typeof owner.pid === 'number' ? (owner as Owner) : undefined;
  } catch {
    return undefined;
  }
}

/** SIGTERM (redis-server then flushes its append-only file), SIGKILL after 10 s; only if the pid is still a redis-server. */
async function stopOrphan(pid: number): Promise<void> {
  const command = await fs.promises.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
  if (!command.startsWith('redis-server')) return; // gone, its pid reused, or no /proc to tell
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && isRunning(pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (isRunning(pid)) process.kill(pid, 'SIGKILL');
}

async function spawnRedisServer(dir: string, logger: Logger): Promise<RedisHandle & { pid?: number }> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--save',
      '',
      '--maxmemory-policy',
      'noeviction',
      '--logfile',
      path.join(dir, 'redis.log'),
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  for (let i = 0; i < 100; i++) {
    if (await pingRedis('127.0.0.1', port)) {
      logger.info({ port, dir }, 'started a private redis-server');
      return {
        url: `redis://127.0.0.1:${port}`,
        pid: child.pid,
        stop: async () => {
          child.kill('SIGTERM');
          await exited;
        },
      };
    }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new RedisUnavailableError(`redis-server did not start; see ${path.join(dir, 'redis.log')}`);
}
