import { MetricsExchange } from '../../src/data-access/redis/metrics-exchange';
import { WorkerMetrics } from '../../src/lib/metrics';
import { solidColorJpeg } from '../../fixtures/images';
import { classZip, trainingForm } from '../support/example-zips';
import { PrivateRedis } from '../faults/support/private-redis';
import {
  ALICE_KEY,
  BOB_KEY,
  bootService,
  VERSION,
  waitFor,
  waitForStatus,
  type TestService,
} from '../support/service-harness';
import { scrape, total } from '../support/prometheus';

describe('operations endpoints: /metrics, /healthz, /readyz', () => {
  let t: TestService;

  beforeAll(async () => {
    t = await bootService({ METRICS_PUBLISH_INTERVAL_MS: '500' });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers /healthz and /readyz without a key', async () => {
    expect(await t.call('GET', '/healthz', { key: null })).toEqual({ status: 200, body: { status: 'ok' } });
    expect(await t.call('GET', '/readyz', { key: null })).toEqual({
      status: 200,
      body: { status: 'ready', checks: { database: { ok: true }, redis: { ok: true }, models: { ok: true } } },
    });
  });

  it('counts requests, classify stages, training runs and cache lookups of the API and the worker, without ids or keys', async () => {
    const zips = {
      circles: await classZip('red-circles', 12, 1),
      squares: await classZip('blue-squares', 12, 2),
      stripes: await classZip('green-stripes', 12, 4),
    };
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        { circles_positive_examples: zips.circles, squares_positive_examples: zips.squares },
        { name: 'shapes' },
      ),
    });
    expect(created.status).toBe(200);
    const id: string = created.body.classifier_id;
    expect((await waitForStatus(t, id, ['ready', 'failed'])).status).toBe('ready');
    // A retrain embeds only the new class's images: the old ones come from the cache.
    expect(
      (
        await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
          body: trainingForm({ stripes_positive_examples: zips.stripes }),
        })
      ).status,
    ).toBe(200);
    expect((await waitForStatus(t, id, ['ready', 'failed'])).status).toBe('ready');

    const form = new FormData();
    form.append('images_file', new Blob([new Uint8Array(await solidColorJpeg({ r: 200, g: 20, b: 20 }))]), 'red.jpg');
    form.append('classifier_ids', `${id},default`);
    expect((await t.call('POST', `/v3/classify?${VERSION}`, { body: form })).status).toBe(200);
    expect((await t.call('GET', `/v3/classifiers/${id}?${VERSION}`, { key: BOB_KEY })).status).toBe(404);

    // The worker publishes right after each run; wait for the second run's snapshot.
    const { text, samples } = await waitFor('the worker to report two training runs', async () => {
      const scraped = await scrape(t.url);
      return total(scraped.samples, 'watson_vr_training_runs_total', { outcome: 'trained' }) >= 2 ? scraped : undefined;
    });

    const api = { process_role: 'api' };
    const worker = { process_role: 'worker' };
    expect(
      total(samples, 'watson_vr_http_requests_total', {
        ...api,
        method: 'POST',
        route: '/v3/classifiers',
        status: '200',
      }),
    ).toBe(1);
    expect(
      total(samples, 'watson_vr_http_requests_total', {
        ...api,
        method: 'POST',
        route: '/v3/classifiers/{classifier_id}',
        status: '200',
      }),
    ).toBe(1);
    expect(
      total(samples, 'watson_vr_http_requests_total', {
        ...api,
        method: 'GET',
        route: '/v3/classifiers/{classifier_id}',
        status: '404',
      }),
    ).toBe(1);
    expect(
      total(samples, 'watson_vr_http_request_duration_seconds_count', {
        ...api,
        method: 'POST',
        route: '/v3/classify',
        status: '200',
      }),
    ).toBe(1);
    expect(total(samples, 'watson_vr_classify_images_total', { ...api, outcome: 'classified' })).toBe(1);
    for (const stage of ['decode', 'backbone', 'detector', 'heads']) {
      expect(total(samples, 'watson_vr_classify_stage_seconds_count', { ...api, stage })).toBe(1);
      expect(total(samples, 'watson_vr_classify_stage_seconds_sum', { ...api, stage })).toBeGreaterThan(0);
    }
    expect(total(samples, 'watson_vr_training_run_duration_seconds_count', { ...worker, outcome: 'trained' })).toBe(2);
    expect(
      total(samples, 'watson_vr_training_run_duration_seconds_sum', { ...worker, outcome: 'trained' }),
    ).toBeGreaterThan(0);
    // Training embeds each new image once (issue 22: uploads only check them): the first run misses its 24,
    // the retrain finds those cached and misses the 12 new ones. The API looks nothing up.
    expect(total(samples, 'watson_vr_embedding_cache_lookups_total', { result: 'miss' })).toBe(36);
    expect(total(samples, 'watson_vr_embedding_cache_lookups_total', { ...api })).toBe(0);
    expect(total(samples, 'watson_vr_embedding_cache_lookups_total', { ...worker, result: 'miss' })).toBe(24 + 12);
    expect(total(samples, 'watson_vr_embedding_cache_lookups_total', { ...worker, result: 'hit' })).toBe(24);
    for (const state of ['waiting', 'active', 'delayed', 'failed']) {
      expect(samples.some((s) => s.name === 'watson_vr_training_queue_jobs' && s.labels.state === state)).toBe(true);
    }
    expect(total(samples, 'watson_vr_worker_reports')).toBe(1);
    // The API publishes its own snapshot too (for other API processes' scrapes), but counts itself once.
    expect(total(samples, 'watson_vr_api_reports')).toBe(1);
    expect(samples.filter((s) => s.name === 'watson_vr_training_queue_jobs')).toHaveLength(4);
    // Process metrics of both processes, told apart by their labels.
    expect(
      samples
        .filter((s) => s.name === 'process_cpu_user_seconds_total')
        .map((s) => s.labels.process_role)
        .sort(),
    ).toEqual(['api', 'worker']);
    expect(samples.filter((s) => s.name === 'process_start_time_seconds')).toHaveLength(2);
    expect(samples.filter((s) => s.labels.process_role === 'worker')[0].labels.process_instance).toBe(
      `${require('node:os').hostname()}/${t.service.worker!.pid}`,
    );

    // Nothing that names an owner's data, a key or a path.
    expect(text).not.toContain(id);
    expect(text).not.toContain(ALICE_KEY);
    expect(text).not.toContain(t.dataDir);
    expect(text).not.toContain('alice');
  });

  it('merges the snapshots of other worker processes sharing the Redis (other machines) until they expire', async () => {
    const other = new WorkerMetrics();
    other.trainingRuns.inc({ outcome: 'failed' }, 3);
    const exchange = new MetricsExchange(t.service.config.redisUrl!, t.service.queueNamespace);
    try {
      await exchange.ready();
      await exchange.publish('other-host/42', await other.snapshot(), 1);
      const { samples } = await scrape(t.url);
      expect(
        total(samples, 'watson_vr_training_runs_total', { outcome: 'failed', process_instance: other.instance }),
      ).toBe(3);
      expect(total(samples, 'watson_vr_worker_reports')).toBe(2);
      await waitFor(
        'the snapshot to expire',
        async () => (total((await scrape(t.url)).samples, 'watson_vr_worker_reports') === 1 ? true : undefined),
        5000,
      );
    } finally {
      await exchange.close();
    }
  });
});

describe('operations endpoints configured off, or on their own port', () => {
  it('answers 404 for /metrics and the health endpoints when turned off', async () => {
    const t = await bootService({ START_WORKER: 'false', METRICS_ENABLED: 'false', HEALTH_ENABLED: 'false' });
    try {
      for (const path of ['/metrics', '/healthz', '/readyz'])
        expect((await t.call('GET', path, { key: null })).status).toBe(404);
      expect((await t.call('GET', '/health', { key: null })).status).toBe(200);
    } finally {
      await t.close();
    }
  });

  it('serves them on OPS_PORT only, when it is set', async () => {
    const t = await bootService({ START_WORKER: 'false', OPS_PORT: '0' });
    try {
      const opsUrl = t.service.opsUrl!;
      expect(opsUrl).toBeDefined();
      for (const path of ['/metrics', '/healthz', '/readyz']) {
        expect((await t.call('GET', path, { key: null })).status).toBe(404);
        expect((await fetch(`${opsUrl}${path}`)).status).toBe(200);
      }
      expect((await fetch(`${opsUrl}/v3/classifiers?${VERSION}`)).status).toBe(404);
      // Requests on the API port are still counted on the operations port.
      await t.call('GET', `/v3/classifiers?${VERSION}`);
      const { samples } = await scrape(opsUrl);
      expect(total(samples, 'watson_vr_http_requests_total', { route: '/v3/classifiers', status: '200' })).toBe(1);
    } finally {
      await t.close();
    }
  });
});

describe('/readyz when Redis goes away', () => {
  it('answers 503 naming Redis while it is unreachable, and 200 again once it is back', async () => {
    const redis = await PrivateRedis.start();
    const t = await bootService({ START_WORKER: 'false', REDIS_URL: redis.url });
    try {
      expect((await t.call('GET', '/readyz', { key: null })).status).toBe(200);
      await redis.kill();

      const down = await t.call('GET', '/readyz', { key: null });
      expect(down.status).toBe(503);
      expect(down.body.status).toBe('not ready');
      expect(down.body.checks.database).toEqual({ ok: true });
      expect(down.body.checks.models).toEqual({ ok: true });
      expect(down.body.checks.redis.ok).toBe(false);
      expect(down.body.checks.redis.reason).toMatch(/^Redis does not answer/);
      expect(down.body.checks.redis.reason).not.toContain(String(redis.port));
      // Alive all the same, and its own metrics still answer.
      expect((await t.call('GET', '/healthz', { key: null })).status).toBe(200);
      expect((await scrape(t.url)).samples.length).toBeGreaterThan(0);

      await redis.restartEmpty();
      await waitFor(
        'readiness after Redis is back',
        async () => ((await t.call('GET', '/readyz', { key: null })).status === 200 ? true : undefined),
        15_000,
      );
    } finally {
      await t.close();
      await redis.kill();
    }
  });
});
