import { classImages } from '../../fixtures/images';
import { WorkerSupervisor } from '../../src/processes/worker-supervisor';
import {
  bootService,
  VERSION,
  waitFor,
  waitForStatus,
  workerEnvironment,
  type TestService,
} from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';
import { PrivateRedis } from './support/private-redis';

/**
 * A Redis without persistence restarts while a retrain is queued: the job is gone with its data.
 * The worker must queue the classifier again from SQLite (when it starts afterwards, and when it
 * ran on through the restart), and the last good version must serve until the retrain publishes.
 */
describe('a Redis without persistence restarted while a retrain is queued', () => {
  let redis: PrivateRedis;
  let t: TestService;
  let worker: WorkerSupervisor | undefined;

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    // The worker looks for a lost job once per lock period: the harness's 30 s left the second test waiting ~20 s.
    t = await bootService({ REDIS_URL: redis.url, START_WORKER: 'false', TRAINING_LOCK_MS: '10000' });
  });
  afterAll(async () => {
    await worker?.stop();
    await t?.close();
    await redis?.kill();
  });

  function startWorker(): Promise<void> {
    const c = t.service.config;
    worker = new WorkerSupervisor(
      workerEnvironment(t, { TRAINING_LOCK_MS: String(c.trainingLockMs) }),
      t.service.ctx.logger,
    );
    return worker.start();
  }

  async function classifyStripe(id: string) {
    const form = new FormData();
    form.append(
      'images_file',
      new Blob([new Uint8Array((await classImages('green-stripes', 1, 77))[0])]),
      'stripe.jpg',
    );
    form.append('classifier_ids', id);
    form.append('threshold', '0');
    const res = await t.call('POST', `/v3/classify?${VERSION}`, { body: form });
    expect(res.status).toBe(200);
    return (res.body.images[0].classifiers as Array<{ classifier_id: string; classes: Array<{ class: string }> }>).find(
      (c) => c.classifier_id === id,
    );
  }

  const classNames = (found: { classes: Array<{ class: string }> } | undefined) =>
    found?.classes.map((c) => c.class).sort();

  let id: string;

  /** Polls until the retrain publishes; until then every answer must come from `servingVersion`. */
  async function expectOldVersionUntilPublished(servingVersion: number) {
    await waitFor(
      'the retrain to publish',
      async () => {
        // One read gives status and serving version together (evaluation.version_id is the current version's).
        const c = (await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).body;
        if (c.status === 'failed') throw new Error(`the retrain failed: ${c.explanation}`);
        if (c.status === 'ready' && c.evaluation.version_id !== servingVersion) return true;
        expect({ status: c.status, version: c.evaluation.version_id }).toEqual({
          status: 'retraining',
          version: servingVersion,
        });
        return undefined;
      },
      90_000,
      100,
    );
  }

  it('re-queues the classifier when the worker starts; the old version serves until the new one is ready', async () => {
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: await classZip('red-circles', 20, 71),
          squares_positive_examples: await classZip('blue-squares', 20, 72),
        },
        { name: 'redis restart' },
      ),
    });
    id = created.body.classifier_id;
    await startWorker();
    expect((await waitForStatus(t, id, ['ready', 'failed'])).status).toBe('ready');
    const v1 = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body.current_version_id;
    expect(v1).toEqual(expect.any(Number));
    await worker!.stop();

    const updated = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({ stripes_positive_examples: await classZip('green-stripes', 20, 73) }),
    });
    expect(updated.body.status).toBe('retraining');
    expect(await t.service.ctx.queue.hasPendingJob(id)).toBe(true);

    await redis.restartEmpty();
    // The API's queue connection comes back to an empty Redis: the queued retrain is gone.
    expect(
      await waitFor(
        'the API to reach the restarted Redis',
        () => t.service.ctx.queue.hasPendingJob(id).catch(() => undefined),
        30_000,
      ),
    ).toBe(false);
    const during = (await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).body;
    expect(during.status).toBe('retraining');
    expect(classNames(await classifyStripe(id))).toEqual(['circles', 'squares']);

    await startWorker();
    await expectOldVersionUntilPublished(v1);
    const after = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(after.current_version_id).not.toBe(v1);
    expect(after.versions).toHaveLength(2);
    expect(after.versions[1].classes).toEqual([{ class: 'circles' }, { class: 'squares' }, { class: 'stripes' }]);
    expect(after.versions[1].examples).toBe(60);
    expect(classNames(await classifyStripe(id))).toEqual(['circles', 'squares', 'stripes']);
    expect((await classifyStripe(id))!.classes[0].class).toBe('stripes');
  });

  it('re-queues the classifier while a worker runs on through the restart', async () => {
    const v2 = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body.current_version_id;
    // Paused, so the retrain stays queued until Redis restarts (which forgets the pause as well).
    await t.service.ctx.queue.queue.pause();
    const updated = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({ triangles_positive_examples: await classZip('yellow-triangles', 20, 74) }),
    });
    expect(updated.body.status).toBe('retraining');
    await redis.restartEmpty();

    // No worker restart: the running one must notice the lost job by itself.
    await expectOldVersionUntilPublished(v2);
    const after = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(after.versions).toHaveLength(3);
    expect(after.versions[2].classes.map((c: { class: string }) => c.class)).toEqual([
      'circles',
      'squares',
      'stripes',
      'triangles',
    ]);
  });
});
