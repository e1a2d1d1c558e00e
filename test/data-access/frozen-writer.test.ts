import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { sql } from 'kysely';
import { Database, type DatabaseTarget } from '../../src/data-access/db/database';
import { ClassifierRepository } from '../../src/data-access/db/classifier-repository';
import { createTestDatabase, type TestDatabase } from '../support/postgres';

const ROOT = path.resolve(__dirname, '..', '..');
/** Short, so the test waits seconds; the service's default is DATABASE_STALL_TIMEOUT_MS's. */
const STALL_TIMEOUT_MS = 2000;
const now = () => new Date().toISOString();

/**
 * Another process of the instance that enters a write transaction through Database.write (writes a
 * row, says "locked"), then waits for "go" on its stdin before writing again and committing; the test
 * freezes it (SIGSTOP) in between. `reading`: it asks for a large answer (tens of MB) first and stops
 * itself as soon as the query is sent, so the server is left blocked sending it. It then says how
 * its transaction ended ("committed" or "failed: <error class>: <message>") and whether a new write
 * afterwards works ("recovered"), and exits.
 */
function frozenWriter(target: DatabaseTarget, mode: 'idle' | 'reading') {
  const script = `
    const readline = require('node:readline');
    const { sql } = require('kysely');
    const { Database } = require('./src/data-access/db/database');
    const { target, mode } = JSON.parse(process.env.FROZEN_WRITER);
    const say = (line) => new Promise((resolve) => process.stdout.write(line + '\\n', resolve));
    const lines = readline.createInterface({ input: process.stdin });
    const go = new Promise((resolve) => lines.once('line', resolve));
    (async () => {
      const db = await Database.open(target);
      try {
        await db.write(async (trx) => {
          await trx.insertInto('owners').values({ id: 'frozen-1', created: new Date().toISOString() }).execute();
          await say('locked');
          if (mode === 'reading') {
            const answer = sql\`SELECT repeat('x', 1000) FROM generate_series(1, 50000)\`.execute(trx);
            // Continued, the reset socket may fail it before "go" arrives: handled below, not unhandled.
            answer.catch(() => undefined);
            setImmediate(() => process.kill(process.pid, 'SIGSTOP'));
            await go;
            await answer;
          }
          await go;
          await trx.insertInto('owners').values({ id: 'frozen-2', created: new Date().toISOString() }).execute();
        });
        await say('committed');
      } catch (error) {
        await say('failed: ' + error.constructor.name + ': ' + error.message);
      }
      await db.write((trx) => trx.insertInto('owners').values({ id: 'after', created: new Date().toISOString() }).execute());
      await say('recovered');
      lines.close();
      await db.close();
    })().catch((error) => { console.error(error); process.exit(1); });`;
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], {
    cwd: ROOT,
    env: { ...process.env, FROZEN_WRITER: JSON.stringify({ target, mode }) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const said: string[] = [];
  const waiters: Array<() => void> = [];
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    said.push(line);
    waiters.splice(0).forEach((w) => w());
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  /** The next line it says (the `index`-th, from 0), or an error if it exits first. */
  const line = (index: number) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        if (said.length > index) resolve(said[index]);
        else waiters.push(check);
      };
      check();
      void exited.then((code) => reject(new Error(`the frozen writer exited with ${code} after saying ${said}`)));
    });
  return { child, line, exited };
}

/** Resolves once the process is stopped (state T in /proc: Linux). */
async function stopped(pid: number): Promise<void> {
  while (!/^\d+ \(.*\) T/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')))
    await new Promise((r) => setTimeout(r, 20));
}

/** `promise`, or a rejection naming `what` after `ms`. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

/**
 * A process frozen (SIGSTOP: a debugger, a paused container or VM) or hung inside a write
 * transaction used to hold PostgreSQL's write lock forever, and every write of every other process
 * of the instance waited with it. Its session is now ended by the server once idle in the
 * transaction for the configured time: the others' writes go on, and the frozen process, continued,
 * finds its transaction aborted, nothing of it applied, and can write again.
 */
describe('a process frozen inside a write transaction', () => {
  let dir: string;
  let pg: TestDatabase | undefined;
  let target: DatabaseTarget;
  let db: Database;
  let writer: ReturnType<typeof frozenWriter> | undefined;

  const open = async (dialect: 'sqlite' | 'postgres') => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'frozen-writer-'));
    pg = dialect === 'postgres' ? await createTestDatabase() : undefined;
    target = {
      databaseUrl: pg?.url,
      sqliteFile: path.join(dir, 'service.sqlite'),
      stallTimeoutMs: STALL_TIMEOUT_MS,
    };
    db = await Database.open(target);
  };
  afterEach(async () => {
    // A failed test may leave it waiting (or frozen, holding the lock the pool below waits on).
    if (writer && writer.child.exitCode === null && writer.child.signalCode === null) {
      writer.child.kill('SIGCONT');
      writer.child.kill('SIGKILL');
      await writer.exited;
    }
    await db.close();
    await pg?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** The wait event of the frozen writer's large query, once the server is blocked sending it. */
  const serverBlockedOnClient = async () => {
    for (;;) {
      const { rows } = await sql<{ wait_event: string | null }>`
        SELECT wait_event FROM pg_stat_activity WHERE query LIKE '%generate_series(1, 50000)%' AND pid <> pg_backend_pid()`.execute(
        db.kysely,
      );
      if (rows[0]?.wait_event === 'ClientWrite') return rows[0].wait_event;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const owners = async () =>
    (await db.kysely.selectFrom('owners').select('id').orderBy('id').execute()).map((r) => r.id);
  const createClassifier = () =>
    new ClassifierRepository(db).create({
      id: 'k_1',
      ownerId: 'alice',
      name: 'k',
      examples: [],
      customerId: null,
      now: now(),
    });

  /** Starts the writer, freezes it once it holds the lock, runs `beside`, and continues it. */
  async function besideFrozen<T>(beside: () => Promise<T>, mode: 'idle' | 'reading' = 'idle'): Promise<T> {
    writer = frozenWriter(target, mode);
    expect(await within(30_000, 'the writer taking the lock', writer.line(0))).toBe('locked');
    if (mode === 'idle') writer.child.kill('SIGSTOP');
    try {
      if (mode === 'reading') await within(30_000, 'the writer stopping itself', stopped(writer.child.pid!));
      return await beside();
    } finally {
      // Never left frozen: a stopped process outlives the test.
      writer.child.kill('SIGCONT');
      writer.child.stdin!.write('go\n');
    }
  }

  test("on postgres, holds the others' writes only until its transaction is ended; continued, it finds it aborted", async () => {
    await open('postgres');
    const waited = await besideFrozen(async () => {
      const started = Date.now();
      await within(STALL_TIMEOUT_MS + 10_000, 'a write beside the frozen process', createClassifier());
      return Date.now() - started;
    });
    expect(waited).toBeGreaterThanOrEqual(STALL_TIMEOUT_MS - 100);
    expect(await within(30_000, 'the continued writer', writer!.line(1))).toMatch(
      /^failed: TransactionAbortedError: .*idle-in-transaction timeout/,
    );
    expect(await within(30_000, 'the continued writer writing again', writer!.line(2))).toBe('recovered');
    expect(await writer!.exited).toBe(0);
    // Nothing of the aborted transaction (frozen-1); the later write, and the other process's change, whole.
    expect(await owners()).toEqual(['after']);
    expect(await new ClassifierRepository(db).find('k_1')).toMatchObject({ id: 'k_1', name: 'k' });
  }, 60_000);

  test('on postgres, also when frozen while the server sends it an answer (the server is not idle then)', async () => {
    await open('postgres');
    const waited = await besideFrozen(async () => {
      // Not idle in its transaction: blocked writing to the frozen process's full socket.
      expect(await within(30_000, "the server's answer filling the socket", serverBlockedOnClient())).toBe(
        'ClientWrite',
      );
      const started = Date.now();
      await within(STALL_TIMEOUT_MS + 20_000, 'a write beside the frozen process', createClassifier());
      return Date.now() - started;
    }, 'reading');
    expect(waited).toBeGreaterThanOrEqual(STALL_TIMEOUT_MS - 100);
    expect(await within(30_000, 'the continued writer', writer!.line(1))).toMatch(/^failed: TransactionAbortedError: /);
    expect(await within(30_000, 'the continued writer writing again', writer!.line(2))).toBe('recovered');
    expect(await writer!.exited).toBe(0);
    expect(await owners()).toEqual(['after']);
  }, 60_000);

  // SQLite has no server to end the frozen transaction: the others' writes fail after the busy
  // timeout (bounded, not forever) until the frozen process runs again and commits.
  test("on sqlite, the others' writes fail after the busy timeout; continued, it commits whole", async () => {
    await open('sqlite');
    const failure = await besideFrozen(() =>
      within(
        15_000,
        'a write beside the frozen process',
        createClassifier().catch((error: Error) => error),
      ),
    );
    expect(failure).toMatchObject({ code: 'SQLITE_BUSY' });
    expect(await within(30_000, 'the continued writer', writer!.line(1))).toBe('committed');
    expect(await within(30_000, 'the continued writer writing again', writer!.line(2))).toBe('recovered');
    expect(await writer!.exited).toBe(0);
    expect(await owners()).toEqual(['after', 'frozen-1', 'frozen-2']);
    expect(await new ClassifierRepository(db).find('k_1')).toBeUndefined();
    await createClassifier();
  }, 60_000);
});
