import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';
import { classImages } from '../../fixtures/images';
import { NamespaceInUseError } from '../../src/data-access/redis/namespace-claim';
import { TRAINING_QUEUE_NAME } from '../../src/data-access/redis/training-queue';
import { startService } from '../../src/processes/api-process';
import { bootService, VERSION, waitFor, waitForStatus, type TestService } from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';

/**
 * Issue 8, reproduction 2: two instances (two data dirs) on one Redis with the same QUEUE_PREFIX.
 * Before instance identities, the second instance's worker took the first one's training jobs,
 * found no such classifier in its own database and dropped them ("gone"), leaving them training.
 */
describe('two instances on one Redis and one QUEUE_PREFIX', () => {
  const sharedPrefix = `wvr-two-${crypto.randomBytes(4).toString('hex')}`;
  const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
  let first: TestService;
  let second: TestService;
  let zips: Buffer[];

  beforeAll(async () => {
    const env = { QUEUE_PREFIX: sharedPrefix, OBJECT_DETECTION: 'false' };
    [first, second] = [await bootService(env), await bootService(env)];
    zips = [
      await classZip('red-circles', 10, 1),
      await classZip('blue-squares', 10, 2),
      await classZip('green-stripes', 10, 3),
    ];
  });
  afterAll(async () => {
    await first?.close();
    await second?.close();
    const redis = new IORedis(redisUrl);
    const keys = await redis.keys(`${sharedPrefix}:*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
  });

  it('have separate identities and queue namespaces', () => {
    expect(first.service.instanceId).not.toBe(second.service.instanceId);
    expect(first.service.queueNamespace).toBe(`${sharedPrefix}:${first.service.instanceId}`);
    expect(second.service.queueNamespace).toBe(`${sharedPrefix}:${second.service.instanceId}`);
  });

  it('train every classifier of each instance to ready, and none is dropped as gone', async () => {
    const created: Array<{ t: TestService; id: string }> = [];
    for (let i = 0; i < 4; i++) {
      for (const t of [first, second]) {
        const res = await t.call('POST', `/v3/classifiers?${VERSION}`, {
          body: trainingForm(
            { circles_positive_examples: zips[0], squares_positive_examples: zips[1], negative_examples: zips[2] },
            { name: `shapes ${i}` },
          ),
        });
        expect(res.status).toBe(200);
        created.push({ t, id: res.body.classifier_id });
      }
    }
    for (const { t, id } of created)
      expect((await waitForStatus(t, id, ['ready', 'failed'], 120_000)).status).toBe('ready');

    const [probe] = await classImages('red-circles', 1, 7);
    for (const { t, id } of created) {
      const form = new FormData();
      form.append('images_file', new Blob([new Uint8Array(probe)]), 'probe.jpg');
      form.append('classifier_ids', id);
      const res = await t.call('POST', `/v3/classify?${VERSION}`, { body: form });
      expect(res.status).toBe(200);
      expect(res.body.images[0].classifiers[0].classes[0].class).toBe('circles');
    }

    // Every finished run of each instance trained its own classifier; nothing failed or was "gone".
    for (const t of [first, second]) {
      const queue = new Queue(TRAINING_QUEUE_NAME, { connection: { url: redisUrl }, prefix: t.service.queueNamespace });
      const completed = await queue.getCompleted();
      const failed = await queue.getFailed();
      await queue.close();
      expect(failed).toEqual([]);
      const mine = new Set(created.filter((c) => c.t === t).map((c) => c.id));
      for (const job of completed) {
        expect(mine.has(job.data.classifierId)).toBe(true);
        expect(job.returnvalue).not.toBe('gone');
      }
    }
  });

  it('refuses, loudly, a job that names a classifier its database never issued', async () => {
    const queue = new Queue(TRAINING_QUEUE_NAME, {
      connection: { url: redisUrl },
      prefix: first.service.queueNamespace,
    });
    const job = await queue.add('train', { classifierId: 'never_issued_1', instanceId: first.service.instanceId });
    const forged = await queue.add('train', { classifierId: 'never_issued_2', instanceId: second.service.instanceId });
    const failedReason = async (id: string) =>
      waitFor(
        `job ${id} to fail`,
        async () => {
          const j = await queue.getJob(id);
          return j && (await j.isFailed()) ? j.failedReason : undefined;
        },
        30_000,
      );
    expect(await failedReason(job.id!)).toMatch(
      /never created in this instance's database, so this job belongs to another instance/,
    );
    expect(await failedReason(forged.id!)).toMatch(/was queued by instance .* not by this one/);
    await queue.close();
  });

  it("refuses to start a copy of a running instance's database on its namespace, saying why", async () => {
    const copyDir = await fs.mkdtemp(path.join(os.tmpdir(), 'wvr-copy-'));
    try {
      const source = new Database(path.join(first.dataDir, 'service.sqlite'), { readonly: true });
      await source.backup(path.join(copyDir, 'service.sqlite'));
      source.close();
      const env = {
        ...process.env,
        PORT: '0',
        HOST: '127.0.0.1',
        DATA_DIR: copyDir,
        REDIS_URL: redisUrl,
        QUEUE_PREFIX: sharedPrefix,
        LOG_LEVEL: 'warn',
        ORT_THREADS: '1',
        OBJECT_DETECTION: 'false',
      };
      const attempt = startService(env);
      await expect(attempt).rejects.toBeInstanceOf(NamespaceInUseError);
      await expect(attempt).rejects.toThrow(
        new RegExp(
          `namespace '${sharedPrefix}:${first.service.instanceId}' is in use by another database .*this data directory is a copy`,
        ),
      );
      // With a namespace of its own the copy starts (and is the same instance, so it must not share one).
      const own = await startService({ ...env, QUEUE_PREFIX: `${sharedPrefix}-copy` });
      expect(own.instanceId).toBe(first.service.instanceId);
      await own.close();
    } finally {
      await fs.rm(copyDir, { recursive: true, force: true });
      const redis = new IORedis(redisUrl);
      const keys = await redis.keys(`${sharedPrefix}-copy:*`);
      if (keys.length) await redis.del(...keys);
      await redis.quit();
    }
  });
});
