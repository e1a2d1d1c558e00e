import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { ClassifierRepository, type TrainingSnapshot } from '../../src/data-access/db/classifier-repository';
import { VersionRepository } from '../../src/data-access/db/version-repository';
import { Database } from '../../src/data-access/db/database';
import { ImageClaims } from '../../src/data-access/db/image-claims';
import { LEGACY_SQLITE_STEPS } from '../../src/data-access/db/migrations';
import type { Schema } from '../../src/data-access/db/schema';
import { createTestDatabase, type TestDatabase } from '../support/postgres';

const hash = (s: string) => crypto.createHash('sha256').update(s).digest('hex');
const examples = (className: string | null, prefix: string, n = 3) =>
  Array.from({ length: n }, (_, i) => ({ className, imageHash: hash(`${prefix}-${i}`) }));

let clock = 0;
const now = () => new Date(Date.UTC(2026, 0, 1) + clock++ * 1000).toISOString();

/** The worker's part of a run, split so a test can act between its snapshot and its publish. */
async function publish(versions: VersionRepository, snap: TrainingSnapshot): Promise<boolean> {
  const { published } = await versions.publishVersion({
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
  return published;
}
const snapshot = async (repo: ClassifierRepository, id: string) => (await repo.trainingSnapshot(id))!;
const find = async (repo: ClassifierRepository, id: string) => (await repo.find(id))!;
const train = async (repo: ClassifierRepository, versions: VersionRepository, id: string) =>
  publish(versions, await snapshot(repo, id));
const hashesOf = (snap: TrainingSnapshot) => snap.examples.map((e) => `${e.className}:${e.imageHash}`).sort();

/**
 * The same database reached through a connection that may read but never write (as on a full
 * disk): a read-only SQLite handle, or a PostgreSQL session whose transactions are read-only.
 */
function readOnlyView(db: Database, target: { databaseUrl?: string; sqliteFile: string }): Database {
  const kysely = target.databaseUrl
    ? new Kysely<Schema>({
        dialect: new PostgresDialect({
          pool: new pg.Pool({
            connectionString: target.databaseUrl,
            max: 2,
            options: '-c default_transaction_read_only=on',
          }),
        }),
      })
    : new Kysely<Schema>({
        dialect: new SqliteDialect({
          database: new BetterSqlite3(target.sqliteFile, { readonly: true, fileMustExist: true }),
        }),
      });
  return Database.create(kysely, db.dialect, db.location, db.fingerprint);
}

describe.each(['sqlite', 'postgres'] as const)('ClassifierRepository on %s: versions you can use', (dialect) => {
  let dir: string;
  let pgDb: TestDatabase | undefined;
  let target: { databaseUrl?: string; sqliteFile: string };
  let db: Database;
  let repo: ClassifierRepository;
  let versions: VersionRepository;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'versions-'));
    pgDb = dialect === 'postgres' ? await createTestDatabase() : undefined;
    target = { databaseUrl: pgDb?.url, sqliteFile: path.join(dir, 'service.sqlite') };
    db = await Database.open(target);
    repo = new ClassifierRepository(db);
    versions = new VersionRepository(db);
  });
  afterEach(async () => {
    await db.close();
    await pgDb?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** v1: a, b. v2: a, b, c (an update adding class c). */
  async function twoVersions() {
    await repo.create({
      id: 'k_1',
      ownerId: 'alice',
      name: 'k',
      examples: [...examples('a', 'a'), ...examples('b', 'b')],
      customerId: null,
      now: now(),
    });
    await train(repo, versions, 'k_1');
    const v1 = (await find(repo, 'k_1')).currentVersionId!;
    const v1Set = hashesOf(await snapshot(repo, 'k_1'));
    await repo.addExamples({ id: 'k_1', examples: examples('c', 'c'), customerId: null, now: now() });
    await train(repo, versions, 'k_1');
    const v2 = (await find(repo, 'k_1')).currentVersionId!;
    return { v1, v2, v1Set };
  }

  it('rolls back to the examples of the activated version, and the next retrain starts from them', async () => {
    const { v1, v2, v1Set } = await twoVersions();
    const result = await versions.activateVersion({
      classifierId: 'k_1',
      versionId: v1,
      discardPending: false,
      now: now(),
    });
    expect(result).toMatchObject({ outcome: 'activated', pendingExamples: 0 });
    const c = await find(repo, 'k_1');
    expect(c).toMatchObject({ currentVersionId: v1, status: 'ready', classes: ['a', 'b'] });
    expect(c.trainedGeneration).toBe(c.generation); // nothing to train: a queued run finds it up to date
    expect(hashesOf(await snapshot(repo, 'k_1'))).toEqual(v1Set);

    // The next update trains on v1's examples plus the new ones; class c stays gone.
    await repo.addExamples({ id: 'k_1', examples: examples('d', 'd'), customerId: null, now: now() });
    const snap = await snapshot(repo, 'k_1');
    expect(snap.classifier.classes).toEqual(['a', 'b', 'd']);
    expect(hashesOf(snap)).toEqual([...v1Set, ...examples('d', 'd').map((e) => `d:${e.imageHash}`)].sort());
    expect(await publish(versions, snap)).toBe(true);

    // Rolling forward to v2 brings class c's examples back (they were retired, not deleted).
    await versions.activateVersion({ classifierId: 'k_1', versionId: v2, discardPending: false, now: now() });
    expect((await find(repo, 'k_1')).classes).toEqual(['a', 'b', 'c']);
    expect((await snapshot(repo, 'k_1')).examples.filter((e) => e.className === 'c')).toHaveLength(3);

    const events = (await versions.listVersionEvents('k_1')).map((e) => [e.cause, e.versionId, e.previousVersionId]);
    expect(events).toEqual([
      ['trained', v1, null],
      ['trained', v2, v1],
      ['activated', v1, v2],
      ['trained', v2 + 1, v1],
      ['activated', v2, v2 + 1],
    ]);
  });

  it('a rollback while a retrain runs loses neither: the stale run cannot publish, its new examples train on the rolled-back set', async () => {
    const { v1, v2, v1Set } = await twoVersions();
    await repo.addExamples({ id: 'k_1', examples: examples('e', 'e'), customerId: null, now: now() });
    const running = await snapshot(repo, 'k_1'); // the worker has started the run on a, b, c, e

    const result = await versions.activateVersion({
      classifierId: 'k_1',
      versionId: v1,
      discardPending: false,
      now: now(),
    });
    expect(result).toMatchObject({ outcome: 'activated', pendingExamples: 3 });
    expect(await repo.find('k_1')).toMatchObject({
      currentVersionId: v1,
      status: 'retraining',
      classes: ['a', 'b', 'e'],
    });

    // The run ends: it must not publish over the rollback (it still holds class c).
    expect(await publish(versions, running)).toBe(false);
    expect((await find(repo, 'k_1')).currentVersionId).toBe(v1);
    // A failure of the stale run is not recorded either.
    expect((await versions.markFailed('k_1', running.classifier.generation, 'boom', now())).recorded).toBe(false);

    // The queued run trains v1's examples plus the update's: nothing of either is lost.
    const next = await snapshot(repo, 'k_1');
    expect(next.classifier.trainedGeneration).toBeLessThan(next.classifier.generation);
    expect(hashesOf(next)).toEqual([...v1Set, ...examples('e', 'e').map((e) => `e:${e.imageHash}`)].sort());
    expect(await publish(versions, next)).toBe(true);
    const c = await find(repo, 'k_1');
    expect(c.status).toBe('ready');
    expect(c.currentVersionId).not.toBe(v2);
    expect((await versions.findVersion(c.currentVersionId!))!.classes).toEqual(['a', 'b', 'e']);
  });

  it('a run whose generation another run published meanwhile cannot record a failure over it', async () => {
    // A worker frozen past its lock: another trains the same generation; the frozen one, continued,
    // finds its transaction aborted, and on its last attempt would mark the classifier failed.
    await repo.create({
      id: 'k_1',
      ownerId: 'alice',
      name: 'k',
      examples: examples('a', 'a'),
      customerId: null,
      now: now(),
    });
    const frozen = await snapshot(repo, 'k_1');
    expect(await train(repo, versions, 'k_1')).toBe(true);
    expect((await versions.markFailed('k_1', frozen.classifier.generation, 'boom', now())).recorded).toBe(false);
    expect(await find(repo, 'k_1')).toMatchObject({ status: 'ready', explanation: null });
  });

  it('discard_pending drops an update that no version holds; activating the current version alone changes nothing', async () => {
    const { v2 } = await twoVersions();
    await repo.addExamples({ id: 'k_1', examples: examples('bad', 'bad'), customerId: null, now: now() });
    await versions.markFailed(
      'k_1',
      (await find(repo, 'k_1')).generation,
      'The class bad has no image that could be read.',
      now(),
    );
    expect(
      (await versions.activateVersion({ classifierId: 'k_1', versionId: v2, discardPending: false, now: now() }))
        .outcome,
    ).toBe('unchanged');
    const result = await versions.activateVersion({
      classifierId: 'k_1',
      versionId: v2,
      discardPending: true,
      now: now(),
    });
    expect(result).toMatchObject({ outcome: 'activated', pendingExamples: 0 });
    expect(await repo.find('k_1')).toMatchObject({ status: 'ready', classes: ['a', 'b', 'c'], explanation: null });
    // The discarded examples no version holds are deleted at the next prune, and their images are free to remove.
    const { imageHashes } = await versions.pruneVersions('k_1', 10, now(), new Set());
    expect(imageHashes.sort()).toEqual(
      examples('bad', 'bad')
        .map((e) => e.imageHash)
        .sort(),
    );
    const removed: string[] = [];
    const kept = examples('a', 'a')[0].imageHash; // still an example of a version
    expect(
      await new ImageClaims(db, 60_000).removeUnreferenced(
        [...imageHashes, kept],
        async (doomed) => void removed.push(...doomed),
      ),
    ).toEqual(imageHashes);
    expect(removed).toEqual(imageHashes);
  });

  it('an example retired by a rollback and sent again joins the training set again', async () => {
    const { v1 } = await twoVersions();
    await versions.activateVersion({ classifierId: 'k_1', versionId: v1, discardPending: false, now: now() });
    await repo.addExamples({ id: 'k_1', examples: examples('c', 'c').slice(0, 1), customerId: null, now: now() });
    const snap = await snapshot(repo, 'k_1');
    expect(snap.classifier.classes).toEqual(['a', 'b', 'c']);
    expect(snap.examples.filter((e) => e.className === 'c')).toHaveLength(1);
  });

  it('refuses a version of another classifier, an unknown one and a pruned one', async () => {
    const { v1 } = await twoVersions();
    await repo.create({
      id: 'other_2',
      ownerId: 'alice',
      name: 'o',
      examples: examples('x', 'x'),
      customerId: null,
      now: now(),
    });
    await train(repo, versions, 'other_2');
    const otherVersion = (await find(repo, 'other_2')).currentVersionId!;
    expect(
      (
        await versions.activateVersion({
          classifierId: 'k_1',
          versionId: otherVersion,
          discardPending: false,
          now: now(),
        })
      ).outcome,
    ).toBe('no-version');
    expect(
      (await versions.activateVersion({ classifierId: 'k_1', versionId: 999, discardPending: false, now: now() }))
        .outcome,
    ).toBe('no-version');
    expect(
      (await versions.activateVersion({ classifierId: 'gone_1', versionId: v1, discardPending: false, now: now() }))
        .outcome,
    ).toBe('no-classifier');
    await versions.pruneVersions('k_1', 1, now(), new Set());
    expect((await versions.findVersion(v1))!.pruned).not.toBeNull();
    expect(
      (await versions.activateVersion({ classifierId: 'k_1', versionId: v1, discardPending: false, now: now() }))
        .outcome,
    ).toBe('pruned');
  });

  it('retention keeps the newest N, the current one and versions leased by requests in flight', async () => {
    await repo.create({
      id: 'r_1',
      ownerId: 'alice',
      name: 'r',
      examples: examples('a', 'a'),
      customerId: null,
      now: now(),
    });
    await train(repo, versions, 'r_1');
    const ids = [(await find(repo, 'r_1')).currentVersionId!];
    for (let i = 0; i < 4; i++) {
      await repo.addExamples({ id: 'r_1', examples: examples('a', `more${i}`), customerId: null, now: now() });
      await train(repo, versions, 'r_1');
      ids.push((await find(repo, 'r_1')).currentVersionId!);
    }
    // v1 is current again (a rollback), v2 is pinned by a request in flight (its lease is in Redis: here, the set retention reads).
    await versions.activateVersion({ classifierId: 'r_1', versionId: ids[0], discardPending: false, now: now() });
    const resolved = await versions.resolve('alice', [{ classifierId: 'r_1', versionId: ids[1] }]);
    expect(resolved[0].outcome).toBe('ok');
    const leased = new Set([ids[1]]);

    const { pruned } = await versions.pruneVersions('r_1', 2, now(), leased);
    expect(pruned).toEqual([{ versionId: ids[2], headFile: (await versions.findVersion(ids[2]))!.headFile }]);
    expect((await versions.listVersions('r_1')).filter((v) => v.pruned).map((v) => v.id)).toEqual([ids[2]]);
    // A pruned version's file is still needed while a request holds it (retention left it), not after.
    const v2File = (await versions.findVersion(ids[1]))!.headFile;
    const v3File = (await versions.findVersion(ids[2]))!.headFile;
    expect(await versions.headFilesInUse([v2File, v3File, 'r_1/unknown.head'], new Set([ids[2]]))).toEqual(
      new Set([v2File, v3File]),
    );
    expect(await versions.headFilesInUse([v3File], new Set())).toEqual(new Set());

    // Once the request is done, the next prune takes v2 too; a pin of a pruned version is refused.
    expect((await versions.pruneVersions('r_1', 2, now(), new Set())).pruned).toEqual([
      { versionId: ids[1], headFile: v2File },
    ]);
    expect((await versions.resolve('alice', [{ classifierId: 'r_1', versionId: ids[1] }]))[0].outcome).toBe('pruned');
    expect((await versions.resolve('bob', [{ classifierId: 'r_1', versionId: ids[3] }]))[0].outcome).toBe(
      'no-classifier',
    );
    expect((await find(repo, 'r_1')).currentVersionId).toBe(ids[0]);
  });

  it("resolves a request's versions on a database that cannot be written (a full disk): classify only reads it", async () => {
    const { v1 } = await twoVersions();
    const readOnly = readOnlyView(db, target);
    try {
      const resolved = await new VersionRepository(readOnly).resolve('alice', [
        { classifierId: 'k_1' },
        { classifierId: 'k_1', versionId: v1 },
      ]);
      expect(resolved.map((r) => r.outcome)).toEqual(['ok', 'ok']);
    } finally {
      await readOnly.close();
    }
  });

  it('records a callback in the outbox when a run leaves the classifier ready or failed, not for intermediate runs', async () => {
    await repo.create({
      id: 'cb_1',
      ownerId: 'alice',
      name: 'cb',
      examples: examples('a', 'a'),
      customerId: null,
      callbackUrl: 'https://example.com/hook',
      now: now(),
    });
    const outbox = async () =>
      (await db.kysely.selectFrom('callback_outbox').select('body').orderBy('created').execute()).map((r) =>
        JSON.parse(r.body),
      );
    const first = await snapshot(repo, 'cb_1');
    await repo.addExamples({ id: 'cb_1', examples: examples('b', 'b'), customerId: null, now: now() });
    expect(await publish(versions, first)).toBe(true); // more examples arrived meanwhile: still training, no callback
    expect(await outbox()).toEqual([]);
    await train(repo, versions, 'cb_1');
    const v = (await find(repo, 'cb_1')).currentVersionId;
    expect(await outbox()).toMatchObject([
      { classifier_id: 'cb_1', status: 'ready', version_id: v, explanation: null },
    ]);
    expect((await outbox())[0].retrained).toEqual((await find(repo, 'cb_1')).retrained);
    expect((await outbox())[0].delivery_id).toMatch(/^[0-9a-f-]{36}$/);

    await repo.addExamples({ id: 'cb_1', examples: examples('c', 'c'), customerId: null, now: now() });
    await versions.markFailed('cb_1', (await find(repo, 'cb_1')).generation, 'no readable image', now());
    expect((await outbox())[1]).toMatchObject({ status: 'failed', version_id: v, explanation: 'no readable image' });

    // Without a callback URL nothing is recorded; deleting the classifier drops what waits.
    await repo.setCallbackUrl('cb_1', null, now());
    await repo.addExamples({ id: 'cb_1', examples: examples('d', 'd'), customerId: null, now: now() });
    await train(repo, versions, 'cb_1');
    expect(await outbox()).toHaveLength(2);
    await repo.delete('cb_1', now());
    expect(await outbox()).toHaveLength(0);
  });
});

describe('the versions migration (SQLite files of earlier releases)', () => {
  it('records, for versions trained before it, the examples each trained on and a trained event', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'versions-migration-'));
    const file = path.join(dir, 'service.sqlite');
    try {
      // Build the state an older release left: two versions, no side tables.
      let db = await Database.open({ sqliteFile: file });
      const repo = new ClassifierRepository(db);
      const versions = new VersionRepository(db);
      await repo.create({
        id: 'old_1',
        ownerId: 'alice',
        name: 'old',
        examples: examples('a', 'a'),
        customerId: null,
        now: now(),
      });
      await train(repo, versions, 'old_1');
      await repo.addExamples({ id: 'old_1', examples: examples('b', 'b'), customerId: null, now: now() });
      await train(repo, versions, 'old_1');
      const [v1, v2] = (await versions.listVersions('old_1')).map((v) => v.id);
      await db.close();
      // The versions step and the one after it (examples.entry_name) are undone, and so is
      // everything since (the Kysely-managed part: its bookkeeping and every table a later migration adds):
      // every table the release before the versions step did not have goes.
      const before = new BetterSqlite3(':memory:');
      for (const step of LEGACY_SQLITE_STEPS.slice(0, -2)) before.exec(step);
      const olderTables = new Set(tableNames(before));
      before.close();
      const raw = new BetterSqlite3(file);
      for (const table of tableNames(raw).filter((t) => !olderTables.has(t))) raw.exec(`DROP TABLE "${table}"`);
      raw.exec(`ALTER TABLE examples DROP COLUMN entry_name`);
      raw.pragma(`user_version = ${LEGACY_SQLITE_STEPS.length - 2}`);
      raw.close();

      db = await Database.open({ sqliteFile: file });
      try {
        const migrated = new ClassifierRepository(db);
        expect(
          (await new VersionRepository(db).listVersionEvents('old_1')).map((e) => [
            e.cause,
            e.versionId,
            e.previousVersionId,
          ]),
        ).toEqual([
          ['trained', v1, null],
          ['trained', v2, v1],
        ]);
        // Activating the first version brings back exactly its examples.
        await new VersionRepository(db).activateVersion({
          classifierId: 'old_1',
          versionId: v1,
          discardPending: false,
          now: now(),
        });
        expect((await snapshot(migrated, 'old_1')).examples.map((e) => e.className)).toEqual(['a', 'a', 'a']);
        expect((await find(migrated, 'old_1')).classes).toEqual(['a']);
      } finally {
        await db.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The tables of a SQLite database (not SQLite's own). */
function tableNames(db: BetterSqlite3.Database): string[] {
  return db
    .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
    .all()
    .map((row) => (row as { name: string }).name);
}
