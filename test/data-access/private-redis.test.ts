import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pingRedis, RedisUnavailableError, startPrivateRedis } from '../../src/data-access/redis/redis-server';
import { createLogger } from '../../src/logger';
import { isRunning } from '../../src/lib/process-tag';

const ROOT = path.resolve(__dirname, '..', '..');
const logger = createLogger('silent', 'test');
const portOf = (url: string) => Number(new URL(url).port);

/** The private redis-server `npm start` runs without REDIS_URL: one per data directory, never two on its append-only file. */
describe('the private redis-server of a data directory', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'private-redis-'));
  });
  afterEach(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  it('refuses a second owner while the first runs, naming it, and is free again once the first stops', async () => {
    const first = await startPrivateRedis(dataDir, logger);
    try {
      expect(await pingRedis('127.0.0.1', portOf(first.url))).toBe(true);
      const second = startPrivateRedis(dataDir, logger);
      await expect(second).rejects.toThrow(RedisUnavailableError);
      await expect(second).rejects.toThrow(
        `run by another service process (pid ${process.pid} on ${os.hostname()}, ${first.url})`,
      );
    } finally {
      await first.stop();
    }
    expect(await pingRedis('127.0.0.1', portOf(first.url))).toBe(false);
    const again = await startPrivateRedis(dataDir, logger);
    expect(await pingRedis('127.0.0.1', portOf(again.url))).toBe(true);
    await again.stop();
  });

  it('never judges the pid of an owner in another pid scope (a container sharing this host name): it refuses', async () => {
    const first = await startPrivateRedis(dataDir, logger);
    const ownerFile = path.join(dataDir, 'redis', 'owner.json');
    const real = fs.readFileSync(ownerFile, 'utf8');
    try {
      const deadHere = spawnSync(process.execPath, ['-e', '']).pid;
      // Its pid means nothing here, even if no process of ours has it and the host name is ours.
      fs.writeFileSync(
        ownerFile,
        JSON.stringify({ host: os.hostname(), scope: '0'.repeat(12), pid: deadHere, redisPid: deadHere }),
      );
      await expect(startPrivateRedis(dataDir, logger)).rejects.toThrow(RedisUnavailableError);
      expect(await pingRedis('127.0.0.1', portOf(first.url))).toBe(true);
    } finally {
      fs.writeFileSync(ownerFile, real);
      await first.stop();
    }
  });

  it('takes over from an owner killed with SIGKILL, stopping the redis-server it left running', async () => {
    const script = `
      const { startPrivateRedis } = require('./src/data-access/redis/redis-server');
      const { createLogger } = require('./src/logger');
      startPrivateRedis(process.argv[1], createLogger('silent', 'test')).then((r) => process.stdout.write(r.url + '\\n'));
      setInterval(() => {}, 1000);
    `;
    const owner = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script, dataDir], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const url = await new Promise<string>((resolve) =>
      owner.stdout.once('data', (d: Buffer) => resolve(d.toString().trim())),
    );
    const orphanPid = JSON.parse(fs.readFileSync(path.join(dataDir, 'redis', 'owner.json'), 'utf8')).redisPid as number;
    owner.kill('SIGKILL');
    await new Promise((r) => owner.once('exit', r));
    expect(await pingRedis('127.0.0.1', portOf(url))).toBe(true); // left running

    const next = await startPrivateRedis(dataDir, logger);
    try {
      expect(isRunning(orphanPid)).toBe(false);
      expect(await pingRedis('127.0.0.1', portOf(next.url))).toBe(true);
    } finally {
      await next.stop();
    }
  });
});
