import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClassifierRepository, type TrainingSnapshot } from '../../src/data-access/db/classifier-repository';
import { Database } from '../../src/data-access/db/database';
import { VersionRepository } from '../../src/data-access/db/version-repository';
import { createTestDatabase, type TestDatabase } from '../support/postgres';

const hash = (s: string) => crypto.createHash('sha256').update(s).digest('hex');
const examples = (className: string | null, prefix: string, n = 3) =>
  Array.from({ length: n }, (_, i) => ({ className, imageHash: hash(`${prefix}-${i}`) }));

let clock = 0;
const now = () => new Date(Date.UTC(2026, 0, 1) + clock++ * 1000).toISOString();

/**
 * DELETE /v3/user_data in the database (issue 21), on both databases: which versions go and
 * when, and what a training run, an activation or a classifier deletion racing it may still do.
 */
describe.each(['sqlite', 'postgres'] as const)('customer data deletion on %s', (dialect) => {
  let dir: string;
  let pgDb: TestDatabase | undefined;
  let db: Database;
  let repo: ClassifierRepository;
  let versions: VersionRepository;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'customer-data-'));
    pgDb = dialect === 'postgres' ? await createTestDatabase() : undefined;
    db = await Database.open({ databaseUrl: pgDb?.url, sqliteFile: path.join(dir, 'service.sqlite') });
    repo = new ClassifierRepository(db);
    versions = new VersionRepository(db);
  });
  afterEach(async () => {
    await db.close();
    await pgDb?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const snapshot = async (id: string) => (await repo.trainingSnapshot(id))!;
  const publish = (snap: TrainingSnapshot) =>
    versions.publishVersion({
      classifierId: snap.classifier.id,
      generation: snap.classifier.generation,
      headFile: `${snap.classifier.id}/${snap.classifier.generation}-${clock}.head`,
      classes: snap.classifier.classes,
      packKey: 'bundled@1',
      evaluation: {},
      examples: snap.examples.length,
      exampleIds: snap.examples.map((e) => e.id),
      now: now(),
    });
  const train = async (id: string) => publish(await snapshot(id));
  const current = async (id: string) => (await repo.find(id))!.currentVersionId;
  const forget = (customerId: string) =>
    repo.deleteCustomerData({
      ownerId: 'alice',
      customerId,
      now: now(),
      explain: ({ problem }) => `cannot train: ${problem.kind}`,
    });

  /** v1: a, b (unlabelled). v2: a, b, c (class c from customer `cust`). */
  async function labelledVersion() {
    await repo.create({
      id: 'k_1',
      ownerId: 'alice',
      name: 'k',
      examples: [...examples('a', 'a'), ...examples('b', 'b')],
      customerId: null,
      now: now(),
    });
    await train('k_1');
    const v1 = (await current('k_1'))!;
    await repo.addExamples({ id: 'k_1', examples: examples('c', 'c'), customerId: 'cust', now: now() });
    await train('k_1');
    return { v1, v2: (await current('k_1'))! };
  }

  it('finding 2: a run that started before the deletion cannot publish a version that used deleted examples', async () => {
    const { v1 } = await labelledVersion();
    await repo.addExamples({ id: 'k_1', examples: examples('d', 'd'), customerId: null, now: now() });
    const running = await snapshot('k_1'); // the worker has read a, b, c, d (its embeddings come from the cache)
    await forget('cust');
    await publish(running);
    const published = await versions.listVersions('k_1');
    expect(published.map((v) => v.generation)).not.toContain(running.classifier.generation);
    expect(await current('k_1')).not.toBe(v1);
    // The run queued by the deletion trains a, b, d and replaces the version trained on c.
    await train('k_1');
    const served = await versions.findVersion((await current('k_1'))!);
    expect(served!.classes).toEqual(['a', 'b', 'd']);
  });

  it('a run that started before the deletion and never saw the deleted examples still publishes', async () => {
    await repo.create({
      id: 'k_1',
      ownerId: 'alice',
      name: 'k',
      examples: [...examples('a', 'a'), ...examples('b', 'b')],
      customerId: null,
      now: now(),
    });
    const running = await snapshot('k_1');
    await repo.addExamples({ id: 'k_1', examples: examples('c', 'c'), customerId: 'cust', now: now() });
    await forget('cust');
    await publish(running);
    expect((await versions.listVersions('k_1')).map((v) => v.generation)).toEqual([running.classifier.generation]);
  });

  it('removes a version trained on the deleted examples at once unless it is current; the current one goes when its replacement publishes', async () => {
    const { v1, v2 } = await labelledVersion();
    await repo.addExamples({ id: 'k_1', examples: examples('d', 'd'), customerId: null, now: now() });
    await train('k_1');
    const v3 = (await current('k_1'))!; // a, b, c, d: trained on cust's c too
    const heads = new Map((await versions.listVersions('k_1')).map((v) => [v.id, v.headFile]));
    const { last: before } = await versions.forgottenSince(undefined);

    const done = await forget('cust');
    expect(done).toMatchObject({
      deletedClassifiers: [],
      retrainClassifiers: ['k_1'],
      removedHeadFiles: [heads.get(v2)],
    });
    expect(done.imageHashes.sort()).toEqual(
      examples('c', 'c')
        .map((e) => e.imageHash)
        .sort(),
    );
    expect((await versions.listVersions('k_1')).map((v) => v.id)).toEqual([v1, v3]);
    expect(await repo.find('k_1')).toMatchObject({
      status: 'retraining',
      currentVersionId: v3,
      classes: ['a', 'b', 'd'],
    });
    expect(await versions.wasRemoved('k_1', v2)).toBe(true);
    expect(await versions.wasRemoved('other_1', v2)).toBe(false);
    expect(await versions.forgottenSince(before)).toEqual({ last: before + 1, versionIds: [v2] });
    // The current one still serves, pinned too, but cannot be activated.
    expect((await versions.resolve('alice', [{ classifierId: 'k_1', versionId: v3 }]))[0].outcome).toBe('ok');
    expect(
      await versions.activateVersion({ classifierId: 'k_1', versionId: v3, discardPending: true, now: now() }),
    ).toEqual({ outcome: 'being-removed' });
    expect(
      await versions.activateVersion({ classifierId: 'k_1', versionId: v2, discardPending: false, now: now() }),
    ).toEqual({ outcome: 'removed' });

    const { published, removedHeadFiles } = await train('k_1');
    expect({ published, removedHeadFiles }).toEqual({ published: true, removedHeadFiles: [heads.get(v3)] });
    expect((await versions.listVersions('k_1')).map((v) => v.id)).toEqual([v1, (await current('k_1'))!]);
    // The history of changes still names the removed versions: which version answered when.
    expect((await versions.listVersionEvents('k_1')).map((e) => e.versionId)).toEqual([
      v1,
      v2,
      v3,
      (await current('k_1'))!,
    ]);
    expect(await repo.find('k_1')).toMatchObject({ status: 'ready' });
  });

  it('activating another version replaces the one being removed at once', async () => {
    const { v1, v2 } = await labelledVersion();
    await forget('cust');
    const result = await versions.activateVersion({
      classifierId: 'k_1',
      versionId: v1,
      discardPending: false,
      now: now(),
    });
    expect(result).toMatchObject({
      outcome: 'activated',
      pendingExamples: 0,
      removedHeadFiles: [expect.stringMatching(/^k_1\//)],
    });
    expect((await versions.listVersions('k_1')).map((v) => v.id)).toEqual([v1]);
    expect(await versions.wasRemoved('k_1', v2)).toBe(true);
    expect(await repo.find('k_1')).toMatchObject({ status: 'ready', currentVersionId: v1, classes: ['a', 'b'] });
  });

  it('a failed replacement removes the version being removed: the classifier answers nothing and says why', async () => {
    const { v2 } = await labelledVersion();
    await forget('cust');
    const generation = (await repo.find('k_1'))!.generation;
    const failed = await versions.markFailed(
      'k_1',
      generation,
      'disk broke',
      now(),
      (reason) => `replacement failed: ${reason}`,
    );
    expect(failed).toEqual({ recorded: true, removedHeadFiles: [expect.stringMatching(/^k_1\//)] });
    expect(await repo.find('k_1')).toMatchObject({
      status: 'failed',
      currentVersionId: null,
      explanation: 'replacement failed: disk broke',
    });
    expect(await versions.wasRemoved('k_1', v2)).toBe(true);
  });

  it('what is left cannot train: every version trained on the deleted examples goes at once, the classifier fails and no run is queued', async () => {
    // Both classes are the same pictures: only the customer's negatives make it trainable.
    const same = examples('a', 'same');
    await repo.create({
      id: 'k_1',
      ownerId: 'alice',
      name: 'k',
      examples: [...same, ...same.map((e) => ({ ...e, className: 'b' }))],
      customerId: null,
      now: now(),
    });
    await repo.addExamples({ id: 'k_1', examples: examples(null, 'neg'), customerId: 'cust', now: now() });
    await train('k_1');
    const done = await repo.deleteCustomerData({
      ownerId: 'alice',
      customerId: 'cust',
      now: now(),
      explain: (failure) => JSON.stringify(failure),
    });
    expect(done.retrainClassifiers).toEqual([]);
    expect(done.removedHeadFiles).toHaveLength(1);
    const c = (await repo.find('k_1'))!;
    expect(c).toMatchObject({ status: 'failed', currentVersionId: null });
    expect(JSON.parse(c.explanation!)).toEqual({
      classifierId: 'k_1',
      problem: { kind: 'no-negatives', className: 'a' },
      currentRemoved: true,
    });
    expect(c.trainedGeneration).toBe(c.generation); // a run already queued finds nothing to train
    expect(await versions.listVersions('k_1')).toEqual([]);
  });

  it('a current version that never saw the deleted examples serves on, ready, with no retrain', async () => {
    const { v1 } = await labelledVersion();
    await versions.activateVersion({ classifierId: 'k_1', versionId: v1, discardPending: false, now: now() });
    const done = await forget('cust');
    expect(done.retrainClassifiers).toEqual([]);
    const c = (await repo.find('k_1'))!;
    expect(c).toMatchObject({ status: 'ready', currentVersionId: v1, classes: ['a', 'b'] });
    expect(c.trainedGeneration).toBe(c.generation);
    expect((await versions.listVersions('k_1')).map((v) => v.id)).toEqual([v1]);
    // The examples only the removed version used are gone with it.
    expect(await db.kysely.selectFrom('examples').select('id').where('customer_id', '=', 'cust').execute()).toEqual([]);
  });

  it('removes pruned versions made since the deleted examples arrived (their example lists are gone) and keeps older ones', async () => {
    await repo.create({
      id: 'k_1',
      ownerId: 'alice',
      name: 'k',
      examples: [...examples('a', 'a'), ...examples('b', 'b')],
      customerId: null,
      now: now(),
    });
    await train('k_1');
    const v1 = (await current('k_1'))!;
    await repo.addExamples({ id: 'k_1', examples: examples('a', 'a2'), customerId: null, now: now() });
    await train('k_1');
    await repo.addExamples({ id: 'k_1', examples: examples('c', 'c'), customerId: 'cust', now: now() });
    await train('k_1');
    const withC = (await current('k_1'))!;
    await repo.addExamples({ id: 'k_1', examples: examples('d', 'd'), customerId: null, now: now() });
    await train('k_1');
    await versions.pruneVersions('k_1', 1, now(), new Set());
    const prunedBefore = (await versions.listVersions('k_1')).filter((v) => v.pruned).map((v) => v.id);
    expect(prunedBefore).toContain(v1);
    expect(prunedBefore).toContain(withC);
    await forget('cust');
    const left = (await versions.listVersions('k_1')).map((v) => v.id);
    expect(left).toContain(v1);
    expect(left).not.toContain(withC);
  });

  it('a deletion racing a classifier deletion leaves it deleted, in either order', async () => {
    await labelledVersion();
    const [forgot, deleted] = await Promise.all([forget('cust'), repo.delete('k_1', now())]);
    expect(deleted.deleted).toBe(true);
    expect(forgot.deletedClassifiers).toEqual([]);
    expect(await repo.find('k_1')).toBeUndefined();
    expect(await db.kysely.selectFrom('versions_to_remove').selectAll().execute()).toEqual([]);
  });

  it('a labelled classifier goes whole, and its versions are logged so API processes drop their heads', async () => {
    await repo.create({
      id: 'k_9',
      ownerId: 'alice',
      name: 'k',
      examples: [...examples('a', 'a'), ...examples('b', 'b')],
      customerId: 'cust',
      now: now(),
    });
    await train('k_9');
    const v = (await current('k_9'))!;
    const { last } = await versions.forgottenSince(undefined);
    expect(await forget('cust')).toMatchObject({ deletedClassifiers: ['k_9'], retrainClassifiers: [] });
    expect((await versions.forgottenSince(last)).versionIds).toEqual([v]);
    expect(await repo.find('k_9')).toBeUndefined();
  });
});
