import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DataDirectoryUnwritableError, ensureWritableDataDirectory } from '../../src/data-access/files/data-directory';
import { checkRedisAnswers, RedisUnavailableError } from '../../src/data-access/redis/redis-server';
import { SmallDisk, tmpfsUnavailableReason } from '../faults/support/tmpfs';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A port on 127.0.0.1 where nothing listens. */
async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

describe('the Redis check at start (REDIS_URL)', () => {
  it('passes for a Redis that answers', async () => {
    await expect(checkRedisAnswers(REDIS_URL)).resolves.toBeUndefined();
  });

  it('names the URL, without its password, and the reason when nothing answers there', async () => {
    const port = await closedPort();
    const check = checkRedisAnswers(`redis://:secret-password@127.0.0.1:${port}`);
    await expect(check).rejects.toThrow(RedisUnavailableError);
    await expect(check).rejects.toThrow(
      `The Redis at redis://:***@127.0.0.1:${port} (REDIS_URL) does not answer (connect ECONNREFUSED 127.0.0.1:${port}).`,
    );
  });
});

const noTmpfs = tmpfsUnavailableReason();
if (noTmpfs) console.warn(`SKIPPED the read-only and full data directory checks: ${noTmpfs}.`);
const withTmpfs = noTmpfs ? it.skip : it;

describe('the data directory check at start (DATA_DIR)', () => {
  it('makes a missing directory and leaves nothing else in it', async () => {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'start-checks-'));
    try {
      const dataDir = path.join(parent, 'data');
      await ensureWritableDataDirectory(dataDir);
      expect(fs.readdirSync(dataDir)).toEqual([]);
    } finally {
      fs.rmSync(parent, { recursive: true, force: true });
    }
  });

  withTmpfs('says the directory is read-only', async () => {
    const disk = SmallDisk.mount(1);
    try {
      execFileSync('mount', ['-o', 'remount,ro', disk.dir]);
      const check = ensureWritableDataDirectory(disk.dir);
      await expect(check).rejects.toThrow(DataDirectoryUnwritableError);
      await expect(check).rejects.toThrow(`The data directory ${disk.dir} (DATA_DIR) is on a read-only file system`);
    } finally {
      disk.unmount();
    }
  });

  withTmpfs('says the disk is full', async () => {
    const disk = SmallDisk.mount(1);
    try {
      disk.fill();
      await expect(ensureWritableDataDirectory(disk.dir)).rejects.toThrow(
        `The data directory ${disk.dir} (DATA_DIR) is on a full disk`,
      );
    } finally {
      disk.unmount();
    }
  });
});
