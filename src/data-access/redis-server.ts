import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../logger';

export class RedisUnavailableError extends Error {}

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
  return (process.env.PATH ?? '')
    .split(path.delimiter)
    .some((dir) => dir && fs.existsSync(path.join(dir, command)));
}

/**
 * REDIS_URL if given; else a Redis answering on 127.0.0.1:6379; else a private redis-server
 * (AOF on, data under the data dir, noeviction, so queued training survives restarts).
 */
export async function resolveRedis(redisUrl: string | undefined, dataDir: string, logger: Logger): Promise<RedisHandle> {
  if (redisUrl) return { url: redisUrl, stop: async () => undefined };
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
  const dir = path.join(dataDir, 'redis');
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '',
     '--maxmemory-policy', 'noeviction', '--logfile', path.join(dir, 'redis.log')],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  for (let i = 0; i < 100; i++) {
    if (await pingRedis('127.0.0.1', port)) {
      logger.info({ port, dir }, 'started a private redis-server');
      return {
        url: `redis://127.0.0.1:${port}`,
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
