import AdmZip from 'adm-zip';
import IORedis from 'ioredis';
import {
  bootService,
  VERSION,
  waitFor,
  waitForStatus,
  workerEnvironment,
  type TestService,
} from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';

/** Whether a process with this pid still exists. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('training recovery and failure', () => {
  let t: TestService;

  beforeAll(async () => {
    t = await bootService({ START_WORKER: 'false' });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('re-queues, at worker start, a classifier whose job Redis lost', async () => {
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          a_positive_examples: await classZip('red-circles', 10, 31),
          negative_examples: await classZip('noise', 10, 32),
        },
        { name: 'lost' },
      ),
    });
    const id = created.body.classifier_id;
    // Redis without persistence restarted: every queue key is gone.
    const redis = new IORedis(t.service.config.redisUrl!);
    const keys = await redis.keys(`${t.service.config.queuePrefix}:*`);
    expect(keys.length).toBeGreaterThan(0);
    await redis.del(...keys);
    await redis.quit();
    expect(await t.service.ctx.queue.hasPendingJob(id)).toBe(false);

    const { WorkerSupervisor } = await import('../../src/processes/worker-supervisor');
    const worker = new WorkerSupervisor(workerEnvironment(t), t.service.ctx.logger);
    await worker.start();
    try {
      expect((await waitForStatus(t, id, ['ready', 'failed'])).status).toBe('ready');
    } finally {
      await worker.stop();
    }
  });

  it('stops a frozen (SIGSTOP) worker without waiting out its grace period', async () => {
    const { WorkerSupervisor } = await import('../../src/processes/worker-supervisor');
    // A grace far past the test's timeout: only continuing the frozen worker lets stop() end in time.
    const worker = new WorkerSupervisor(workerEnvironment(t), t.service.ctx.logger, 3_600_000);
    await worker.start();
    const pid = worker.pid!;
    process.kill(pid, 'SIGSTOP');
    await worker.stop();
    expect(isAlive(pid)).toBe(false);
  });

  it('kills, once its grace period is over, a worker still in a run; the next worker takes the run up', async () => {
    const { WorkerSupervisor } = await import('../../src/processes/worker-supervisor');
    const env = workerEnvironment(t, { TRAINING_LOCK_MS: '2000' });
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          a_positive_examples: await classZip('red-circles', 10, 41),
          b_positive_examples: await classZip('blue-squares', 10, 42),
        },
        { name: 'cut short' },
      ),
    });
    expect(created.status).toBe(200);
    const id = created.body.classifier_id;
    const first = new WorkerSupervisor(env, t.service.ctx.logger, 1);
    await first.start();
    const pid = first.pid!;
    await waitFor('the run to start', async () => ((await t.service.ctx.queue.counts()).active > 0 ? true : undefined));
    // A 1-ms grace: the worker cannot finish its run (nor even close its connections) in time.
    await first.stop();
    expect(isAlive(pid)).toBe(false);
    // Cut short, not waited for: the run is unfinished until the next worker takes it up.
    expect((await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).body.status).toBe('training');
    const next = new WorkerSupervisor(env, t.service.ctx.logger);
    await next.start();
    try {
      expect((await waitForStatus(t, id, ['ready', 'failed'])).status).toBe('ready');
    } finally {
      await next.stop();
    }
  });

  it('refuses at upload, naming the zip and the reason, a class whose images cannot be decoded', async () => {
    // Valid JPEG signatures with garbage after: before issue 10 accepted, then a failed training; now a 400.
    const zip = new AdmZip();
    for (let i = 0; i < 10; i++)
      zip.addFile(`${i}.jpg`, Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(200, i)]));
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        { broken_positive_examples: zip.toBuffer(), good_positive_examples: await classZip('blue-squares', 10, 33) },
        { name: 'broken' },
      ),
    });
    expect(created.status).toBe(400);
    expect(created.body.error).toMatch(
      /^The zip file for 'broken_positive_examples' contains 0 usable images; at least 10 are required\. Of its 10 entries, 10 are images, 0 can be decoded and 0 are distinct\. Not used: '0\.jpg': the file is incomplete/,
    );
    // Training failures that name the class, the entries and the reasons: test/service/upload-zips.test.ts.
  });
});
