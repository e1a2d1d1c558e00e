import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClassifierRepository, type TrainingSnapshot } from '../../src/data-access/db/classifier-repository';
import { Database } from '../../src/data-access/db/database';
import { ExampleRepository } from '../../src/data-access/db/example-repository';
import { VersionRepository } from '../../src/data-access/db/version-repository';
import { createTestDatabase, type TestDatabase } from '../support/postgres';

const hash = (s: string) => crypto.createHash('sha256').update(s).digest('hex');
const examples = (className: string | null, prefix: string, n = 3) =>
  Array.from({ length: n }, (_, i) => ({
    className,
    imageHash: hash(`${prefix}-${i}`),
    entryName: `${prefix}/${i}.jpg`,
  }));

let clock = 0;
const now = () => new Date(Date.UTC(2026, 0, 1) + clock++ * 1000).toISOString();

/**
 * Removing and moving examples in the database (issue 23), on both databases: all or nothing, the
 * checks made inside the transaction, what happens to the versions trained on a removed example, and
 * the review a version keeps.
 */
describe.each(['sqlite', 'postgres'] as const)('example changes on %s', (dialect) => {
  let dir: string;
  let pgDb: TestDatabase | undefined;
  let db: Database;
  let repo: ClassifierRepository;
  let versions: VersionRepository;
  let exampleRepo: ExampleRepository;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'example-changes-'));
    pgDb = dialect === 'postgres' ? await createTestDatabase() : undefined;
    db = await Database.open({ databaseUrl: pgDb?.url, sqliteFile: path.join(dir, 'service.sqlite') });
    repo = new ClassifierRepository(db);
    versions = new VersionRepository(db);
    exampleRepo = new ExampleRepository(db);
    await repo.create({
      id: 'k_1',
      ownerId: 'alice',
      name: 'k',
      examples: [...examples('a', 'a'), ...examples('b', 'b'), ...examples(null, 'n')],
      customerId: null,
      now: now(),
    });
  });
  afterEach(async () => {
    await db.close();
    await pgDb?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const snapshot = async () => (await repo.trainingSnapshot('k_1'))!;
  const publish = (snap: TrainingSnapshot) =>
    versions.publishVersion({
      classifierId: 'k_1',
      generation: snap.classifier.generation,
      headFile: `k_1/${snap.classifier.generation}-${clock}.head`,
      classes: snap.classifier.classes,
      packKey: 'bundled@1',
      evaluation: {},
      examples: snap.examples.length,
      exampleIds: snap.examples.map((e) => e.id),
      review: {
        classes: snap.classifier.classes,
        scores: Object.fromEntries(snap.examples.map((e) => [String(e.id), [0.9, 0.1]])),
        duplicates: [],
      },
      now: now(),
    });
  const idsOf = async (className: string | null) =>
    (await exampleRepo.page('k_1', { className }, undefined, 100)).map((e) => e.id);
  const apply = (
    change: { remove?: number[]; move?: Array<{ exampleId: number; className: string | null }> },
    minimum = 3,
  ) =>
    exampleRepo.applyChanges({
      classifierId: 'k_1',
      remove: change.remove ?? [],
      move: change.move ?? [],
      minimum,
      now: now(),
    });

  it('pages newest first by class, negatives or all, and keeps the review with the version', async () => {
    const all = await exampleRepo.page('k_1', {}, undefined, 100);
    expect(all.map((e) => e.id)).toEqual([...all.map((e) => e.id)].sort((x, y) => y - x));
    expect(all).toHaveLength(9);
    const firstTwo = await exampleRepo.page('k_1', {}, undefined, 2);
    const next = await exampleRepo.page('k_1', {}, firstTwo[1].id, 100);
    expect([...firstTwo, ...next]).toEqual(all);
    expect(await idsOf(null)).toHaveLength(3);
    expect((await exampleRepo.page('k_1', { className: 'a' }, undefined, 100)).map((e) => e.entryName).sort()).toEqual([
      'a/0.jpg',
      'a/1.jpg',
      'a/2.jpg',
    ]);
    await publish(await snapshot());
    const v1 = (await repo.find('k_1'))!.currentVersionId!;
    expect((await exampleRepo.review(v1))!.scores[String(all[0].id)]).toEqual([0.9, 0.1]);
  });

  it('refuses, changing nothing: unknown ids, unknown or own classes, a picture already there, and going below the minimum', async () => {
    const [a0, a1] = await idsOf('a');
    const [b0] = await idsOf('b');
    const before = await snapshot();
    expect(await apply({ remove: [a0, 999_999] })).toEqual({ outcome: 'no-example', exampleId: 999_999 });
    expect(await apply({ move: [{ exampleId: a0, className: 'zzz' }] })).toEqual({
      outcome: 'no-class',
      exampleId: a0,
      className: 'zzz',
    });
    expect(await apply({ move: [{ exampleId: a0, className: 'a' }] })).toEqual({
      outcome: 'same-class',
      exampleId: a0,
      className: 'a',
    });
    expect(await apply({ remove: [a0] })).toEqual({
      outcome: 'below-minimum',
      className: 'a',
      remaining: 2,
      needed: 3,
      before: 3,
    });
    // Taking one away and bringing another in keeps the class at its size.
    expect(await apply({ remove: [a0], move: [{ exampleId: b0, className: 'a' }] })).toMatchObject({
      outcome: 'below-minimum',
      className: 'b',
    });
    // The same picture in class b already: moving a1's copy there would make it twice.
    await repo.addExamples({
      id: 'k_1',
      examples: [{ className: 'b', imageHash: hash('a-1') }],
      customerId: null,
      now: now(),
    });
    const copyInB = (await idsOf('b')).find((id) => id > a1)!;
    expect(await apply({ move: [{ exampleId: a1, className: 'b' }] }, 1)).toEqual({
      outcome: 'already-there',
      exampleId: a1,
      existingId: copyInB,
      className: 'b',
    });
    expect((await snapshot()).examples).toHaveLength(before.examples.length + 1);
    // Another classifier's example is not one of this one's.
    await repo.create({
      id: 'other_1',
      ownerId: 'bob',
      name: 'o',
      examples: examples('x', 'x'),
      customerId: null,
      now: now(),
    });
    const foreign = (await exampleRepo.page('other_1', {}, undefined, 1))[0].id;
    expect(await apply({ remove: [foreign] })).toEqual({ outcome: 'no-example', exampleId: foreign });
    expect(
      await exampleRepo.applyChanges({ classifierId: 'gone_1', remove: [a0], move: [], minimum: 1, now: now() }),
    ).toEqual({
      outcome: 'no-classifier',
    });
  });

  it('moves in place and removes for good, as one new generation; the versions trained on a removed example go when the next one publishes', async () => {
    await publish(await snapshot());
    const v1 = (await repo.find('k_1'))!.currentVersionId!;
    const [a0] = await idsOf('a');
    const [n0, n1] = await idsOf(null);
    const generation = (await repo.find('k_1'))!.generation;
    const result = await apply({ remove: [n0], move: [{ exampleId: n1, className: 'a' }] }, 1);
    expect(result).toEqual({
      outcome: 'changed',
      imageHashes: [expect.stringMatching(/^[0-9a-f]{64}$/)],
      removed: 1,
      moved: 1,
    });
    expect(await repo.find('k_1')).toMatchObject({
      generation: generation + 1,
      status: 'retraining',
      currentVersionId: v1,
    });
    expect(await idsOf('a')).toContain(n1);
    expect((await exampleRepo.findMany('k_1', [n0, n1, a0])).size).toBe(2);
    expect(await exampleRepo.changesByVersion('k_1')).toEqual(new Map()); // no version applied it yet
    // v1 trained on the removed example: it serves until the next version publishes, then goes.
    expect((await versions.listVersions('k_1')).map((v) => v.id)).toEqual([v1]);
    const published = await publish(await snapshot());
    expect(published).toEqual({ published: true, removedHeadFiles: [expect.stringMatching(/^k_1\//)] });
    const v2 = (await repo.find('k_1'))!.currentVersionId!;
    expect((await versions.listVersions('k_1')).map((v) => v.id)).toEqual([v2]);
    expect(await exampleRepo.changesByVersion('k_1')).toEqual(new Map([[v2, { removed: 1, moved: 1 }]]));
    expect(await versions.wasRemoved('k_1', v1)).toBe(true);
    expect(await exampleRepo.review(v1)).toBeUndefined();
    expect((await snapshot()).examples.map((e) => e.id)).not.toContain(n0);
  });

  it('a run that read a removed example cannot publish; one that read a moved example publishes but the classifier stays retraining', async () => {
    await publish(await snapshot());
    const [a0, a1] = await idsOf('a');
    const [n0] = await idsOf(null);
    await apply({ move: [{ exampleId: a0, className: 'b' }] }, 1);
    const readBeforeRemoval = await snapshot();
    await apply({ remove: [n0] }, 1);
    expect((await publish(readBeforeRemoval)).published).toBe(false);
    const readBeforeMove = await snapshot();
    await apply({ move: [{ exampleId: a1, className: 'b' }] }, 1);
    expect((await publish(readBeforeMove)).published).toBe(true);
    expect((await repo.find('k_1'))!.status).toBe('retraining');
    await publish(await snapshot());
    expect((await repo.find('k_1'))!.status).toBe('ready');
  });
});
