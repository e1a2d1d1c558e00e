import crypto from 'node:crypto';
import IORedis from 'ioredis';
import { VersionLeases } from '../../src/data-access/redis/version-leases';
import { PrivateRedis } from '../faults/support/private-redis';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The leases of several processes of one instance, seen through Redis (each VersionLeases stands for one process). */
describe('VersionLeases', () => {
  let namespace: string;
  const opened: VersionLeases[] = [];
  const open = async (ttlMs = 30_000, url = REDIS_URL, onError?: (e: unknown) => void) => {
    const leases = await VersionLeases.open(url, namespace, ttlMs, onError);
    opened.push(leases);
    return leases;
  };

  beforeEach(() => {
    namespace = `wvr-test-${crypto.randomBytes(4).toString('hex')}`;
  });
  afterEach(async () => {
    for (const leases of opened.splice(0)) await leases.close();
    const redis = new IORedis(REDIS_URL);
    await redis.del(`${namespace}:version-leases`);
    await redis.quit();
  });

  it("counts a process's requests per version: a version is held until its last request ends, in every process's view", async () => {
    const api = await open();
    const worker = await open();
    const first = await api.hold([1, 2]);
    const second = await api.hold([2, 3]);
    expect(await worker.held()).toEqual(new Set([1, 2, 3]));
    await first.release();
    await first.release(); // a second release of the same lease changes nothing
    expect(await worker.held()).toEqual(new Set([2, 3]));
    await second.release();
    expect(await worker.held()).toEqual(new Set());
  });

  it("keeps each process's hold apart: one process ending its requests does not end another's", async () => {
    const a = await open();
    const b = await open();
    const fromA = await a.hold([7]);
    const fromB = await b.hold([7]);
    await fromA.release();
    expect(await a.held()).toEqual(new Set([7]));
    await fromB.release();
    expect(await a.held()).toEqual(new Set());
  });

  it('renews what it holds, so a lease outlasts its TTL while held, and expires a TTL after renewals stop', async () => {
    const holder = await open(600);
    const reader = await open();
    const lease = await holder.hold([5]);
    await sleep(2_000);
    expect(await reader.held()).toEqual(new Set([5]));
    // A process that stops renewing (as a killed one does): close() removes its members, so stop only the timer here.
    clearInterval((holder as unknown as { timer: NodeJS.Timeout }).timer);
    await sleep(1_000);
    expect(await reader.held()).toEqual(new Set());
    await lease.release();
  });

  it('lets a request run unleased while Redis is away, holds its versions again once Redis is back, and refuses to tell retention anything meanwhile', async () => {
    const redis = await PrivateRedis.start();
    try {
      const errors: unknown[] = [];
      const holder = await open(1_500, redis.url, (e) => errors.push(e));
      await redis.kill();
      const started = Date.now();
      const lease = await holder.hold([9]);
      expect(Date.now() - started).toBeLessThan(2_500);
      expect(errors.length).toBeGreaterThan(0);
      await expect(holder.held()).rejects.toThrow();

      await redis.restartEmpty();
      const reader = await open(30_000, redis.url);
      // The next renewal (every TTL / 3) writes the held version again.
      const deadline = Date.now() + 10_000;
      while (!(await reader.held()).has(9) && Date.now() < deadline) await sleep(100);
      expect(await reader.held()).toEqual(new Set([9]));
      await lease.release();
      expect(await reader.held()).toEqual(new Set());
    } finally {
      for (const leases of opened.splice(0)) await leases.close();
      await redis.kill();
    }
  });
});
