import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClassifierRepository, type TrainingSnapshot } from '../../src/data-access/db/classifier-repository';
import { VersionRepository } from '../../src/data-access/db/version-repository';
import { Database } from '../../src/data-access/db/database';
import { createTestDatabase, type TestDatabase } from '../support/postgres';

const hash = (s: string) => crypto.createHash('sha256').update(s).digest('hex');
const now = () => new Date().toISOString();

/**
 * With several workers, one run of a generation can be trained twice: a worker whose BullMQ lock
 * lapsed (paused longer than TRAINING_LOCK_MS: a GC pause, a frozen container, a stalled VM) goes
 * on training while the stalled-job check hands the same job to another worker. Whichever
 * publishes second must find the generation trained and publish nothing: one version per
 * generation, one `trained` event, one callback.
 */
describe.each(['sqlite', 'postgres'] as const)('publishing a generation twice, on %s', (dialect) => {
  let dir: string;
  let pg: TestDatabase | undefined;
  let db: Database;
  let repo: ClassifierRepository;
  let versions: VersionRepository;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-publish-'));
    if (dialect === 'postgres') pg = await createTestDatabase();
    db = await Database.open(
      dialect === 'postgres'
        ? { databaseUrl: pg!.url, sqliteFile: '' }
        : { sqliteFile: path.join(dir, 'service.sqlite') },
    );
    repo = new ClassifierRepository(db);
    versions = new VersionRepository(db);
  });
  afterEach(async () => {
    await db.close();
    await pg?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const publish = async (snap: TrainingSnapshot, headFile: string) => {
    const { published } = await versions.publishVersion({
      classifierId: snap.classifier.id,
      generation: snap.classifier.generation,
      headFile,
      classes: snap.classifier.classes,
      packKey: 'bundled@1',
      evaluation: {},
      examples: snap.examples.length,
      exampleIds: snap.examples.map((e) => e.id),
      now: now(),
    });
    return published;
  };

  it('the second run of the same snapshot publishes nothing, for a first training and for a retrain', async () => {
    const examples = ['a', 'b'].flatMap((c) => [0, 1, 2].map((i) => ({ className: c, imageHash: hash(`${c}${i}`) })));
    await repo.create({ id: 'k_1', ownerId: 'alice', name: 'k', examples, customerId: null, now: now() });
    const first = (await repo.trainingSnapshot('k_1'))!;
    expect(await publish(first, 'k_1/1-worker-a.head')).toBe(true);
    expect(await publish(first, 'k_1/1-worker-b.head')).toBe(false);

    await repo.addExamples({
      id: 'k_1',
      examples: [{ className: 'c', imageHash: hash('c0') }],
      customerId: null,
      now: now(),
    });
    const second = (await repo.trainingSnapshot('k_1'))!;
    expect(await publish(second, 'k_1/2-worker-b.head')).toBe(true);
    expect(await publish(second, 'k_1/2-worker-a.head')).toBe(false);

    expect((await versions.listVersions('k_1')).map((v) => v.headFile)).toEqual([
      'k_1/1-worker-a.head',
      'k_1/2-worker-b.head',
    ]);
    expect((await versions.listVersionEvents('k_1')).map((e) => e.cause)).toEqual(['trained', 'trained']);
    expect(await repo.find('k_1')).toMatchObject({ status: 'ready', generation: 2, trainedGeneration: 2 });
  });
});
