import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { classImages, type ClassImageKind } from '../../fixtures/images';
import { VersionLeases } from '../../src/data-access/redis/version-leases';
import type { Database } from '../../src/data-access/db/database';
import { bootService, VERSION, waitFor, waitForStatus, type TestService } from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';
import { heldImageServer } from '../support/held-image-server';

const ROOT = path.resolve(__dirname, '..', '..');
/** The version leases as compiled (the worker runs from dist/ too): what a process of the service runs. */
const COMPILED_LEASES = path.join(ROOT, 'dist', 'src', 'data-access', 'redis', 'version-leases.js');

function imageForm(bytes: Buffer, fields: Record<string, string>): FormData {
  const form = new FormData();
  form.append('images_file', new Blob([new Uint8Array(bytes)]), 'image.jpg');
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  return form;
}

/**
 * Makes every row written to any table of the service's database (by any process, any code path)
 * leave a row in `test_write_log`: a trigger per table and operation on SQLite, a statement trigger
 * per table on PostgreSQL. Returns how to read the log and how to remove it all again.
 */
async function logEveryWrite(db: Database): Promise<{ writes(): Promise<string[]>; remove(): Promise<void> }> {
  const k = db.kysely;
  const ops = ['INSERT', 'UPDATE', 'DELETE'];
  let tables: string[];
  if (db.dialect === 'sqlite') {
    tables = (
      await sql<{
        name: string;
      }>`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`.execute(k)
    ).rows.map((r) => r.name);
    await sql`CREATE TABLE test_write_log (tbl TEXT, op TEXT)`.execute(k);
    for (const t of tables)
      for (const op of ops)
        await sql
          .raw(
            `CREATE TRIGGER "test_write_${t}_${op}" AFTER ${op} ON "${t}" BEGIN INSERT INTO test_write_log VALUES ('${t}', '${op}'); END`,
          )
          .execute(k);
  } else {
    tables = (
      await sql<{
        name: string;
      }>`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`.execute(
        k,
      )
    ).rows.map((r) => r.name);
    await sql`CREATE TABLE test_write_log (tbl TEXT, op TEXT)`.execute(k);
    await sql
      .raw(
        `CREATE FUNCTION test_log_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO test_write_log VALUES (TG_TABLE_NAME, TG_OP); RETURN NULL; END $$`,
      )
      .execute(k);
    for (const t of tables)
      await sql
        .raw(
          `CREATE TRIGGER "test_write_${t}" AFTER INSERT OR UPDATE OR DELETE ON "${t}" FOR EACH STATEMENT EXECUTE FUNCTION test_log_write()`,
        )
        .execute(k);
  }
  return {
    async writes() {
      const rows = await sql<{ tbl: string; op: string }>`SELECT tbl, op FROM test_write_log`.execute(k);
      return rows.rows.map((r) => `${r.op} ${r.tbl}`);
    },
    async remove() {
      for (const t of tables) {
        if (db.dialect === 'sqlite') {
          for (const op of ops) await sql.raw(`DROP TRIGGER "test_write_${t}_${op}"`).execute(k);
        } else await sql.raw(`DROP TRIGGER "test_write_${t}" ON "${t}"`).execute(k);
      }
      if (db.dialect === 'postgres') await sql`DROP FUNCTION test_log_write() CASCADE`.execute(k);
      await sql`DROP TABLE test_write_log`.execute(k);
    },
  };
}

/**
 * A process of its own holding a lease on `versionId` with the service's code (dist/), renewing it
 * every third of `ttlMs`, until killed. Resolves once Redis has the lease.
 */
async function holdInAnotherProcess(
  redisUrl: string,
  namespace: string,
  versionId: number,
  ttlMs: number,
): Promise<ChildProcess> {
  const script = `
    const { VersionLeases } = require(${JSON.stringify(COMPILED_LEASES)});
    VersionLeases.open(${JSON.stringify(redisUrl)}, ${JSON.stringify(namespace)}, ${ttlMs}).then(async (leases) => {
      await leases.hold([${versionId}]);
      process.stdout.write('held\\n');
      setInterval(() => undefined, 1000);
    });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('held') && resolve());
    child.once('exit', (code) => reject(new Error(`the lease holder exited (${code}) before holding`)));
  });
  return child;
}

async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

/**
 * Version leases live in Redis: classify writes nothing to the database, and retention in any
 * process (the training worker, another API process) spares what a request holds, until the
 * request ends or its process has been gone for the lease's TTL.
 */
describe('version leases', () => {
  let t: TestService;
  let id: string;
  let zips: Record<string, Buffer>;
  let circle: Buffer;
  let reader: VersionLeases;
  const versions: number[] = [];

  const listVersions = async () => (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
  const versionView = async (v: number) =>
    (await listVersions()).versions.find((x: { version_id: number }) => x.version_id === v);
  const classify = (fields: Record<string, string>) =>
    t.call('POST', `/v3/classify?${VERSION}`, { body: imageForm(circle, { threshold: '0.0', ...fields }) });
  /** Waits for retention (which runs just after a publish, in the worker) to have pruned `v`. */
  const prunedSoon = (v: number) =>
    waitFor(`version ${v} to be pruned`, async () => ((await versionView(v)).pruned ? true : undefined), 60_000);
  /** Waits for a head file to be deleted (retention deletes files just after it commits the pruning). */
  const removedSoon = (file: string) =>
    waitFor(`${file} to be deleted`, async () => (fs.existsSync(file) ? undefined : true), 60_000);
  const headFileOf = async (v: number) => {
    const db = await t.openDatabase();
    try {
      const row = await db.kysely.selectFrom('versions').select('head_file').where('id', '=', v).executeTakeFirst();
      return path.join(t.dataDir, 'heads', row!.head_file);
    } finally {
      await db.close();
    }
  };
  /**
   * Sends examples of one more class and waits until the worker has published the new version (it
   * applies retention right after: wait for what that does with prunedSoon), returns the new version.
   */
  const trainAnother = async (zip: Buffer, name: string) => {
    const res = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({ [`${name}_positive_examples`]: zip }),
    });
    expect(res.status).toBe(200);
    await waitForStatus(t, id, ['ready'], 300_000);
    const v = (await listVersions()).current_version_id as number;
    versions.push(v);
    return v;
  };

  beforeAll(async () => {
    // A long URL deadline: a request in flight waits while the worker retrains.
    t = await bootService({ KEEP_VERSIONS: '2', ALLOW_PRIVATE_URLS: 'true', URL_FETCH_TIMEOUT_MS: '600000' });
    reader = await VersionLeases.open(t.service.config.redisUrl!, t.service.queueNamespace, 30_000);
    const seeds: Array<[ClassImageKind, number]> = [
      ['red-circles', 61],
      ['blue-squares', 62],
      ['noise', 63],
      ['green-stripes', 64],
      ['yellow-triangles', 65],
    ];
    zips = {};
    for (const [name, seed] of seeds) zips[name] = await classZip(name, 10, seed);
    [circle] = await classImages('red-circles', 1, 66);
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: zips['red-circles'],
          squares_positive_examples: zips['blue-squares'],
          negative_examples: zips.noise,
        },
        { name: 'leased' },
      ),
    });
    id = created.body.classifier_id;
    await waitForStatus(t, id, ['ready'], 300_000);
    versions.push((await listVersions()).current_version_id);
    await trainAnother(zips['green-stripes'], 'stripes');
  }, 900_000);
  afterAll(async () => {
    await reader?.close();
    await t?.close();
  }, 300_000);

  it('classifies without writing to the database (current, pinned, built-in and owners=me alike)', async () => {
    const [v1, v2] = versions;
    const db = await t.openDatabase();
    const log = await logEveryWrite(db);
    try {
      for (const fields of <Array<Record<string, string>>>[
        { classifier_ids: id },
        { classifier_ids: `${id}@${v1},${id},default` },
        { owners: 'me,IBM' },
        { classifier_ids: `${id}@${v2}` },
      ]) {
        const res = await classify(fields);
        expect(res.status).toBe(200);
        expect(res.body.images[0].classifiers.length).toBeGreaterThan(0);
      }
      expect(await log.writes()).toEqual([]);
      // The log does see writes: an activation is one (and its retention another).
      expect((await t.call('POST', `/v3/classifiers/${id}/versions/${v1}/activate?${VERSION}`)).status).toBe(200);
      expect(await log.writes()).toContain('UPDATE classifiers');
      expect((await t.call('POST', `/v3/classifiers/${id}/versions/${v2}/activate?${VERSION}`)).status).toBe(200);
    } finally {
      await log.remove();
      await db.close();
    }
  });

  it('keeps the head a request in flight uses while the worker process prunes, and prunes it once the request ends', async () => {
    // A URL that answers only when told to holds a classify request pinned to the older kept version.
    const held = await heldImageServer(circle);
    try {
      const [pinned] = versions;
      const pinnedFile = await headFileOf(pinned);
      const inFlight = t.call(
        'GET',
        `/v3/classify?${VERSION}&threshold=0&url=${encodeURIComponent(held.url)}&classifier_ids=${id}@${pinned}`,
      );
      await held.arrived;
      expect(await reader.held()).toContain(pinned);

      // Two more versions, each followed by retention in the worker process: with KEEP_VERSIONS=2 the
      // pinned version would go at the first, but the request holds it.
      const v3 = await trainAnother(zips['yellow-triangles'], 'triangles');
      const v2File = await headFileOf(versions[1]);
      await trainAnother(await classZip('red-circles', 10, 67), 'rings');
      // Retention ran in the worker: the version between them went, with its file; the pinned one stayed.
      await prunedSoon(versions[1]);
      await removedSoon(v2File);
      expect((await versionView(pinned)).pruned).toBeUndefined();
      expect(fs.existsSync(pinnedFile)).toBe(true);

      held.release();
      const answer = await inFlight;
      expect(answer.status).toBe(200);
      expect(answer.body.images[0].classifiers[0].version_id).toBe(pinned);
      expect(await reader.held()).not.toContain(pinned);

      // The next retention in the worker takes the pinned version and its file (and v3, now third newest).
      await trainAnother(await classZip('blue-squares', 10, 68), 'boxes');
      await prunedSoon(pinned);
      await prunedSoon(v3);
      await removedSoon(pinnedFile);
    } finally {
      await held.close();
    }
  }, 900_000);

  it('holds a version while its process lives (renewing the lease) and frees it a TTL after that process is killed', async () => {
    const TTL_MS = 6_000;
    const older = versions[versions.length - 2];
    const olderFile = await headFileOf(older);
    const holder = await holdInAnotherProcess(t.service.config.redisUrl!, t.service.queueNamespace, older, TTL_MS);
    try {
      // Alive, the holder renews its lease: it outlasts the TTL many times over. A newer version trains meanwhile.
      const [newest] = await Promise.all([
        trainAnother(await classZip('green-stripes', 10, 69), 'bands'),
        new Promise((r) => setTimeout(r, 2.5 * TTL_MS)),
      ]);
      expect(await reader.held()).toContain(older);
      // Retention after an activation (in this API process) spares it.
      const previous = versions[versions.length - 2];
      const activate = async (v: number) =>
        expect((await t.call('POST', `/v3/classifiers/${id}/versions/${v}/activate?${VERSION}`)).status).toBe(200);
      await activate(previous);
      expect((await versionView(older)).pruned).toBeUndefined();

      await killHard(holder);
      const killedAt = Date.now();
      // Killed, its lease lives until it expires: retention still spares it.
      await activate(newest);
      const stillHeld = (await reader.held()).has(older);
      expect({ stillHeld, withinTtl: Date.now() - killedAt < (2 * TTL_MS) / 3 }).toEqual({
        stillHeld: true,
        withinTtl: true,
      });
      expect((await versionView(older)).pruned).toBeUndefined();
      expect(fs.existsSync(olderFile)).toBe(true);

      // Then it expires (a TTL after its last renewal, which was at most a third of one before the kill),
      // and the next retention takes the version and its file.
      await waitFor(
        "the killed process's lease to expire",
        async () => ((await reader.held()).has(older) ? undefined : true),
        TTL_MS + 10_000,
        100,
      );
      expect(Date.now() - killedAt).toBeGreaterThanOrEqual((2 * TTL_MS) / 3 - 200);
      await activate(previous);
      expect((await versionView(older)).pruned).toBeDefined();
      expect(fs.existsSync(olderFile)).toBe(false);
    } finally {
      await killHard(holder);
    }
  }, 900_000);
});
