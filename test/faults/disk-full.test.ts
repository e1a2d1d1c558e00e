import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { classImages } from '../../fixtures/images';
import { bootService, VERSION, waitFor, waitForStatus, type TestService } from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';
import { callApi } from './support/api-client';
import { integrityCheck, tmpEntries, unreferencedHeadFiles, unreferencedImageFiles } from './support/data-dir';
import { noiseZipOfSize } from './support/large-zips';
import { SmallDisk, tmpfsUnavailableReason } from './support/tmpfs';

const DISK_FULL_ANSWER = {
  code: 507,
  error: expect.stringMatching(/disk is full.*nothing from this request was stored/),
};

const unavailable = tmpfsUnavailableReason();
const describeWithSmallDisk = unavailable ? describe.skip : describe;
if (unavailable) console.warn(`SKIPPED the disk-full fault tests: ${unavailable}.`);

/**
 * DATA_DIR on an 8 MB tmpfs (the models stay on the normal disk). Uploads that cannot fit must
 * answer 507 in Watson's error body and leave everything as it was; a retrain whose head file
 * cannot be written must leave the last good version serving and end sane once space is back.
 */
describeWithSmallDisk('a full disk (DATA_DIR on an 8 MB tmpfs)', () => {
  let disk: SmallDisk;
  let t: TestService;
  let dataDir: string;
  let fitsId: string;
  let scoresBefore: unknown;
  let imageServer: http.Server;
  let circleUrl: string;

  beforeAll(async () => {
    // Classify fetches its image by URL: a multipart classify needs a temp file, which a full disk refuses.
    const circle = (await classImages('red-circles', 1, 99))[0];
    imageServer = http.createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'image/jpeg' }).end(circle));
    await new Promise<void>((resolve) => imageServer.listen(0, '127.0.0.1', resolve));
    circleUrl = `http://127.0.0.1:${(imageServer.address() as AddressInfo).port}/circle.jpg`;

    disk = SmallDisk.mount(8);
    dataDir = path.join(disk.dir, 'data');
    t = await bootService({
      DATA_DIR: dataDir,
      MODELS_DIR: process.env.MODELS_DIR ?? path.resolve(__dirname, '..', '..', 'models'),
      TRAINING_LOCK_MS: '5000',
      TRAINING_ATTEMPTS: '2',
      ALLOW_PRIVATE_URLS: 'true',
    });
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: await classZip('red-circles', 10, 91),
          squares_positive_examples: await classZip('blue-squares', 10, 92),
        },
        { name: 'fits' },
      ),
    });
    expect(created.status).toBe(200);
    fitsId = created.body.classifier_id;
    expect((await waitForStatus(t, fitsId, ['ready', 'failed'])).status).toBe('ready');
    scoresBefore = await classifyCircle();
  });
  afterAll(async () => {
    await t?.close();
    disk?.unmount();
    imageServer?.close();
  });

  async function classifyCircle() {
    const query = new URLSearchParams({ url: circleUrl, classifier_ids: fitsId, threshold: '0' });
    const res = await callApi(t.url, 'GET', `/v3/classify?${VERSION}&${query}`);
    expect(res.status).toBe(200);
    return res.body.images[0].classifiers;
  }

  const currentVersion = async () =>
    (await t.call('GET', `/v3/classifiers/${fitsId}/versions?${VERSION}`)).body.current_version_id;

  async function expectStoreIntact(classifierIds: string[]) {
    await waitFor(
      'the upload temp files to be removed',
      async () => (tmpEntries(dataDir).length === 0 ? true : undefined),
      10_000,
      50,
    );
    expect(unreferencedImageFiles(dataDir)).toEqual([]);
    expect(unreferencedHeadFiles(dataDir)).toEqual([]);
    expect(integrityCheck(dataDir)).toBe('ok');
    const list = await t.call('GET', `/v3/classifiers?${VERSION}`);
    expect(list.body.classifiers.map((c: { classifier_id: string }) => c.classifier_id)).toEqual(classifierIds);
  }

  it('answers 507 when the upload itself does not fit, and stores nothing', async () => {
    const tooBig = await noiseZipOfSize(disk.freeBytes() * 1.5);
    const res = await callApi(t.url, 'POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        { big_positive_examples: tooBig, negative_examples: await classZip('noise', 10, 93) },
        { name: 'too big' },
      ),
    });
    expect(res).toEqual({ status: 507, body: DISK_FULL_ANSWER });
    await expectStoreIntact([fitsId]);
    expect(await classifyCircle()).toEqual(scoresBefore);
  });

  it('answers 507 when the upload fits but its images do not, and stores nothing', async () => {
    // The temp upload takes 60% of the free space; storing its images needs as much again.
    const free = disk.freeBytes();
    const half = await noiseZipOfSize(free * 0.6);
    expect(half.length).toBeLessThan(free);
    const res = await callApi(t.url, 'POST', `/v3/classifiers/${fitsId}?${VERSION}`, {
      body: trainingForm({ big_positive_examples: half }),
    });
    expect(res).toEqual({ status: 507, body: DISK_FULL_ANSWER });
    await expectStoreIntact([fitsId]);
    const c = (await t.call('GET', `/v3/classifiers/${fitsId}?${VERSION}`)).body;
    expect({ status: c.status, classes: c.classes }).toEqual({
      status: 'ready',
      classes: [{ class: 'circles' }, { class: 'squares' }],
    });
    expect(await classifyCircle()).toEqual(scoresBefore);
  });

  it('a retrain that cannot write its head file leaves the last good version serving, and trains once space is back', async () => {
    // Train the stripes images elsewhere first, so the retrain finds their embeddings cached: what it
    // must write then is its upload report (the database) and its head file, either of which may meet the full disk.
    const stripes = await classZip('green-stripes', 10, 94);
    const other = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        { stripes_positive_examples: stripes, negative_examples: await classZip('noise', 10, 95) },
        { name: 'stripes' },
      ),
    });
    const otherId = other.body.classifier_id;
    expect((await waitForStatus(t, otherId, ['ready', 'failed'])).status).toBe('ready');
    const v1 = await currentVersion();
    const queue = t.service.ctx.queue.queue;
    const finishedBefore = new Set((await queue.getJobs(['completed', 'failed'])).map((j) => j.id));

    // Held until the disk is full: the worker keeps running, with its databases open.
    await queue.pause();
    const updated = await t.call('POST', `/v3/classifiers/${fitsId}?${VERSION}`, {
      body: trainingForm({ stripes_positive_examples: stripes }),
    });
    expect(updated.body.status).toBe('retraining');
    await waitFor(
      'the update temp file to be removed',
      async () => (tmpEntries(dataDir).length === 0 ? true : undefined),
      10_000,
      20,
    );
    const filler = disk.fill();
    await queue.resume();

    const failedRun = await waitFor(
      'the retrain to fail on the full disk',
      async () => {
        const jobs = await queue.getJobs(['failed']);
        return jobs.find((j) => j.data.classifierId === fitsId && !finishedBefore.has(j.id));
      },
      60_000,
    );
    expect((failedRun.stacktrace ?? []).join('\n')).toMatch(/ENOSPC[\s\S]*HeadStore\.write|database or disk is full/);
    const during = (await t.call('GET', `/v3/classifiers/${fitsId}?${VERSION}`)).body;
    expect(['retraining', 'failed']).toContain(during.status);
    if (during.status === 'failed') expect(during.explanation).toMatch(/previous version.*keeps serving/);
    expect(await currentVersion()).toBe(v1);
    expect(await classifyCircle()).toEqual(scoresBefore);
    expect(unreferencedHeadFiles(dataDir)).toEqual([]); // no half-written head file holds on to space

    fs.rmSync(filler);
    let after = await waitForStatus(t, fitsId, ['ready', 'failed'], 60_000);
    if (after.status === 'failed') {
      // Recorded as failed: a new update retrains, as for any failed retrain.
      expect(after.explanation).toMatch(/previous version.*keeps serving/);
      expect(
        (
          await t.call('POST', `/v3/classifiers/${fitsId}?${VERSION}`, {
            body: trainingForm({ stripes_positive_examples: stripes }),
          })
        ).status,
      ).toBe(200);
      after = await waitForStatus(t, fitsId, ['ready', 'failed'], 60_000);
    }
    expect(after.status).toBe('ready');
    expect(after.classes).toEqual([{ class: 'circles' }, { class: 'squares' }, { class: 'stripes' }]);
    expect(await currentVersion()).not.toBe(v1);
    const scores = await classifyCircle();
    expect(scores[0].classes[0].class).toBe('circles');
    await expectStoreIntact([fitsId, otherId]);
  });
});
