import crypto from 'node:crypto';
import { classImages, undecodablePng } from '../../fixtures/images';
import { rawZip, storedEntry } from '../../fixtures/zips';
import { classZip, trainingForm } from '../support/example-zips';
import { scrape, total } from '../support/prometheus';
import { bootService, VERSION, waitFor, waitForStatus, type TestService } from '../support/service-harness';
import { pendingZipFiles, recordedPendingZips, storedImageFiles } from './support/data-dir';

/**
 * Issue 22: a create answers once its images are checked and its zips kept whole as durable files;
 * the worker extracts the images into the image store, then decodes and embeds them, as part of the
 * training run. kill -9 of the worker mid-extraction: the next worker extracts again (an image
 * already stored is skipped) and only then drops the zip, so every accepted image trains. kill -9 of the worker mid-ingest of a large upload: the
 * run resumes on the next worker (BullMQ's stalled-job check) from the embeddings the killed run had
 * cached, and ends with every accepted image trained on or reported, never half-applied. A retrain
 * killed the same way: /v3/classify answers from the previous version until the new one publishes.
 */
describe('a worker killed mid-ingest of a large upload', () => {
  let t: TestService;
  /** Images per zip: a few of training's 64-image embedding chunks, so the kill lands mid-ingest. */
  const PER_ZIP = 80;

  beforeAll(async () => {
    t = await bootService({ TRAINING_LOCK_MS: '3000', METRICS_PUBLISH_INTERVAL_MS: '200' });
  });
  afterAll(async () => {
    await t?.close();
  });

  const get = async (id: string) => (await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).body;
  const cachedEmbeddings = async () => {
    const db = await t.openDatabase();
    try {
      const row = await db.kysely
        .selectFrom('embeddings')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow();
      return Number(row.n);
    } finally {
      await db.close();
    }
  };

  async function killWorkerMidIngest(id: string): Promise<number> {
    await waitFor(
      'the training run to embed its first images',
      async () => ((await get(id)).training_progress > 0 ? true : undefined),
      120_000,
      20,
    );
    const pid = t.service.worker!.pid!;
    process.kill(pid, 'SIGKILL');
    const cached = await cachedEmbeddings();
    await waitFor('the supervisor to start a new worker', async () =>
      t.service.worker!.pid !== pid ? true : undefined,
    );
    return cached;
  }

  it('resumes from what it had embedded, trains on every accepted image, reports the undecodable one once', async () => {
    const pictures = await classImages('red-circles', PER_ZIP, 91);
    const bad = undecodablePng(91);
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: rawZip([
            ...pictures.map((data, i) => storedEntry(`c/${i}.jpg`, data)),
            storedEntry('c/bad.png', bad),
          ]),
          squares_positive_examples: await classZip('blue-squares', PER_ZIP, 92),
          negative_examples: await classZip('noise', PER_ZIP, 93),
        },
        { name: 'killed mid-ingest' },
      ),
    });
    expect(created.status).toBe(200);
    expect(created.body.upload.training_examples).toBe(3 * PER_ZIP + 1);
    const id = created.body.classifier_id;

    const cachedAtKill = await killWorkerMidIngest(id);
    // Killed mid-ingest: some images embedded, not all; nothing published.
    expect(cachedAtKill).toBeGreaterThan(0);
    expect(cachedAtKill).toBeLessThan(3 * PER_ZIP);
    expect((await get(id)).status).toBe('training');

    const ready = await waitForStatus(t, id, ['ready', 'failed'], 480_000);
    expect(ready.status).toBe('ready');
    const { versions } = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(versions.map((v: { examples: number }) => v.examples)).toEqual([3 * PER_ZIP]);
    // Reported once, though two runs decoded the upload.
    expect(ready.upload).toMatchObject({
      training_examples: 3 * PER_ZIP,
      decoded: true,
      files: [
        {
          file: 'circles_positive_examples',
          accepted: PER_ZIP,
          not_used: [{ entry: 'c/bad.png' }],
          not_used_count: 1,
        },
        { accepted: PER_ZIP, not_used_count: 0 },
        { accepted: PER_ZIP, not_used_count: 0 },
      ],
    });
    // Every decodable image embedded once; the resumed run found the killed run's embeddings.
    expect(await cachedEmbeddings()).toBe(3 * PER_ZIP);
    const hits = await waitFor('the worker to publish its cache lookups', async () => {
      const { samples } = await scrape(t.url);
      const n = total(samples, 'watson_vr_embedding_cache_lookups_total', { result: 'hit', process_role: 'worker' });
      return n > 0 ? n : undefined;
    });
    expect(hits).toBeGreaterThanOrEqual(cachedAtKill);
  }, 720_000);

  it('a retrain killed mid-ingest: classify answers from the previous version until the new one publishes', async () => {
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: await classZip('red-circles', 20, 94),
          negative_examples: await classZip('noise', 20, 95),
        },
        { name: 'retrain killed' },
      ),
    });
    const id = created.body.classifier_id;
    expect((await waitForStatus(t, id, ['ready', 'failed'], 120_000)).status).toBe('ready');
    const probe = (await classImages('green-stripes', 1, 96))[0];
    const classify = async () => {
      const form = new FormData();
      form.append('classifier_ids', id);
      form.append('threshold', '0.0');
      form.append('images_file', new Blob([new Uint8Array(probe)]), 'probe.jpg');
      const answer = await t.call('POST', `/v3/classify?${VERSION}`, { body: form });
      expect(answer.status).toBe(200);
      return answer.body.images[0].classifiers[0].classes.map((c: { class: string }) => c.class).sort();
    };
    expect(await classify()).toEqual(['circles']);

    const update = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({ stripes_positive_examples: await classZip('green-stripes', 2 * PER_ZIP, 97) }),
    });
    expect(update.status).toBe(200);
    expect(update.body.status).toBe('retraining');
    let polling = true;
    const answers: string[][] = [];
    const poller = (async () => {
      while (polling) {
        const classes = await classify();
        // An answer given before the classifier still said retraining was the previous version's to give.
        if ((await get(id)).status === 'retraining') answers.push(classes);
      }
    })();
    await killWorkerMidIngest(id);
    const retrained = await waitForStatus(t, id, ['ready', 'failed'], 480_000);
    polling = false;
    await poller;
    expect(retrained.status).toBe('ready');
    expect(answers.length).toBeGreaterThan(0);
    expect(answers.every((classes) => classes.join() === 'circles')).toBe(true);
    expect(await classify()).toEqual(['circles', 'stripes']);
    const { versions } = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(versions.map((v: { examples: number }) => v.examples)).toEqual([40, 40 + 2 * PER_ZIP]);
  }, 720_000);

  it('a worker killed while extracting the kept zips: the next one extracts again, trains on every image, drops the zips', async () => {
    const zips = {
      circles_positive_examples: await classImages('red-circles', 2 * PER_ZIP, 98),
      squares_positive_examples: await classImages('blue-squares', 2 * PER_ZIP, 99),
    };
    const hashes = new Set(
      Object.values(zips).flatMap((images) => images.map((b) => crypto.createHash('sha256').update(b).digest('hex'))),
    );
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        Object.fromEntries(
          Object.entries(zips).map(([field, images]) => [
            field,
            rawZip(images.map((data, i) => storedEntry(`${field}/${i}.jpg`, data))),
          ]),
        ),
        { name: 'killed mid-extraction' },
      ),
    });
    expect(created.status).toBe(200);
    const id = created.body.classifier_id;
    const kept = recordedPendingZips(t.dataDir).filter((z) => z.classifierId === id);
    expect(kept).toHaveLength(2);

    const extracted = () => storedImageFiles(t.dataDir).hashes.filter((h) => hashes.has(h)).length;
    const atKill = await waitFor(
      'the worker to extract the first images',
      async () => {
        const n = extracted();
        return n > 0 ? n : undefined;
      },
      120_000,
      2,
    );
    const pid = t.service.worker!.pid!;
    process.kill(pid, 'SIGKILL');
    // Killed mid-extraction: the zips are still recorded and on disk.
    expect(atKill).toBeLessThan(hashes.size);
    expect(recordedPendingZips(t.dataDir).filter((z) => z.classifierId === id)).toHaveLength(2);
    for (const z of kept) expect(pendingZipFiles(t.dataDir)).toContain(z.file);

    const ready = await waitForStatus(t, id, ['ready', 'failed'], 480_000);
    expect(ready.status).toBe('ready');
    const { versions } = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(versions.map((v: { examples: number }) => v.examples)).toEqual([hashes.size]);
    expect(extracted()).toBe(hashes.size);
    expect(recordedPendingZips(t.dataDir).filter((z) => z.classifierId === id)).toEqual([]);
    for (const z of kept) expect(pendingZipFiles(t.dataDir)).not.toContain(z.file);
  }, 720_000);
});
