import { spawn } from 'node:child_process';
import path from 'node:path';
import { classZip, trainingForm } from '../support/example-zips';
import { bootService, VERSION, waitForStatus, type TestService } from '../support/service-harness';

const ROOT = path.resolve(__dirname, '..', '..');

/** `npm run worker`'s process, as a worker-only host runs it: no parent, no IPC channel. */
function startWorker(env: NodeJS.ProcessEnv) {
  const child = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'workers', 'training-worker.ts')],
    {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

describe('a training worker started on its own (npm run worker)', () => {
  let t: TestService;
  beforeAll(async () => {
    // An API-only process: the worker runs elsewhere.
    t = await bootService({ START_WORKER: 'false' });
  });
  afterAll(async () => {
    await t?.close();
  });

  const workerEnv = (): NodeJS.ProcessEnv => ({
    ...process.env,
    DATA_DIR: t.service.config.dataDir,
    MODELS_DIR: t.service.config.modelsDir,
    REDIS_URL: t.service.config.redisUrl,
    QUEUE_PREFIX: t.service.config.queuePrefix,
    ORT_THREADS: '1',
    LOG_LEVEL: 'info',
  });

  it('refuses to start without REDIS_URL, saying why', async () => {
    const env = workerEnv();
    delete env.REDIS_URL;
    const worker = startWorker(env);
    expect(await worker.exited).toBe(1);
    expect(worker.output()).toContain('REDIS_URL is not set: a training worker started on its own (npm run worker)');
  });

  it('trains what the API queued, and stops cleanly on SIGTERM', async () => {
    const worker = startWorker(workerEnv());
    try {
      const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
        body: trainingForm(
          {
            circles_positive_examples: await classZip('red-circles', 12, 11),
            squares_positive_examples: await classZip('blue-squares', 12, 12),
          },
          { name: 'remote' },
        ),
      });
      expect(created.status).toBe(200);
      expect((await waitForStatus(t, created.body.classifier_id, ['ready', 'failed'])).status).toBe('ready');
      expect(worker.output()).toContain('training worker ready');
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
    } finally {
      worker.child.kill('SIGKILL');
    }
  });
});
