import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { ClassifierRepository } from '../../src/data-access/classifier-repository';
import { openDatabase, type Database } from '../../src/data-access/database';

const hash = (s: string) => crypto.createHash('sha256').update(s).digest('hex');
const now = () => new Date().toISOString();

/**
 * Another process (the API while the worker publishes, or the reverse) writes while this one's
 * change runs. A change that read before it wrote used to fail at once with SQLITE_BUSY_SNAPSHOT
 * ("database is locked", found by the soak test: failed training runs, head files left behind);
 * it must wait for the other writer and then succeed.
 */
describe('ClassifierRepository beside another writing process', () => {
  let dir: string;
  let dbPath: string;
  let db: Database;
  let repo: ClassifierRepository;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'concurrent-writes-'));
    dbPath = path.join(dir, 'service.sqlite');
    db = openDatabase(dbPath);
    repo = new ClassifierRepository(db);
    const examples = ['a', 'b'].flatMap((c) => [0, 1, 2].map((i) => ({ className: c, imageHash: hash(`${c}${i}`) })));
    repo.create({ id: 'k_1', ownerId: 'alice', name: 'k', examples, customerId: null, now: now() });
  });
  afterEach(() => {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A process that takes the write lock, writes, says "locked", and commits `holdMs` later. */
  function holdWriteLock(holdMs: number): Promise<{ committed: Promise<void> }> {
    const script = `
      const db = new (require(${JSON.stringify(require.resolve('better-sqlite3'))}))(${JSON.stringify(dbPath)});
      db.exec('BEGIN IMMEDIATE');
      db.prepare("UPDATE classifiers SET updated = ? WHERE id = 'k_1'").run(new Date().toISOString());
      process.stdout.write('locked\\n');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${holdMs});
      db.exec('COMMIT');
      db.close();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const committed = new Promise<void>((resolve, reject) =>
      child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`the lock holder exited with ${code}`)))),
    );
    return new Promise((resolve) => {
      readline.createInterface({ input: child.stdout! }).once('line', () => resolve({ committed }));
    });
  }

  it('publishVersion waits for the other writer instead of failing', async () => {
    const snapshot = repo.trainingSnapshot('k_1')!;
    const other = await holdWriteLock(300);
    const published = repo.publishVersion({
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
    await other.committed;
    expect(published).toBe(true);
    expect(repo.find('k_1')).toMatchObject({ status: 'ready', currentVersionId: expect.any(Number) });
  });

  it('addExamples and delete wait for the other writer instead of failing', async () => {
    let other = await holdWriteLock(300);
    expect(repo.addExamples({ id: 'k_1', examples: [{ className: 'c', imageHash: hash('c') }], customerId: null, now: now() })).toMatchObject({
      classes: ['a', 'b', 'c'],
    });
    await other.committed;
    other = await holdWriteLock(300);
    expect(repo.delete('k_1').deleted).toBe(true);
    await other.committed;
  });
});
