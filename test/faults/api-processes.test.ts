import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import IORedis from 'ioredis';
import { solidColorJpeg } from '../../fixtures/images';
import { prebuildForm } from '../../bench/lib/watson-client';
import { classZip, trainingForm } from '../support/example-zips';
import { scrape, total, type Sample } from '../support/prometheus';
import { ALICE_KEY, BOB_KEY, VERSION, basicAuth, waitFor } from '../support/service-harness';
import { reuseAfterIdle } from '../support/idle-connection';
import { loadConfig } from '../../src/config';
import { tmpEntries } from './support/data-dir';
import { pacedUpload } from './support/paced-upload';
import { startServiceProcess, type ServiceProcess } from './support/service-process';
import { isRunning, parseTaggedName } from '../../src/lib/process-tag';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROOT = path.resolve(__dirname, '..', '..');
const MODELS_DIR = process.env.MODELS_DIR ?? path.join(ROOT, 'models');

/** One request on a connection of its own, so the cluster's round robin can hand it to any API process. */
function callFresh(
  baseUrl: string,
  method: string,
  pathAndQuery: string,
  options: { key?: string; body?: { body: Buffer; contentType: string } } = {},
) {
  return new Promise<{ status: number; body: any }>((resolve, reject) => {
    const headers: Record<string, string> = { Authorization: basicAuth(options.key ?? ALICE_KEY) };
    if (options.body) {
      headers['Content-Type'] = options.body.contentType;
      headers['Content-Length'] = String(options.body.body.length);
    }
    const req = http.request(
      new URL(pathAndQuery, baseUrl),
      { method, headers, agent: false, timeout: 30_000 },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode!, body: JSON.parse(text) });
          } catch {
            resolve({ status: res.statusCode!, body: text });
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer to ${method} ${pathAndQuery} within 30 s`)));
    req.on('error', reject);
    req.end(options.body?.body);
  });
}

/** The pid of the API process whose upload folder holds the entry (`<folder>/<file>`, or the folder itself). */
const pidOfTmpEntry = (entry: string) => parseTaggedName(entry.split(path.sep)[0])?.pid ?? NaN;
/** The API processes that have a folder in DATA_DIR/tmp: each makes it once its start has swept the folder. */
const tmpFolderPids = (dataDir: string) =>
  fs.existsSync(path.join(dataDir, 'tmp'))
    ? fs
        .readdirSync(path.join(dataDir, 'tmp'))
        .map(pidOfTmpEntry)
        .filter((pid) => !Number.isNaN(pid))
    : [];

/** The API processes a scrape reports, by pid. */
const apiPidsIn = (samples: Sample[]) =>
  samples
    .filter((s) => s.name === 'process_start_time_seconds' && s.labels.process_role === 'api')
    .map((s) => Number(s.labels.process_instance.split('/').pop()))
    .sort();

/**
 * API_PROCESSES=2: a node:cluster primary with two API processes on one port and the training
 * worker, on one data directory. Both answer, the per-owner limit is the instance's whatever
 * process counts it, a killed API process is replaced while the other answers, and a starting API
 * process removes only what gone processes left (never another's upload in flight).
 */
describe('an instance run as several API processes (API_PROCESSES=2)', () => {
  let dataDir: string;
  let queuePrefix: string;
  let service: ServiceProcess | undefined;
  let apiPids: number[];

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-faults-processes-'));
    queuePrefix = `wvr-faults-${crypto.randomBytes(4).toString('hex')}`;
    service = await startServiceProcess({
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      MODELS_DIR,
      REDIS_URL,
      QUEUE_PREFIX: queuePrefix,
      API_KEYS: `alice:${ALICE_KEY},bob:${BOB_KEY}`,
      API_PROCESSES: '2',
      ORT_THREADS: '1',
      RATE_LIMIT_PER_MINUTE: '3',
      METRICS_PUBLISH_INTERVAL_MS: '500',
      LOG_LEVEL: 'warn',
    });
    apiPids = service.apiPids ?? [];
  });

  afterAll(async () => {
    await service?.kill('SIGKILL');
    for (const pid of [...apiPids, ...tmpFolderPids(dataDir)]) if (isRunning(pid)) process.kill(pid, 'SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
    const redis = new IORedis(REDIS_URL);
    const keys = await redis.keys(`${queuePrefix}:*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
  });

  it('runs two API processes beside the primary and its worker, both answering on the one port, and /metrics reports all three', async () => {
    expect(apiPids).toHaveLength(2);
    expect(apiPids).not.toContain(service!.pid);
    expect(service!.workerPid).toBeDefined();
    for (let i = 0; i < 20; i++)
      expect((await callFresh(service!.url, 'GET', `/v3/classifiers?${VERSION}`)).status).toBe(200);

    const host = os.hostname();
    const { samples } = await waitFor(
      'both API processes to publish their counts',
      async () => {
        const scraped = await scrape(service!.url);
        return total(scraped.samples, 'watson_vr_http_requests_total', { route: '/v3/classifiers', method: 'GET' }) >=
          20
          ? scraped
          : undefined;
      },
      20_000,
    );
    const answeredBy = apiPids.map((pid) =>
      total(samples, 'watson_vr_http_requests_total', {
        route: '/v3/classifiers',
        method: 'GET',
        process_instance: `${host}/${pid}`,
      }),
    );
    expect(answeredBy[0] + answeredBy[1]).toBe(20);
    expect(Math.min(...answeredBy)).toBeGreaterThan(0);
    expect(apiPidsIn(samples)).toEqual([...apiPids].sort());
    expect(total(samples, 'watson_vr_api_reports')).toBe(2);
    expect(total(samples, 'watson_vr_worker_reports')).toBe(1);
  });

  it('keeps idle connections open in every API process for as long as a reverse proxy may reuse them', async () => {
    // Four connections at once: the round robin hands each API process two. Idle past Node's own 5 s (+1 s).
    const outcomes = await Promise.all(
      Array.from({ length: 4 }, () =>
        reuseAfterIdle(`${service!.url}/v3/classifiers?${VERSION}`, 7_000, { Authorization: basicAuth(ALICE_KEY) }),
      ),
    );
    const timeoutS = loadConfig({}).keepAliveTimeoutMs / 1000;
    for (const outcome of outcomes)
      expect(outcome).toEqual({
        keepAlive: `timeout=${timeoutS}`,
        closedAfterMs: undefined,
        reused: true,
        secondStatus: 200,
      });
  });

  it('holds the per-owner rate limit across both API processes', async () => {
    const image = await solidColorJpeg({ r: 200, g: 30, b: 30 });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const form = await prebuildForm(
        (() => {
          const f = new FormData();
          f.append('images_file', new Blob([new Uint8Array(image)]), 'red.jpg');
          return f;
        })(),
      );
      const answer = await callFresh(service!.url, 'POST', `/v3/classify?${VERSION}`, { key: BOB_KEY, body: form });
      statuses.push(answer.status);
      if (answer.status === 429) expect(answer.body).toEqual({ code: 429, error: expect.stringMatching(/at most 3 /) });
    }
    // Per process, each would have allowed 3 of its own.
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429]);
    const host = os.hostname();
    const { samples } = await waitFor(
      'the classify answers to be published',
      async () => {
        const scraped = await scrape(service!.url);
        return total(scraped.samples, 'watson_vr_http_requests_total', { route: '/v3/classify', method: 'POST' }) >= 6
          ? scraped
          : undefined;
      },
      20_000,
    );
    for (const pid of apiPids) {
      expect(
        total(samples, 'watson_vr_http_requests_total', {
          route: '/v3/classify',
          method: 'POST',
          process_instance: `${host}/${pid}`,
        }),
      ).toBeGreaterThan(0);
    }
  });

  it("replaces an API process killed with SIGKILL while the other answers, and the new one leaves the other's upload in flight alone", async () => {
    const form = await prebuildForm(
      trainingForm(
        {
          one_positive_examples: await classZip('blue-squares', 30, 91),
          two_positive_examples: await classZip('green-stripes', 30, 92),
        },
        { name: 'uploaded across a restart' },
      ),
    );
    let resume!: () => void;
    const resumed = new Promise<void>((r) => (resume = r));
    const upload = pacedUpload(service!.url, `/v3/classifiers?${VERSION}`, form, {
      chunkBytes: 16 * 1024,
      pauseMs: 5,
      holdAfterBytes: Math.floor(form.body.length / 2),
      resume: resumed,
    });
    const inFlight = await waitFor(
      'the upload to reach a temp file',
      async () =>
        tmpEntries(dataDir).find(
          (f) => (fs.statSync(path.join(dataDir, 'tmp', f), { throwIfNoEntry: false })?.size ?? 0) > 0,
        ),
      30_000,
      10,
    );
    const holder = pidOfTmpEntry(inFlight);
    expect(apiPids).toContain(holder);
    const other = apiPids.find((pid) => pid !== holder)!;

    process.kill(other, 'SIGKILL');
    // Once the primary has seen the exit (it reaped the process), the survivor answers every request.
    // (A connection the primary hands over at the very instant of the death is lost with the process,
    // as node:cluster's round robin cannot take it back, like the requests the process was serving.)
    await waitFor(
      'the primary to reap the killed process',
      async () => (isRunning(other) ? undefined : true),
      10_000,
      20,
    );
    await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i < 10; i++)
      expect((await callFresh(service!.url, 'GET', `/v3/classifiers?${VERSION}`)).status).toBe(200);
    const replacement = await waitFor(
      'a new API process to start',
      async () => tmpFolderPids(dataDir).find((pid) => !apiPids.includes(pid)),
      60_000,
    );

    // Its start swept DATA_DIR/tmp: the killed process's folder, not the upload in flight.
    expect(tmpFolderPids(dataDir).sort()).toEqual([holder, replacement].sort());
    expect(fs.existsSync(path.join(dataDir, 'tmp', inFlight))).toBe(true);
    resume();
    const outcome = await upload.outcome;
    expect(outcome).toMatchObject({ status: 200 });
    const id = JSON.parse((outcome as { body: string }).body).classifier_id;
    const listed = await callFresh(service!.url, 'GET', `/v3/classifiers?${VERSION}`);
    expect(listed.body.classifiers.map((c: { classifier_id: string }) => c.classifier_id)).toContain(id);

    apiPids = [holder, replacement];
    const { samples } = await waitFor(
      'the killed process to drop out of /metrics',
      async () => {
        const scraped = await scrape(service!.url);
        return apiPidsIn(scraped.samples).join() === [...apiPids].sort().join() ? scraped : undefined;
      },
      20_000,
    );
    expect(total(samples, 'watson_vr_api_reports')).toBe(2);
  });

  it('removes the upload of an API process killed mid-upload when its replacement starts', async () => {
    const form = await prebuildForm(
      trainingForm({
        one_positive_examples: await classZip('red-circles', 30, 93),
        two_positive_examples: await classZip('noise', 30, 94),
      }),
    );
    const upload = pacedUpload(service!.url, `/v3/classifiers?${VERSION}`, form, {
      chunkBytes: 16 * 1024,
      pauseMs: 5,
      holdAfterBytes: Math.floor(form.body.length / 2),
      resume: new Promise(() => undefined), // never: the process dies first
    });
    const inFlight = await waitFor(
      'the upload to reach a temp file',
      async () =>
        tmpEntries(dataDir).find(
          (f) => (fs.statSync(path.join(dataDir, 'tmp', f), { throwIfNoEntry: false })?.size ?? 0) > 0,
        ),
      30_000,
      10,
    );
    const holder = pidOfTmpEntry(inFlight);
    process.kill(holder, 'SIGKILL');
    expect(await upload.outcome).toEqual({ brokenWith: expect.any(String) });
    const replacement = await waitFor(
      'a new API process to start',
      async () => tmpFolderPids(dataDir).find((pid) => !apiPids.includes(pid)),
      60_000,
    );
    const survivor = apiPids.find((pid) => pid !== holder)!;
    expect(tmpFolderPids(dataDir).sort()).toEqual([survivor, replacement].sort());
    expect(tmpEntries(dataDir)).toEqual([]);
    apiPids = [survivor, replacement];
  });

  it('stops everything on SIGTERM to the primary, each API process removing its upload folder', async () => {
    const worker = service!.workerPid!;
    await service!.kill('SIGTERM');
    service = undefined;
    for (const pid of [...apiPids, worker]) expect(isRunning(pid)).toBe(false);
    expect(fs.readdirSync(path.join(dataDir, 'tmp'))).toEqual([]);
  });
});

/** `npm start`'s entry with API_PROCESSES=2 and no key configured: the first start generates one key, printed once. */
describe('npm start with API_PROCESSES=2 on a new data directory', () => {
  it('prints the generated key once, which both API processes accept, and exits 0 on SIGTERM', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-faults-cluster-key-'));
    const queuePrefix = `wvr-faults-${crypto.randomBytes(4).toString('hex')}`;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      MODELS_DIR,
      REDIS_URL,
      QUEUE_PREFIX: queuePrefix,
      API_PROCESSES: '2',
      START_WORKER: 'false',
      ORT_THREADS: '1',
      LOG_LEVEL: 'warn',
    };
    delete env.API_KEYS;
    const child = spawn(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'src', 'main.ts')],
      { env, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const [, key, port] = await waitFor(
        'the generated key',
        async () => /\n {2}(\S+)\n\nUse it as: curl -u "apikey:\S+" "http:\/\/localhost:(\d+)\//.exec(out) ?? undefined,
        120_000,
      );
      for (let i = 0; i < 4; i++)
        expect((await callFresh(`http://127.0.0.1:${port}`, 'GET', `/v3/classifiers?${VERSION}`, { key })).status).toBe(
          200,
        );
      expect(out.match(/No API key was configured/g)).toHaveLength(1);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(out.match(/No API key was configured/g)).toHaveLength(1);
    } finally {
      child.kill('SIGKILL');
      fs.rmSync(dataDir, { recursive: true, force: true });
      const redis = new IORedis(REDIS_URL);
      const keys = await redis.keys(`${queuePrefix}:*`);
      if (keys.length) await redis.del(...keys);
      await redis.quit();
    }
  });
});
