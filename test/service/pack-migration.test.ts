import fs from 'node:fs/promises';
import path from 'node:path';
import IORedis from 'ioredis';
import { classImages } from '../../fixtures/images';
import { dataLayout } from '../../src/data-access/files/data-layout';
import { ImageDecodeError } from '../../src/ml/decode-image';
import { Embedder } from '../../src/ml/embedder';
import { serializeHead, trainHead } from '../../src/ml/heads';
import { loadPack } from '../../src/ml/model-pack';
import { classZip, trainingForm } from '../support/example-zips';
import { bootService, VERSION, waitForStatus, workerEnvironment, type TestService } from '../support/service-harness';

/**
 * An install upgraded to a new embedding (the pack key changed): its classifiers were trained under the
 * older key. At start each is queued for retraining from its stored examples; the old version serves
 * meanwhile, on the embedding it was trained on; the retrain adds a version, and both keep their evaluation.
 */
describe('a new pack key retrains existing classifiers at start', () => {
  let first: TestService | undefined;
  let second: TestService | undefined;

  afterAll(async () => {
    await second?.close();
  });

  it('serves the old version until its retrain under the new key is ready, keeping both evaluations', async () => {
    const circles = await classImages('red-circles', 10, 41);
    const squares = await classImages('blue-squares', 10, 42);
    first = await bootService();
    const created = await first.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: await classZip('red-circles', 10, 41),
          squares_positive_examples: await classZip('blue-squares', 10, 42),
        },
        { name: 'shapes' },
      ),
    });
    const id = created.body.classifier_id;
    await waitForStatus(first, id, ['ready']);
    const { modelsDir } = first.service.config;
    const newKey = (await first.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body.versions[0].pack;
    expect(newKey).toMatch(/^bundled@\d+\+centernet@\d+$/);
    const { dataDir, service } = first;
    await service.close();
    const redis = new IORedis(service.config.redisUrl!);
    const keys = await redis.keys(`${service.config.queuePrefix}:*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();

    // What an older install wrote: a head trained on the bundled pack's taps alone, recorded under its key.
    const legacy = await Embedder.create(await loadPack(modelsDir, 'bundled'), { threads: 1 });
    const analyses = await legacy.analyze([...circles, ...squares].map((bytes, i) => ({ name: `${i}.jpg`, bytes })));
    await legacy.close();
    const head = await trainHead(
      {
        classes: ['circles', 'squares'],
        embeddings: analyses.map((a) => (a instanceof ImageDecodeError ? fail(a) : a.embedding)),
        positives: analyses.map((_, i) => [i < circles.length ? 0 : 1]),
      },
      { packKey: legacy.packKey, threads: 1 },
    );
    const layout = dataLayout(dataDir);
    const db = await first.openDatabase();
    const version = await db.kysely
      .selectFrom('versions as v')
      .innerJoin('classifiers as c', 'c.current_version_id', 'v.id')
      .select(['v.id', 'v.head_file'])
      .where('c.id', '=', id)
      .executeTakeFirstOrThrow();
    await fs.writeFile(path.join(layout.heads, version.head_file), serializeHead(head));
    await db.kysely.updateTable('versions').set({ pack_key: legacy.packKey }).where('id', '=', version.id).execute();
    await db.close();

    const sameDatabase: Record<string, string> = service.config.databaseUrl
      ? { DATABASE_URL: service.config.databaseUrl }
      : {};
    second = await bootService({ DATA_DIR: dataDir, START_WORKER: 'false', ...sameDatabase });
    const retraining = await second.call('GET', `/v3/classifiers/${id}?${VERSION}`);
    expect(retraining.body.status).toBe('retraining');
    const form = new FormData();
    form.append('images_file', new Blob([new Uint8Array(circles[0])]), 'circle.jpg');
    form.append('classifier_ids', id);
    form.append('threshold', '0');
    const served = await second.call('POST', `/v3/classify?${VERSION}`, { body: form });
    expect(served.status).toBe(200);
    expect(served.body.warnings).toBeUndefined();
    const scores = Object.fromEntries(
      served.body.images[0].classifiers[0].classes.map((c: { class: string; score: number }) => [c.class, c.score]),
    );
    expect(scores.circles).toBeGreaterThan(0.5);
    expect(scores.squares).toBeLessThan(0.5);

    const { WorkerSupervisor } = await import('../../src/processes/worker-supervisor');
    const worker = new WorkerSupervisor(workerEnvironment(second), second.service.ctx.logger);
    await worker.start();
    try {
      expect((await waitForStatus(second, id, ['ready', 'failed'])).status).toBe('ready');
    } finally {
      await worker.stop();
    }
    const versions = (await second.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(versions.versions.map((v: { pack: string }) => v.pack)).toEqual([legacy.packKey, newKey]);
    for (const v of versions.versions) expect(v.evaluation.classes).toHaveLength(2);
    expect(versions.current_version_id).toBe(versions.versions[1].version_id);
  });
});

function fail(error: Error): never {
  throw error;
}
