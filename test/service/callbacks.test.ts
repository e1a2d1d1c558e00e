import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { bootService, BOB_KEY, VERSION, waitFor, waitForStatus, type TestService } from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';

interface Received {
  at: number;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A real receiver on 127.0.0.1: records every request; each path answers with the status its handler picks. */
class Receiver {
  readonly received: Received[] = [];
  private server!: http.Server;
  url = '';
  /** Path → status for the nth request to that path (0-based). Default 200. */
  status: Record<string, (n: number) => number> = {};

  async start() {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = req.url ?? '';
        const n = this.to(path).length;
        this.received.push({
          at: Date.now(),
          path,
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        });
        res.writeHead(this.status[path]?.(n) ?? 200).end();
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  to(path: string) {
    return this.received.filter((r) => r.path === path);
  }
  stop() {
    return new Promise((r) => this.server.close(r));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How a receiver checks a delivery: HMAC-SHA256 of the raw body with the secret, compared in constant time. */
function signatureIsValid(secret: string, rawBody: string, header: string | string[] | undefined): boolean {
  const expected = Buffer.from(`sha256=${crypto.createHmac('sha256', secret).update(rawBody).digest('hex')}`);
  const given = Buffer.from(String(header ?? ''));
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

describe('training-end callbacks', () => {
  let t: TestService;
  let receiver: Receiver;
  let zips: Record<string, Buffer>;

  const create = async (name: string, callbackPath: string, files?: Record<string, Buffer>) => {
    const res = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(files ?? { a_positive_examples: zips.circles, negative_examples: zips.noise }, {
        name,
        callback_url: `${receiver.url}${callbackPath}`,
      }),
    });
    expect(res.status).toBe(200);
    return res.body;
  };
  const secret = async (key?: string) =>
    (await t.call('GET', `/v3/callback_secret?${VERSION}`, { key })).body.callback_secret as string;
  const noJobsFor = (id: string) =>
    waitFor(`no training job for ${id}`, async () =>
      (await t.service.ctx.queue.hasPendingJob(id)) ? undefined : true,
    );

  beforeAll(async () => {
    receiver = new Receiver();
    await receiver.start();
    t = await bootService({ ALLOW_PRIVATE_URLS: 'true', CALLBACK_BACKOFF_MS: '500', CALLBACK_ATTEMPTS: '5' });
    zips = {
      circles: await classZip('red-circles', 10, 71),
      squares: await classZip('blue-squares', 10, 72),
      noise: await classZip('noise', 10, 73),
    };
  });
  afterAll(async () => {
    await t?.close();
    await receiver?.stop();
  });

  it('delivers once when training ends, signed so the receiver can verify it, and again after a retrain', async () => {
    const created = await create('called back', '/ok');
    expect(created.callback_url).toBe(`${receiver.url}/ok`);
    const id = created.classifier_id;
    const ready = await waitForStatus(t, id, ['ready', 'failed']);
    expect(ready.callback_url).toBe(`${receiver.url}/ok`);
    const [delivery] = await waitFor('the callback', async () =>
      receiver.to('/ok').length > 0 ? receiver.to('/ok') : undefined,
    );
    const versionId = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body.current_version_id;
    const body = JSON.parse(delivery.body);
    expect(body).toEqual({
      delivery_id: delivery.headers['x-callback-delivery'],
      classifier_id: id,
      status: 'ready',
      version_id: versionId,
      explanation: null,
      retrained: null,
      created: expect.any(String),
    });
    expect(delivery.headers['content-type']).toBe('application/json');
    expect(signatureIsValid(await secret(), delivery.body, delivery.headers['x-callback-signature-256'])).toBe(true);
    expect(signatureIsValid(await secret(BOB_KEY), delivery.body, delivery.headers['x-callback-signature-256'])).toBe(
      false,
    );
    expect(
      signatureIsValid(
        await secret(),
        delivery.body.replace('ready', 'Ready'),
        delivery.headers['x-callback-signature-256'],
      ),
    ).toBe(false);

    await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({ b_positive_examples: zips.squares }),
    });
    const retrained = await waitForStatus(t, id, ['ready']);
    const second = await waitFor('the second callback', async () => receiver.to('/ok')[1]);
    expect(JSON.parse(second.body)).toMatchObject({ status: 'ready', retrained: retrained.retrained });
    await sleep(2000); // retries are 0.5 s apart: a duplicate would have come by now
    expect(receiver.to('/ok')).toHaveLength(2);
    expect(new Set(receiver.to('/ok').map((r) => r.headers['x-callback-delivery'])).size).toBe(2);
  });

  it('retries a delivery the receiver answers with 500, with the same delivery id and body', async () => {
    receiver.status['/flaky'] = (n) => (n < 2 ? 500 : 200);
    const { classifier_id: id } = await create('flaky receiver', '/flaky');
    await waitForStatus(t, id, ['ready']);
    const tries = await waitFor(
      'three tries',
      async () => (receiver.to('/flaky').length >= 3 ? receiver.to('/flaky') : undefined),
      30_000,
    );
    expect(new Set(tries.map((r) => r.headers['x-callback-delivery'])).size).toBe(1);
    expect(new Set(tries.map((r) => r.body)).size).toBe(1);
    const key = await secret();
    for (const r of tries) expect(signatureIsValid(key, r.body, r.headers['x-callback-signature-256'])).toBe(true);
    await sleep(2500);
    expect(receiver.to('/flaky')).toHaveLength(3);
  });

  it('calls back a failed training with its explanation', async () => {
    // The same pictures as both classes and no negatives: accepted at upload (an image may show two classes),
    // but training has nothing to tell either class apart from, and fails.
    const { classifier_id: id } = await create('broken', '/failed', {
      broken_positive_examples: zips.squares,
      good_positive_examples: zips.squares,
    });
    const failed = await waitForStatus(t, id, ['ready', 'failed']);
    expect(failed.status).toBe('failed');
    const delivery = await waitFor('the failure callback', async () => receiver.to('/failed')[0]);
    expect(JSON.parse(delivery.body)).toMatchObject({
      classifier_id: id,
      status: 'failed',
      version_id: null,
      explanation: failed.explanation,
    });
  });

  it('sends nothing for a classifier deleted while training, nor retries for one deleted after a failed try', async () => {
    // Enough images that the run is still embedding when the delete comes.
    const { classifier_id: during } = await create('deleted during training', '/deleted-during', {
      a_positive_examples: await classZip('red-circles', 100, 74),
      b_positive_examples: await classZip('blue-squares', 100, 75),
    });
    await waitFor(
      'the run to start',
      async () => {
        const active = await t.service.ctx.queue.queue.getJobs(['active']);
        return active.some((job) => job.data.classifierId === during) ? true : undefined;
      },
      60_000,
      10,
    );
    const deletedAt = Date.now();
    expect((await t.call('DELETE', `/v3/classifiers/${during}?${VERSION}`)).status).toBe(200);

    receiver.status['/deleted-after'] = () => 500;
    const { classifier_id: after } = await create('deleted after', '/deleted-after');
    await waitFor('a first try', async () => receiver.to('/deleted-after')[0]);
    expect((await t.call('DELETE', `/v3/classifiers/${after}?${VERSION}`)).status).toBe(200);
    receiver.status['/deleted-after'] = () => 200;
    const triesAtDelete = receiver.to('/deleted-after').length;

    await noJobsFor(during);
    await sleep(4000); // past the next retries (0.5 s, 1 s, 2 s)
    // Nothing after the delete (had the run won the race, its callback would have come before it).
    expect(receiver.to('/deleted-during').filter((r) => r.at >= deletedAt)).toEqual([]);
    // At most a try already under way when the delete came; none after.
    expect(receiver.to('/deleted-after').length).toBeLessThanOrEqual(triesAtDelete + 1);
    expect(receiver.to('/deleted-after').length).toBeLessThanOrEqual(2);
  });

  it('changes or removes the callback URL with an update that sends no examples, without retraining', async () => {
    const { classifier_id: id } = await create('switched', '/first');
    await waitForStatus(t, id, ['ready']);
    await waitFor('the first callback', async () => receiver.to('/first')[0]);
    const form = new FormData();
    form.append('callback_url', `${receiver.url}/second`);
    const changed = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, { body: form });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ status: 'ready', callback_url: `${receiver.url}/second` });
    expect((await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body.versions).toHaveLength(1);

    await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({ b_positive_examples: zips.squares }),
    });
    await waitForStatus(t, id, ['ready']);
    await waitFor('the callback to the new URL', async () => receiver.to('/second')[0]);

    const remove = new FormData();
    remove.append('callback_url', '');
    const removed = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, { body: remove });
    expect(removed.body.callback_url).toBeUndefined();
  });

  it('delivers a callback recorded just before the worker died, once the worker is back (the outbox)', async () => {
    const { classifier_id: id } = await create('outbox', '/outbox');
    await waitForStatus(t, id, ['ready']);
    await waitFor('the first callback', async () => receiver.to('/outbox')[0]);
    // The state a crash between the run's commit and the queueing leaves: a row in the outbox, no job.
    await t.service.worker!.stop();
    const body = JSON.stringify({
      delivery_id: 'after-crash-1',
      classifier_id: id,
      status: 'ready',
      version_id: null,
      explanation: null,
      retrained: null,
      created: new Date().toISOString(),
    });
    const db = await t.openDatabase();
    try {
      await db.kysely
        .insertInto('callback_outbox')
        .values({
          delivery_id: 'after-crash-1',
          classifier_id: id,
          owner_id: 'alice',
          url: `${receiver.url}/outbox`,
          body,
          created: new Date().toISOString(),
        })
        .execute();
    } finally {
      await db.close();
    }
    await t.service.worker!.start();
    const delivered = await waitFor('the recorded callback', async () => receiver.to('/outbox')[1]);
    expect(delivered.headers['x-callback-delivery']).toBe('after-crash-1');
    expect(delivered.body).toBe(body);
  });

  it('rotates the secret: the new one is returned and signs from then on', async () => {
    const before = await secret();
    const rotated = await t.call('POST', `/v3/callback_secret?${VERSION}`);
    expect(rotated.status).toBe(200);
    expect(rotated.body.callback_secret).not.toBe(before);
    expect(rotated.body.callback_secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await secret()).toBe(rotated.body.callback_secret);
    const { classifier_id: id } = await create('after rotation', '/rotated');
    await waitForStatus(t, id, ['ready']);
    const delivery = await waitFor('the callback', async () => receiver.to('/rotated')[0]);
    expect(
      signatureIsValid(rotated.body.callback_secret, delivery.body, delivery.headers['x-callback-signature-256']),
    ).toBe(true);
  });
});

describe('callback URLs that are refused', () => {
  let t: TestService;
  beforeAll(async () => {
    t = await bootService({ START_WORKER: 'false' }); // private addresses refused (the default)
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers 400 saying what to change, and creates or changes nothing', async () => {
    const zips = {
      a_positive_examples: await classZip('red-circles', 10, 81),
      negative_examples: await classZip('noise', 10, 82),
    };
    const cases: Array<[string, RegExp]> = [
      [
        'http://127.0.0.1:9/hook',
        /^The callback_url cannot be used: The URL's host 127\.0\.0\.1 is a private address; sending to it is not allowed\. Give a publicly reachable URL\.$/,
      ],
      ['http://[::1]/hook', /is a private address; sending to it is not allowed/],
      ['http://169.254.169.254/latest/meta-data', /is a private address/],
      ['ftp://example.com/hook', /The URL scheme ftp: is not supported; give an http:\/\/ or https:\/\/ URL\./],
      ['not a url', /not a valid absolute URL/],
      [
        `https://example.com/${'a'.repeat(2100)}`,
        /^The callback_url is 2120 characters long; at most 2048 are allowed\.$/,
      ],
      ['https://user:pw@8.8.8.8/hook', /^The callback_url contains a user name or password\. Leave them out/],
    ];
    for (const [url, message] of cases) {
      const res = await t.call('POST', `/v3/classifiers?${VERSION}`, {
        body: trainingForm(zips, { name: 'refused', callback_url: url }),
      });
      expect(res.status).toBe(400);
      expect(res.body.code).toBe(400);
      expect(res.body.error).toMatch(message);
    }
    expect((await t.call('GET', `/v3/classifiers?${VERSION}`)).body.classifiers).toEqual([]);

    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(zips, { name: 'no callback' }),
    });
    const id = created.body.classifier_id;
    const form = new FormData();
    form.append('callback_url', 'http://10.1.2.3/hook');
    const update = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, { body: form });
    expect(update.status).toBe(400);
    expect(update.body.error).toMatch(/10\.1\.2\.3 is a private address/);
    expect((await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).body.callback_url).toBeUndefined();

    const twice = new FormData();
    twice.append('callback_url', 'https://example.com/a');
    twice.append('callback_url', 'https://example.com/b');
    expect((await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, { body: twice })).body).toEqual({
      code: 400,
      error: "The field 'callback_url' must be sent once, as plain text: an http:// or https:// URL.",
    });
  });
});
