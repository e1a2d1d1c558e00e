import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import { sql } from 'kysely';
import { Client as PgClient } from 'pg';
import {
  Database,
  DatabaseSchemaError,
  DatabaseUnavailableError,
  WrongDatabaseError,
} from '../../src/data-access/db/database';
import { ImageClaims } from '../../src/data-access/db/image-claims';
import { LEGACY_SQLITE_STEPS } from '../../src/data-access/db/migrations';
import { bindDataDirectory, DataDirectoryInUseError } from '../../src/data-access/files/data-directory';
import { readInstanceId } from '../../src/data-access/db/instance-id';
import { loadConfig, ConfigError } from '../../src/config';
import { EmbeddingCache } from '../../src/data-access/db/embedding-cache';
import { createTestDatabase, type TestDatabase } from '../support/postgres';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');

/** Every table's columns, by name: what the two dialects and the two migration paths must agree on. */
async function shape(db: Database): Promise<Record<string, string[]>> {
  const tables = await db.kysely.introspection.getTables();
  return Object.fromEntries(tables.map((t) => [t.name, t.columns.map((c) => c.name).sort()]).sort());
}

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-db-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => tempDirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

describe.each(['sqlite', 'postgres'] as const)('the database on %s', (dialect) => {
  let pg: TestDatabase | undefined;
  let db: Database;
  const target = () =>
    dialect === 'postgres'
      ? { databaseUrl: pg!.url, sqliteFile: '' }
      : { sqliteFile: path.join(tempDir(), 'service.sqlite') };

  beforeEach(async () => {
    if (dialect === 'postgres') pg = await createTestDatabase();
    db = await Database.open(target());
  });
  afterEach(async () => {
    await db.close();
    await pg?.drop();
  });

  test('a new database has the whole schema and one instance identity that reopening keeps', async () => {
    expect(Object.keys(await shape(db))).toEqual(
      expect.arrayContaining([
        'classifiers',
        'examples',
        'versions',
        'api_keys',
        'embeddings',
        'image_claims',
        'instance',
      ]),
    );
    const id = await readInstanceId(db);
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    if (dialect === 'postgres') {
      const again = await Database.open({ databaseUrl: pg!.url, sqliteFile: '' });
      expect(await readInstanceId(again)).toBe(id);
      await again.close();
    }
  });

  test('ids are never handed out again after the newest row is deleted', async () => {
    await db.kysely.insertInto('owners').values({ id: 'o', created: 'now' }).execute();
    const add = async () =>
      (
        await db.kysely
          .insertInto('api_keys')
          .values({
            owner_id: 'o',
            key_hash: Math.random().toString(),
            key_prefix: 'abcd',
            source: 'cli',
            created: 'now',
          })
          .returning('id')
          .executeTakeFirstOrThrow()
      ).id;
    const first = await add();
    await db.kysely.deleteFrom('api_keys').where('id', '=', first).execute();
    expect(await add()).toBeGreaterThan(first);
  });

  test('a write transaction that fails leaves nothing behind', async () => {
    await expect(
      db.write(async (trx) => {
        await trx.insertInto('owners').values({ id: 'ghost', created: 'now' }).execute();
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await db.kysely.selectFrom('owners').selectAll().execute()).toEqual([]);
  });

  test('write transactions from many callers at once apply one after another: no lost update', async () => {
    await db.kysely
      .insertInto('secrets')
      .values({ name: 'counter', value: Buffer.from('0') })
      .execute();
    await Promise.all(
      Array.from({ length: 20 }, () =>
        db.write(async (trx) => {
          const row = await trx
            .selectFrom('secrets')
            .select('value')
            .where('name', '=', 'counter')
            .executeTakeFirstOrThrow();
          await new Promise((r) => setTimeout(r, 2));
          await trx
            .updateTable('secrets')
            .set({ value: Buffer.from(String(Number(row.value.toString()) + 1)) })
            .where('name', '=', 'counter')
            .execute();
        }),
      ),
    );
    const row = await db.kysely
      .selectFrom('secrets')
      .select('value')
      .where('name', '=', 'counter')
      .executeTakeFirstOrThrow();
    expect(row.value.toString()).toBe('20');
  });

  test('the embedding cache round-trips float32 vectors and keeps pack keys apart', async () => {
    const cache = new EmbeddingCache(db);
    const v = new Float32Array([1.5, -2.25, 3e-8, 0]);
    const upload = new ImageClaims(db, 60_000).open('upload'); // only a claimed or referenced image's embedding is kept
    await upload.add(['a'.repeat(64)]);
    await cache.putMany([{ hash: 'a'.repeat(64), embedding: v }], 'pack@1');
    expect([...(await cache.getMany(['a'.repeat(64), 'b'.repeat(64)], 'pack@1')).get('a'.repeat(64))!]).toEqual([...v]);
    expect((await cache.getMany(['a'.repeat(64)], 'pack@2')).size).toBe(0);
    await upload.release();
  });

  test('a claimed image is never removed; a released or lapsed claim no longer holds it; a running upload renews it', async () => {
    const ttl = 60_000;
    const claims = new ImageClaims(db, ttl);
    const removed: string[] = [];
    const remove = async (hashes: string[]) => void removed.push(...hashes);
    const [h1, h2, h3, h4] = ['1', '2', '3', '4'].map((c) => c.repeat(64));
    const first = claims.open('upload-1');
    await first.add([h1, h2]);
    expect(await claims.removeUnreferenced([h1, h2], remove)).toEqual([]);
    await first.release();
    expect(await claims.removeUnreferenced([h1], remove)).toEqual([h1]);
    const lapsed = claims.open('upload-2');
    await lapsed.add([h2], Date.now() - ttl - 1);
    expect(await claims.removeUnreferenced([h2], remove)).toEqual([h2]);
    await lapsed.release();
    expect(removed).toEqual([h1, h2]);
    // A claim renewed after most of its TTL keeps all its images, not only the latest.
    const long = claims.open('upload-3');
    const start = Date.now() - ttl + 1000;
    await long.add([h3], start);
    await long.add([h4], start + ttl / 2);
    await long.renew(start + ttl / 2);
    expect(await claims.removeUnreferenced([h3, h4], remove, start + ttl + 1)).toEqual([]);
    await long.release();
  });

  test('an upload in flight renews its claim by itself, so a slow upload keeps its images', async () => {
    const claims = new ImageClaims(db, 1000);
    const slow = claims.open('slow-upload');
    await slow.add(['5'.repeat(64)]);
    await new Promise((r) => setTimeout(r, 1600));
    expect(await claims.removeUnreferenced(['5'.repeat(64)], async () => undefined)).toEqual([]);
    await slow.release();
  });

  test('removing many images keeps the claimed ones and takes the write lock per chunk, not for all the files', async () => {
    const claims = new ImageClaims(db, 60_000);
    const hashes = Array.from({ length: 1201 }, (_, i) => i.toString(16).padStart(64, '0'));
    const kept = hashes.filter((_, i) => i % 100 === 0);
    const upload = claims.open('upload');
    await upload.add(kept);
    const batches: string[][] = [];
    const removed = await claims.removeUnreferenced(hashes, async (doomed) => void batches.push(doomed));
    await upload.release();
    const unheld = hashes.filter((h) => !kept.includes(h));
    expect(removed).toEqual(unheld);
    expect(batches.flat()).toEqual(unheld);
    // A classifier's images go a chunk per transaction: no session sits idle for all of them.
    expect(batches.map((b) => b.length)).toEqual([495, 495, 198]);
  });

  test('a database that a newer release migrated further is refused with a message', async () => {
    if (dialect === 'postgres') {
      await sql`INSERT INTO kysely_migration (name, timestamp) VALUES ('9999_from_the_future', 'x')`.execute(db.kysely);
      await expect(Database.open({ databaseUrl: pg!.url, sqliteFile: '' })).rejects.toThrow(DatabaseSchemaError);
      await expect(Database.open({ databaseUrl: pg!.url, sqliteFile: '' })).rejects.toThrow(
        /9999_from_the_future.*newer than this release/,
      );
    } else {
      const file = path.join(tempDir(), 'future.sqlite');
      const raw = new BetterSqlite3(file);
      raw.pragma('user_version = 99');
      raw.close();
      await expect(Database.open({ sqliteFile: file })).rejects.toThrow(/schema version 99, newer than this release/);
    }
  });
});

describe('SQLite files of earlier releases', () => {
  test('are brought up to date with their data, and end with the same tables and columns as a new database', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'service.sqlite');
    const raw = new BetterSqlite3(file);
    raw.exec(LEGACY_SQLITE_STEPS[0]);
    raw.pragma('user_version = 1');
    raw.prepare("INSERT INTO owners (id, created) VALUES ('alice', 't')").run();
    raw
      .prepare(
        "INSERT INTO classifiers (id, owner_id, name, status, created, updated, generation) VALUES ('c_1', 'alice', 'c', 'training', 't', 't', 1)",
      )
      .run();
    raw.close();
    // The embedding cache was a file of its own: its vectors move into the database.
    const legacyCache = new BetterSqlite3(path.join(dir, 'embeddings.sqlite'));
    legacyCache.exec(
      'CREATE TABLE embeddings (hash TEXT NOT NULL, pack_key TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (hash, pack_key)) WITHOUT ROWID',
    );
    legacyCache
      .prepare('INSERT INTO embeddings VALUES (?, ?, ?)')
      .run('c'.repeat(64), 'p@1', Buffer.from(new Float32Array([7]).buffer));
    legacyCache.close();

    const upgraded = await Database.open({ sqliteFile: file });
    const fresh = await Database.open({ sqliteFile: path.join(tempDir(), 'new.sqlite') });
    try {
      expect(await shape(upgraded)).toEqual(await shape(fresh));
      expect(await upgraded.kysely.selectFrom('classifiers').select('id').execute()).toEqual([{ id: 'c_1' }]);
      expect(await upgraded.kysely.selectFrom('issued_classifier_ids').select('id').execute()).toEqual([{ id: 'c_1' }]);
      expect([...(await new EmbeddingCache(upgraded).getMany(['c'.repeat(64)], 'p@1')).values()][0][0]).toBe(7);
      expect(fs.existsSync(path.join(dir, 'embeddings.sqlite'))).toBe(false);
    } finally {
      await upgraded.close();
      await fresh.close();
    }
  });

  test('PostgreSQL and SQLite build the same tables and columns', async () => {
    const pg = await createTestDatabase();
    const onPg = await Database.open({ databaseUrl: pg.url, sqliteFile: '' });
    const onSqlite = await Database.open({ sqliteFile: path.join(tempDir(), 'same.sqlite') });
    try {
      expect(await shape(onPg)).toEqual(await shape(onSqlite));
    } finally {
      await onPg.close();
      await onSqlite.close();
      await pg.drop();
    }
  });
});

describe('processes starting together', () => {
  test.each(['sqlite', 'postgres'] as const)(
    'on %s migrate once and agree on one instance identity',
    async (dialect) => {
      const pg = dialect === 'postgres' ? await createTestDatabase() : undefined;
      const file = path.join(tempDir(), 'together.sqlite');
      const script = `
      const { Database } = require('./src/data-access/db/database');
      const { readInstanceId } = require('./src/data-access/db/instance-id');
      Database.open(${JSON.stringify(pg ? { databaseUrl: pg.url, sqliteFile: '' } : { sqliteFile: file })})
        .then(async (db) => { console.log(await readInstanceId(db)); await db.close(); })
        .catch((e) => { console.error(e); process.exit(1); });`;
      try {
        const outputs = await Promise.all(
          Array.from({ length: 4 }, () =>
            run(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], { cwd: ROOT }),
          ),
        );
        const ids = new Set(outputs.map((o) => o.stdout.trim()));
        expect(ids.size).toBe(1);
      } finally {
        await pg?.drop();
      }
    },
  );
});

describe("a database that is not the data directory's instance", () => {
  test('an empty PostgreSQL database beside a data directory of an instance is refused, and nothing is created in it', async () => {
    const pg = await createTestDatabase();
    try {
      const error = await Database.open({
        databaseUrl: pg.url,
        sqliteFile: '',
        dataDirectoryInstance: 'c0ffee00-0000-4000-8000-000000000000',
      }).catch((e) => e);
      expect(error).toBeInstanceOf(WrongDatabaseError);
      expect(error.message).toMatch(/holds no instance.*npm run migrate -- --to .*Nothing was created/);
      const client = new PgClient({ connectionString: pg.url });
      await client.connect();
      const tables = await client.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
      );
      await client.end();
      expect(tables.rows).toEqual([]);
    } finally {
      await pg.drop();
    }
  });

  test('a missing SQLite file beside a data directory of an instance is refused, not made anew', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'service.sqlite');
    await expect(
      Database.open({ sqliteFile: file, dataDirectoryInstance: 'c0ffee00-0000-4000-8000-000000000000' }),
    ).rejects.toThrow(WrongDatabaseError);
    expect(fs.existsSync(file)).toBe(false);
  });

  test('a database with trained classifiers meeting a data directory it never used is refused (the wrong or an unmounted volume)', async () => {
    const pg = await createTestDatabase();
    const db = await Database.open({ databaseUrl: pg.url, sqliteFile: '' });
    try {
      const instanceId = await readInstanceId(db);
      await db.kysely
        .insertInto('classifiers')
        .values({
          id: 'c_1',
          owner_id: 'o',
          name: 'c',
          status: 'ready',
          created: 't',
          updated: 't',
          generation: 1,
          explanation: null,
          retrained: null,
          current_version_id: null,
          customer_id: null,
        })
        .execute();
      await db.kysely
        .insertInto('versions')
        .values({
          classifier_id: 'c_1',
          generation: 1,
          head_file: 'c_1/1-x.head',
          classes: '[]',
          pack_key: 'p',
          evaluation: '{}',
          examples: 1,
          created: 't',
        })
        .execute();
      const empty = tempDir();
      await expect(bindDataDirectory(empty, instanceId, db)).rejects.toThrow(
        /has trained classifiers, but the data directory .* has never been used by it/,
      );
      expect(fs.existsSync(path.join(empty, 'instance-id'))).toBe(false);
      const other = tempDir();
      fs.writeFileSync(path.join(other, 'instance-id'), 'another-instance\n');
      await expect(bindDataDirectory(other, instanceId, db)).rejects.toThrow(DataDirectoryInUseError);
    } finally {
      await db.close();
      await pg.drop();
    }
  });
});

describe('a database that cannot be used', () => {
  test('an unreachable PostgreSQL stops the start with a message naming it, without the password', async () => {
    const error = await Database.open({
      databaseUrl: 'postgres://me:secret@127.0.0.1:1/nowhere',
      sqliteFile: '',
    }).catch((e) => e);
    expect(error).toBeInstanceOf(DatabaseUnavailableError);
    expect(error.message).toMatch(/127\.0\.0\.1:1\/nowhere/);
    expect(error.message).toMatch(/ECONNREFUSED/);
    expect(error.message).not.toMatch(/secret/);
  });

  test('a database that does not exist is named', async () => {
    const error = await Database.open({
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/no_such_db_wvr',
      sqliteFile: '',
    }).catch((e) => e);
    expect(error).toBeInstanceOf(DatabaseUnavailableError);
    expect(error.message).toMatch(/no_such_db_wvr.*does not exist/);
  });

  test('a DATABASE_URL that is not a PostgreSQL URL is a configuration error', () => {
    expect(() => loadConfig({ DATABASE_URL: 'mysql://root@localhost/x' })).toThrow(ConfigError);
    expect(() => loadConfig({ DATABASE_URL: 'mysql://root@localhost/x' })).toThrow(
      /DATABASE_URL: must be a PostgreSQL URL/,
    );
  });
});
