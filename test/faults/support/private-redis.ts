import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { pingRedis } from '../../../src/data-access/redis/redis-server';

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

export class PrivateRedisError extends Error {}

/**
 * A redis-server of the test's own on a spare port, without persistence (no RDB, no AOF): killing
 * and starting it again loses every key, as a restarted cache-style Redis does.
 */
export class PrivateRedis {
  private child?: ChildProcess;
  private exited?: Promise<void>;

  private constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<PrivateRedis> {
    const redis = new PrivateRedis(await freePort());
    await redis.launch();
    return redis;
  }

  private async launch(): Promise<void> {
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', '/tmp'],
      { stdio: 'ignore' },
    );
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('error', () => undefined); // reported below as "did not answer"
    for (let i = 0; i < 100; i++) {
      if (await pingRedis('127.0.0.1', this.port)) return;
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGKILL');
    throw new PrivateRedisError(`redis-server on port ${this.port} did not answer PING (is redis-server installed?)`);
  }

  /** kill -9, then a fresh start on the same port: every key is gone. */
  async restartEmpty(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await this.exited;
  }
}
