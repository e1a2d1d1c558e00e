import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { dataLayout } from '../../src/data-access/files/data-layout';
import { Database, WrongDatabaseError } from '../../src/data-access/db/database';
import { LEGACY_SQLITE_STEPS } from '../../src/data-access/db/migrations';
import { fileState, runMigrate } from '../support/migrate-cli';
import { createTestDatabase, postgresAdminUrl, type TestDatabase } from '../support/postgres';

/** The tables a migration copies (every table but the migrations' own and image_claims). */
const COPIED = [
  'owners',
  'api_keys',
  'classifiers',
  'classes',
  'examples',
  'versions',
  'secrets',
  'issued_classifier_ids',
  'instance',
  'version_examples',
  'retired_examples',
  'version_events',
  'pruned_versions',
  'version_leases',
  'classifier_callbacks',
  'callback_secrets',
  'callback_outbox',
  'embeddings',
];

/**
 * A stopped instance's data directory with a row in every table, made through the service's own
 * Database.open: ids with gaps, a deleted newest example and version (sqlite_sequence > MAX(id)),
 * binary secrets and embeddings, text keys whose order differs between collations, an upload claim.
 */
async function makeInstance(): Promise<{ dataDir: string; file: string; instanceId: string }> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-migrate-'));
  const file = dataLayout(dataDir).database;
  const db = await Database.open({ sqliteFile: file });
  const now = '2024-05-01T10:00:00.000Z';
  await db.write(async (q) => {
    await q
      .insertInto('owners')
      .values([
        { id: 'alice', created: now },
        { id: 'Bob', created: now },
      ])
      .execute();
    await q
      .insertInto('api_keys')
      .values([
        { owner_id: 'alice', key_hash: 'h1', key_prefix: 'abcd', source: 'env', created: now, revoked: null },
        { owner_id: 'Bob', key_hash: 'h2', key_prefix: 'efgh', source: 'cli', created: now, revoked: now },
      ])
      .execute();
    for (const id of ['Zeta_1', 'alpha_2', 'gone_3']) {
      await q
        .insertInto('classifiers')
        .values({
          id,
          owner_id: 'alice',
          name: id,
          status: 'ready',
          explanation: null,
          created: now,
          updated: now,
          retrained: null,
          generation: 2,
          trained_generation: 1,
          current_version_id: null,
          customer_id: null,
        })
        .execute();
      await q.insertInto('issued_classifier_ids').values({ id, owner_id: 'alice', issued: now }).execute();
      await q
        .insertInto('classes')
        .values([
          { classifier_id: id, name: 'b', position: 1 },
          { classifier_id: id, name: 'A', position: 0 },
        ])
        .execute();
      for (let i = 0; i < 4; i++) {
        await q
          .insertInto('examples')
          .values({
            classifier_id: id,
            class_name: i % 2 ? 'A' : null,
            image_hash: `${id}-${i}`,
            generation: 1,
            customer_id: null,
            created: now,
            entry_name: `é/${i}.jpg`,
          })
          .execute();
      }
      await q
        .insertInto('versions')
        .values({
          classifier_id: id,
          generation: 1,
          head_file: `${id}/1.head`,
          classes: '["A","b"]',
          pack_key: 'p',
          evaluation: '{"accuracy":0.5}',
          examples: 4,
          created: now,
        })
        .execute();
    }
    const versions = await q.selectFrom('versions').select(['id', 'classifier_id']).execute();
    for (const v of versions) {
      await q.updateTable('classifiers').set({ current_version_id: v.id }).where('id', '=', v.classifier_id).execute();
      const examples = await q
        .selectFrom('examples')
        .select('id')
        .where('classifier_id', '=', v.classifier_id)
        .execute();
      await q
        .insertInto('version_examples')
        .values(examples.map((e) => ({ classifier_id: v.classifier_id, version_id: v.id, example_id: e.id })))
        .execute();
      await q
        .insertInto('version_events')
        .values({
          classifier_id: v.classifier_id,
          version_id: v.id,
          previous_version_id: null,
          cause: 'trained',
          created: now,
        })
        .execute();
      await q
        .insertInto('version_leases')
        .values({ classifier_id: v.classifier_id, version_id: v.id, expires: now })
        .execute();
    }
    await q.insertInto('retired_examples').values({ example_id: 1, classifier_id: 'Zeta_1' }).execute();
    await q.insertInto('pruned_versions').values({ version_id: 99, classifier_id: 'Zeta_1', pruned: now }).execute();
    await q
      .insertInto('classifier_callbacks')
      .values({ classifier_id: 'alpha_2', url: 'https://example.test/hook' })
      .execute();
    await q.insertInto('callback_secrets').values({ owner_id: 'alice', secret: 's3cret', created: now }).execute();
    await q
      .insertInto('callback_outbox')
      .values({
        delivery_id: 'd1',
        classifier_id: 'alpha_2',
        owner_id: 'alice',
        url: 'https://example.test/hook',
        body: '{"x":"ü\\n"}',
        created: now,
      })
      .execute();
    await q
      .insertInto('secrets')
      .values({ name: 'token-key', value: crypto.randomBytes(32) })
      .execute();
    for (let i = 0; i < 120; i++) {
      // ≈15 kB like a real embedding; keys in mixed case so bytewise and locale orders differ.
      await q
        .insertInto('embeddings')
        .values({
          hash: `${i % 2 ? 'F' : 'e'}${crypto.randomBytes(8).toString('hex')}`,
          pack_key: i % 3 ? 'Pack' : 'pack',
          vector: crypto.randomBytes(15_360),
        })
        .execute();
    }
    await q.insertInto('image_claims').values({ claim_id: 'c1', image_hash: 'x', expires: now }).execute();
    // The newest classifier goes: its ids were issued and must never be issued again.
    await q.deleteFrom('classifiers').where('id', '=', 'gone_3').execute();
  });
  const instanceId = (await db.kysely.selectFrom('instance').select('id').executeTakeFirstOrThrow()).id;
  await db.close();
  return { dataDir, file, instanceId };
}

/** Every row of a table, as sortable strings (bytes in hex), whatever order the database gives them in. */
function canonicalRows(rows: Array<Record<string, unknown>>): string[] {
  return rows
    .map((row) =>
      JSON.stringify(
        Object.keys(row)
          .sort()
          .map((k) => [k, Buffer.isBuffer(row[k]) ? `hex:${(row[k] as Buffer).toString('hex')}` : row[k]]),
      ),
    )
    .sort();
}

function sqliteRows(file: string, table: string): Array<Record<string, unknown>> {
  const copy = `${file}.read-${crypto.randomBytes(4).toString('hex')}`;
  fs.copyFileSync(file, copy);
  const db = new BetterSqlite3(copy);
  try {
    return db.prepare(`SELECT * FROM ${table}`).all() as Array<Record<string, unknown>>;
  } finally {
    db.close();
    for (const suffix of ['', '-wal', '-shm']) fs.rmSync(copy + suffix, { force: true });
  }
}

async function query<T extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

const tablesIn = async (url: string) =>
  (
    await query<{ name: string }>(
      url,
      'SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1',
    )
  ).map((r) => r.name);

/**
 * An empty database whose text order is a language's (ICU en-US: 'a' < 'B' < 'c'), not SQLite's
 * bytewise one ('B' < 'a'), so the copy's verification must compare rows in the same order on both sides.
 */
async function createLocaleOrderedDatabase(): Promise<TestDatabase> {
  const name = `wvr_test_${crypto.randomBytes(6).toString('hex')}`;
  await query(
    postgresAdminUrl(),
    `CREATE DATABASE ${name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`,
  );
  const url = new URL(postgresAdminUrl());
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => query(postgresAdminUrl(), `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).then(() => undefined),
  };
}

const env = (dataDir: string) => ({
  DATA_DIR: dataDir,
  QUEUE_PREFIX: `wvr-test-${crypto.randomBytes(4).toString('hex')}`,
});

describe('npm run migrate (SQLite → PostgreSQL), as a process', () => {
  const databases: TestDatabase[] = [];
  const dirs: string[] = [];
  const newDatabase = async () => {
    const db = await createTestDatabase();
    databases.push(db);
    return db;
  };
  const newInstance = async () => {
    const instance = await makeInstance();
    dirs.push(instance.dataDir);
    return instance;
  };

  afterAll(async () => {
    for (const db of databases) await db.drop();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('copies every table row for row and byte for byte, continues ids after the largest ever issued, and only reads the source', async () => {
    const source = await newInstance();
    const target = await createLocaleOrderedDatabase();
    databases.push(target);
    expect(
      (
        await query<{ ordered: string }>(
          target.url,
          `SELECT string_agg(x, '' ORDER BY x) AS ordered FROM (VALUES ('B'), ('a')) v(x)`,
        )
      )[0].ordered,
    ).toBe('aB');
    const before = fileState(source.file);
    const sequenceBefore = sqliteRows(source.file, 'sqlite_sequence');

    const run = await runMigrate(['--to', target.url], env(source.dataDir));
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(fileState(source.file)).toEqual(before);

    for (const table of COPIED) {
      const pgRows = await query(target.url, `SELECT * FROM ${table}`);
      expect({ table, rows: canonicalRows(pgRows) }).toEqual({
        table,
        rows: canonicalRows(sqliteRows(source.file, table)),
      });
      expect(pgRows.length).toBeGreaterThan(0);
    }
    expect(await query(target.url, 'SELECT * FROM image_claims')).toEqual([]);
    expect(run.stdout).toMatch(/^ {2}image_claims +1 rows {2}not copied/m);
    expect((await query<{ id: string }>(target.url, 'SELECT id FROM instance'))[0].id).toBe(source.instanceId);

    // The next id of every table with ids follows sqlite_sequence (the deleted classifier's ids included).
    const issued = Object.fromEntries(sequenceBefore.map((r) => [r.name as string, r.seq as number]));
    const maxId = (table: string) => Math.max(...sqliteRows(source.file, table).map((r) => r.id as number));
    expect(issued.examples).toBeGreaterThan(maxId('examples'));
    expect(issued.versions).toBeGreaterThan(maxId('versions'));
    const next = await query<{ id: number }>(
      target.url,
      `INSERT INTO examples (classifier_id, image_hash, generation, created) VALUES ('alpha_2', 'new', 3, 'now') RETURNING id`,
    );
    expect(next[0].id).toBe(issued.examples + 1);
    const nextVersion = await query<{ id: number }>(
      target.url,
      `INSERT INTO versions (classifier_id, generation, head_file, classes, pack_key, evaluation, examples, created) VALUES ('alpha_2', 3, 'h', '[]', 'p', '{}', 0, 'now') RETURNING id`,
    );
    expect(nextVersion[0].id).toBe(issued.versions + 1);
    expect(run.stdout).toContain(`examples from ${issued.examples + 1}`);

    // The SQLite file is only the source now: a process started without DATABASE_URL (whose orphan
    // sweep would delete the images uploaded since) or npm run keys is refused, naming the database.
    const stale = await Database.open({ sqliteFile: source.file, dataDirectoryInstance: source.instanceId }).catch(
      (e: Error) => e,
    );
    expect(stale).toBeInstanceOf(WrongDatabaseError);
    expect((stale as Error).message).toMatch(/moved to PostgreSQL \(postgres:\/\/.*\).*Set DATABASE_URL/);
    expect(fileState(source.file)).toEqual(before);
    expect(fs.readFileSync(path.join(source.dataDir, 'instance-id'), 'utf8').trim()).toBe(source.instanceId);
  });

  it('refuses a target that holds this instance, another instance or any table, and leaves it as it was', async () => {
    const source = await newInstance();
    const before = fileState(source.file);

    const moved = await newDatabase();
    expect((await runMigrate(['--to', moved.url], env(source.dataDir))).code).toBe(0);
    const again = await runMigrate(['--to', moved.url], env(source.dataDir));
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(
      `already holds this instance (${source.instanceId}): it was moved there before. A migration copies into an empty database only`,
    );

    const other = await newDatabase();
    const otherDb = await Database.open({ databaseUrl: other.url, sqliteFile: '/nonexistent' });
    const otherId = (await otherDb.kysely.selectFrom('instance').select('id').executeTakeFirstOrThrow()).id;
    await otherDb.close();
    const onOther = await runMigrate(['--to', other.url], env(source.dataDir));
    expect(onOther.code).toBe(1);
    expect(onOther.stderr).toContain(`already holds an instance (${otherId})`);
    expect((await query<{ id: string }>(other.url, 'SELECT id FROM instance')).map((r) => r.id)).toEqual([otherId]);

    const unrelated = await newDatabase();
    await query(unrelated.url, 'CREATE TABLE notes (body text)');
    await query(unrelated.url, `INSERT INTO notes VALUES ('keep me')`);
    const onUnrelated = await runMigrate(['--to', unrelated.url], env(source.dataDir));
    expect(onUnrelated.code).toBe(1);
    expect(onUnrelated.stderr).toContain('is not empty (it holds the tables notes)');
    expect(await tablesIn(unrelated.url)).toEqual(['notes']);
    expect(await query(unrelated.url, 'SELECT body FROM notes')).toEqual([{ body: 'keep me' }]);
    expect(fileState(source.file)).toEqual(before);
  });

  it('refuses a target URL it cannot use, naming it without its password', async () => {
    const source = await newInstance();
    const cases: Array<[string, RegExp]> = [
      [
        'http://127.0.0.1:5432/x',
        /^--to must be the URL of an empty PostgreSQL database, postgres:\/\/user:password@host:5432\/database \(got 'http:\/\/127\.0\.0\.1:5432\/x'\)/,
      ],
      ['not a url', /^--to must be the URL of an empty PostgreSQL database.*\(got something that is not a URL\)/],
      ['postgres://127.0.0.1:5432', /^--to must be the URL of an empty PostgreSQL database/],
      [
        'postgres://someone:hunter2@127.0.0.1:1/x',
        /^Cannot reach the PostgreSQL database postgres:\/\/someone:\*\*\*@127\.0\.0\.1:1\/x \(connect ECONNREFUSED/,
      ],
    ];
    for (const [url, message] of cases) {
      const run = await runMigrate(['--to', url], env(source.dataDir));
      expect({ url, code: run.code, stderr: run.stderr }).toEqual({
        url,
        code: 1,
        stderr: expect.stringMatching(message),
      });
      expect(run.stderr).not.toContain('hunter2');
    }
    const missing = new URL((await newDatabase()).url);
    missing.pathname = '/wvr_no_such_database';
    const noDatabase = await runMigrate([`--to=${missing}`], env(source.dataDir));
    expect(noDatabase.code).toBe(1);
    expect(noDatabase.stderr).toMatch(/database "wvr_no_such_database" does not exist\)\. .*Create the database first/);
    const usage = await runMigrate([], env(source.dataDir));
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^Usage: npm run migrate -- --to postgres:/);
  });

  it('fails on a row PostgreSQL would keep otherwise (checksum) or cannot keep, rolls back to an empty target, and copies once fixed', async () => {
    const source = await newInstance();
    const target = await newDatabase();
    const edit = (sqlText: string, ...params: unknown[]) => {
      const db = new BetterSqlite3(source.file);
      db.prepare(sqlText).run(...params);
      db.close();
    };
    // SQLite keeps a BLOB in a TEXT column; PostgreSQL would store its hex text: same count, other bytes.
    edit('UPDATE examples SET entry_name = ? WHERE id = 2', Buffer.from('ab'));
    let before = fileState(source.file);
    const mismatch = await runMigrate(['--to', target.url], env(source.dataDir));
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toMatch(
      /^Table examples does not match after the copy: the source has 8 rows \(SHA-256 [0-9a-f]{16}…\), PostgreSQL 8 rows \(SHA-256 [0-9a-f]{16}…\)\. Everything was rolled back; .* is empty again and the SQLite file is unchanged\./,
    );
    expect(await tablesIn(target.url)).toEqual([]);
    expect(fileState(source.file)).toEqual(before);

    edit('UPDATE examples SET entry_name = NULL, generation = ? WHERE id = 2', 2 ** 40);
    before = fileState(source.file);
    const outOfRange = await runMigrate(['--to', target.url], env(source.dataDir));
    expect(outOfRange.code).toBe(1);
    expect(outOfRange.stderr).toMatch(
      /^The copy failed at table examples: value "1099511627776" is out of range for type integer\. Everything was rolled back/,
    );
    expect(await tablesIn(target.url)).toEqual([]);
    expect(fileState(source.file)).toEqual(before);

    edit('UPDATE examples SET generation = 1 WHERE id = 2');
    expect((await runMigrate(['--to', target.url], env(source.dataDir))).code).toBe(0);
  });

  it("refuses a source it must not read as is: an older or newer release's file, or a data directory of another instance", async () => {
    const target = await newDatabase();
    const legacyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-migrate-'));
    dirs.push(legacyDir);
    const legacy = new BetterSqlite3(dataLayout(legacyDir).database);
    for (const step of LEGACY_SQLITE_STEPS) legacy.exec(step);
    legacy.pragma(`user_version = ${LEGACY_SQLITE_STEPS.length}`);
    legacy.close();
    const legacyBefore = fileState(dataLayout(legacyDir).database);
    const older = await runMigrate(['--to', target.url], env(legacyDir));
    expect(fileState(dataLayout(legacyDir).database)).toEqual(legacyBefore);
    expect(older.code).toBe(1);
    expect(older.stderr).toMatch(
      /was written by an older release\. Start the service of this release on it once .*, stop it, and run the migration again\./,
    );

    const newer = await newInstance();
    const db = new BetterSqlite3(newer.file);
    db.prepare(`INSERT INTO kysely_migration (name, timestamp) VALUES ('9999_future', 'now')`).run();
    db.close();
    const newerBefore = fileState(newer.file);
    const fromNewer = await runMigrate(['--to', target.url], env(newer.dataDir));
    expect(fileState(newer.file)).toEqual(newerBefore);
    expect(fromNewer.code).toBe(1);
    expect(fromNewer.stderr).toMatch(
      /was written by a newer release than this one \(schema \d+, migrations 9999_future\)/,
    );

    const foreign = await newInstance();
    fs.writeFileSync(path.join(foreign.dataDir, 'instance-id'), `${crypto.randomUUID()}\n`);
    const fromForeign = await runMigrate(['--to', target.url], env(foreign.dataDir));
    expect(fromForeign.code).toBe(1);
    expect(fromForeign.stderr).toMatch(
      new RegExp(`belongs to instance [0-9a-f-]{36}, but its service.sqlite is instance ${foreign.instanceId}`),
    );

    const nowhere = await runMigrate(['--to', target.url], env(path.join(legacyDir, 'missing')));
    expect(nowhere.stderr).toMatch(/^There is no SQLite database at .*missing\/service\.sqlite\. Set DATA_DIR/);
    expect(await tablesIn(target.url)).toEqual([]);
  });
});
