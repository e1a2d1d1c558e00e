import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { ClassifierRepository } from '../../src/data-access/db/classifier-repository';
import { VersionRepository } from '../../src/data-access/db/version-repository';
import { Database } from '../../src/data-access/db/database';
import { createTestDatabase, type TestDatabase } from '../support/postgres';

const ROOT = path.resolve(__dirname, '..', '..');
const hash = (s: string) => crypto.createHash('sha256').update(s).digest('hex');
const now = () => new Date().toISOString();

type Target = { databaseUrl?: string; sqliteFile: string };

/**
 * Another process of the instance (the API while the worker publishes, or the reverse; on
 * PostgreSQL possibly on another machine), on the same database through the same data layer.
 * `mode` 'hold': takes the write lock, writes, says "locked", and commits `holdMs` later.
 * `mode` 'add': says "ready", then adds `count` examples of class `other` one write at a time.
 */
function otherProcess(
  target: Target,
  job: { mode: 'hold'; holdMs: number; owner: string } | { mode: 'add'; count: number },
) {
  const script = `
    const crypto = require('node:crypto');
    const { Database } = require('./src/data-access/db/database');
    const { ClassifierRepository } = require('./src/data-access/db/classifier-repository');
    const { target, job } = JSON.parse(process.env.OTHER_WRITER);
    const say = (line) => new Promise((resolve) => process.stdout.write(line + '\\n', resolve));
    (async () => {
      const db = await Database.open(target);
      if (job.mode === 'hold') {
        await db.write(async (trx) => {
          await trx.updateTable('classifiers').set({ updated: new Date().toISOString() }).where('id', '=', 'k_1').execute();
          await trx.insertInto('owners').values({ id: job.owner, created: new Date().toISOString() }).execute();
          await say('locked');
          await new Promise((resolve) => setTimeout(resolve, job.holdMs));
        });
      } else {
        const repo = new ClassifierRepository(db);
        await say('ready');
        for (let i = 0; i < job.count; i++) {
          const imageHash = crypto.createHash('sha256').update('other' + i).digest('hex');
          const done = await repo.addExamples({ id: 'k_1', examples: [{ className: 'other', imageHash }], customerId: null, now: new Date().toISOString() });
          if (!done) throw new Error('k_1 vanished');
        }
      }
      await db.close();
    })().catch((error) => { console.error(error); process.exit(1); });`;
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], {
    cwd: ROOT,
    env: { ...process.env, OTHER_WRITER: JSON.stringify({ target, job }) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve, reject) =>
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`the other writer exited with ${code}`)))),
  );
  const started = new Promise<void>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).once('line', () => resolve());
    exited.then(() => reject(new Error('the other writer ended before it started writing')), reject);
  });
  return { started, exited };
}

/**
 * A change that read before it wrote used to fail at once with SQLITE_BUSY_SNAPSHOT ("database is
 * locked", found by the soak test: failed training runs, head files left behind) when another
 * process wrote meanwhile. Whatever the database, a change must wait for the other writer and then
 * succeed, and neither process's write may be lost.
 */
describe.each(['sqlite', 'postgres'] as const)(
  'ClassifierRepository beside another writing process, on %s',
  (dialect) => {
    let dir: string;
    let pg: TestDatabase | undefined;
    let target: Target;
    let db: Database;
    let repo: ClassifierRepository;
    let versions: VersionRepository;

    beforeEach(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'concurrent-writes-'));
      pg = dialect === 'postgres' ? await createTestDatabase() : undefined;
      target = { databaseUrl: pg?.url, sqliteFile: path.join(dir, 'service.sqlite') };
      db = await Database.open(target);
      repo = new ClassifierRepository(db);
      versions = new VersionRepository(db);
      const examples = ['a', 'b'].flatMap((c) => [0, 1, 2].map((i) => ({ className: c, imageHash: hash(`${c}${i}`) })));
      await repo.create({ id: 'k_1', ownerId: 'alice', name: 'k', examples, customerId: null, now: now() });
    });
    afterEach(async () => {
      await db.close();
      await pg?.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    const ownerExists = async (id: string) =>
      (await db.kysely.selectFrom('owners').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;

    it('publishVersion waits for the other writer instead of failing', async () => {
      const snapshot = (await repo.trainingSnapshot('k_1'))!;
      const other = otherProcess(target, { mode: 'hold', holdMs: 300, owner: 'other-1' });
      await other.started;
      const published = await versions.publishVersion({
        classifierId: 'k_1',
        generation: snapshot.classifier.generation,
        headFile: 'k_1/1-x.head',
        classes: snapshot.classifier.classes,
        packKey: 'bundled@1',
        evaluation: {},
        examples: snapshot.examples.length,
        exampleIds: snapshot.examples.map((e) => e.id),
        now: now(),
      });
      await other.exited;
      expect(published).toEqual({ published: true, removedHeadFiles: [] });
      expect(await repo.find('k_1')).toMatchObject({ status: 'ready', currentVersionId: expect.any(Number) });
      expect(await ownerExists('other-1')).toBe(true);
    });

    it('addExamples and delete wait for the other writer instead of failing', async () => {
      let other = otherProcess(target, { mode: 'hold', holdMs: 300, owner: 'other-1' });
      await other.started;
      expect(
        await repo.addExamples({
          id: 'k_1',
          examples: [{ className: 'c', imageHash: hash('c') }],
          customerId: null,
          now: now(),
        }),
      ).toMatchObject({
        classes: ['a', 'b', 'c'],
      });
      await other.exited;
      other = otherProcess(target, { mode: 'hold', holdMs: 300, owner: 'other-2' });
      await other.started;
      expect((await repo.delete('k_1', now())).deleted).toBe(true);
      await other.exited;
      expect(await ownerExists('other-1')).toBe(true);
      expect(await ownerExists('other-2')).toBe(true);
    });

    it('read-then-write changes from two processes at once all succeed, and none is lost', async () => {
      const COUNT = 40;
      const other = otherProcess(target, { mode: 'add', count: COUNT });
      await other.started;
      // This process's changes, all in flight together, while the other process makes its own.
      const mine = await Promise.all(
        Array.from({ length: COUNT }, (_, i) =>
          repo.addExamples({
            id: 'k_1',
            examples: [{ className: 'mine', imageHash: hash(`mine${i}`) }],
            customerId: null,
            now: now(),
          }),
        ),
      );
      await other.exited;
      expect(mine.every((c) => c !== undefined)).toBe(true);
      // Each change bumped the generation it read: a lost update would leave it short.
      const after = (await repo.trainingSnapshot('k_1'))!;
      expect(after.classifier.generation).toBe(1 + 2 * COUNT);
      expect(after.classifier.classes).toEqual(['a', 'b', expect.any(String), expect.any(String)]);
      const perClass = (name: string) => after.examples.filter((e) => e.className === name).length;
      expect([perClass('a'), perClass('b'), perClass('mine'), perClass('other')]).toEqual([3, 3, COUNT, COUNT]);
    });
  },
);
