import crypto from 'node:crypto';
import fs from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import pg from 'pg';
import type { Database } from './database';
import { KYSELY_MANAGED_USER_VERSION, migrationProvider } from './migrations';

/** The copy cannot start (a source, target or state it must not touch); nothing was written. */
export class CopyRefusedError extends Error {}

/** The copy or its verification failed; its transaction was rolled back. */
export class CopyFailedError extends Error {}

/** Tables that are the migrations' bookkeeping: each database keeps its own. */
const MIGRATION_TABLES = ['kysely_migration', 'kysely_migration_lock'];

/**
 * Left behind on purpose: claims of uploads in flight on their images (see image-claims.ts).
 * With the service stopped none is in flight, and a stale one only delays removing an orphan image.
 */
export const SKIPPED_TABLES: Record<string, string> = {
  image_claims:
    'claims of uploads in flight; with the service stopped none is in flight, and claims lapse on their own',
};

/** Rows per INSERT: PostgreSQL takes at most 65,535 parameters per statement. */
const MAX_PARAMETERS = 65_000;
const MAX_BATCH_ROWS = 1_000;
/** Bytes of values per INSERT (an embedding is ≈15 kB): bounds memory whatever the table holds. */
const MAX_BATCH_BYTES = 8 * 1024 * 1024;
/** Rows per FETCH when reading the copy back to verify it. */
const VERIFY_FETCH_ROWS = 500;

interface Column {
  name: string;
  /** Position in the primary key (1-based), 0 when not part of it. */
  pk: number;
}

interface SourceTable {
  name: string;
  columns: Column[];
  /** Tables this one references (copied before it). */
  references: string[];
}

/**
 * An instance's SQLite database opened read-only, on one consistent snapshot for as long as it is
 * open. Nothing is written to the file: it is opened read-only, never migrated, and the empty
 * `-wal`/`-shm` files SQLite creates beside it for a read-only reader are removed on close when
 * they were not there before (and the write-ahead log is still empty, so no writer used them).
 */
export class SqliteSource {
  private constructor(
    readonly file: string,
    private readonly raw: BetterSqlite3.Database,
    readonly instanceId: string,
    readonly tables: SourceTable[],
    private readonly sidecarsBefore: Set<string>,
  ) {}

  /**
   * @throws CopyRefusedError when there is no database at `file`, or a release other than this one
   *   wrote its schema (an older one: start this release on it once, it upgrades the file)
   */
  static open(file: string): SqliteSource {
    if (!fs.existsSync(file)) {
      throw new CopyRefusedError(
        `There is no SQLite database at ${file}. Set DATA_DIR to the data directory of the instance to move.`,
      );
    }
    const sidecarsBefore = new Set(SIDECARS.filter((suffix) => fs.existsSync(file + suffix)));
    const raw = new BetterSqlite3(file, { readonly: true, fileMustExist: true });
    try {
      // The snapshot starts at the first read and holds until close: every table from one moment.
      raw.exec('BEGIN');
      checkSourceSchema(raw, file);
      const instance = raw.prepare('SELECT id FROM instance WHERE singleton = 1').get() as { id: string } | undefined;
      if (!instance)
        throw new CopyRefusedError(
          `${file} has no instance identity (table instance is empty); it is not a database the service made.`,
        );
      return new SqliteSource(file, raw, instance.id, readTables(raw), sidecarsBefore);
    } catch (error) {
      closeReadOnly(raw, file, sidecarsBefore);
      throw error;
    }
  }

  /** Rows of `table` in primary-key order, as arrays in `columns` order (streamed, one row in memory at a time). */
  rows(table: SourceTable): IterableIterator<unknown[]> {
    const columns = table.columns.map((c) => quoteSqlite(c.name)).join(', ');
    const order = orderColumns(table)
      .map((c) => quoteSqlite(c.name))
      .join(', ');
    return this.raw
      .prepare(`SELECT ${columns} FROM ${quoteSqlite(table.name)} ORDER BY ${order}`)
      .raw(true)
      .iterate() as IterableIterator<unknown[]>;
  }

  count(table: string): number {
    return (this.raw.prepare(`SELECT COUNT(*) AS n FROM ${quoteSqlite(table)}`).get() as { n: number }).n;
  }

  /** The largest id an AUTOINCREMENT table ever handed out (rows since deleted included), 0 if none. */
  lastIssuedId(table: string): number {
    const row = this.raw.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?').get(table) as
      { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  close(): void {
    closeReadOnly(this.raw, this.file, this.sidecarsBefore);
  }
}

const SIDECARS = ['-wal', '-shm'];

function closeReadOnly(raw: BetterSqlite3.Database, file: string, sidecarsBefore: Set<string>): void {
  if (raw.inTransaction) raw.exec('COMMIT');
  raw.close();
  const created = SIDECARS.filter((suffix) => !sidecarsBefore.has(suffix) && fs.existsSync(file + suffix));
  if (created.includes('-wal') && fs.statSync(file + '-wal').size === 0) {
    for (const suffix of created) fs.rmSync(file + suffix, { force: true });
  }
}

function checkSourceSchema(raw: BetterSqlite3.Database, file: string): void {
  const version = raw.pragma('user_version', { simple: true }) as number;
  const known = migrationProvider('sqlite').names;
  const hasLog =
    raw.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kysely_migration'").get() !== undefined;
  const applied = hasLog
    ? (raw.prepare('SELECT name FROM kysely_migration').all() as Array<{ name: string }>).map((r) => r.name)
    : [];
  const unknown = applied.filter((name) => !known.includes(name));
  if (version > KYSELY_MANAGED_USER_VERSION || unknown.length > 0) {
    throw new CopyRefusedError(
      `${file} was written by a newer release than this one (schema ${version}${unknown.length ? `, migrations ${unknown.join(', ')}` : ''}). Run the migration with that release.`,
    );
  }
  if (version < KYSELY_MANAGED_USER_VERSION || known.some((name) => !applied.includes(name))) {
    throw new CopyRefusedError(
      `${file} was written by an older release. Start the service of this release on it once (it brings the file up to date), stop it, and run the migration again.`,
    );
  }
}

function readTables(raw: BetterSqlite3.Database): SourceTable[] {
  const names = (
    raw
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
      .all() as Array<{ name: string }>
  )
    .map((r) => r.name)
    .filter((name) => !MIGRATION_TABLES.includes(name));
  return names.map((name) => ({
    name,
    columns: (raw.prepare(`PRAGMA table_info(${quoteSqlite(name)})`).all() as Array<{ name: string; pk: number }>).map(
      (c) => ({ name: c.name, pk: c.pk }),
    ),
    references: [
      ...new Set(
        (raw.prepare(`PRAGMA foreign_key_list(${quoteSqlite(name)})`).all() as Array<{ table: string }>).map(
          (f) => f.table,
        ),
      ),
    ].filter((t) => t !== name),
  }));
}

/** The primary key's columns in key order; all columns for a table without one. */
function orderColumns(table: SourceTable): Column[] {
  const key = table.columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk);
  return key.length > 0 ? key : table.columns;
}

/** Referenced tables first, so every foreign key holds as rows arrive; otherwise by name. */
function copyOrder(tables: SourceTable[]): SourceTable[] {
  const byName = new Map(tables.map((t) => [t.name, t]));
  const ordered: SourceTable[] = [];
  const placed = new Set<string>();
  const place = (table: SourceTable, path: string[]) => {
    if (placed.has(table.name) || path.includes(table.name)) return;
    for (const ref of table.references) {
      const referenced = byName.get(ref);
      if (referenced) place(referenced, [...path, table.name]);
    }
    placed.add(table.name);
    ordered.push(table);
  };
  for (const table of tables) place(table, []);
  return ordered;
}

function quoteSqlite(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * SHA-256 over a table's rows in primary-key order, each row serialised the same way whichever
 * database it came from: a JSON array of its values in column order, blobs (SQLite BLOB,
 * PostgreSQL bytea) as their bytes in base64, one row per line.
 */
export class RowDigest {
  private readonly hash = crypto.createHash('sha256');
  rows = 0;

  add(values: unknown[]): void {
    this.hash.update(JSON.stringify(values.map(canonical)));
    this.hash.update('\n');
    this.rows++;
  }

  hex(): string {
    return this.hash.digest('hex');
  }
}

function canonical(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return { bytes: value.toString('base64') };
  if (value instanceof Uint8Array) return { bytes: Buffer.from(value).toString('base64') };
  if (typeof value === 'bigint') return value.toString();
  return value;
}

function valueBytes(value: unknown): number {
  if (Buffer.isBuffer(value)) return value.length;
  if (typeof value === 'string') return value.length;
  return 8;
}

/**
 * Refuses a target that is not empty: one that holds any table in its schema (an instance of its
 * own, or anything else) is never written to.
 * @param url a postgres:// URL
 * @param location the URL without its password, for messages
 * @param instanceId the instance being moved, to say so when the target already holds it
 * @throws CopyRefusedError when the server cannot be reached or the database is not empty
 */
export async function assertEmptyTarget(url: string, location: string, instanceId: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CopyRefusedError(
      `Cannot reach the PostgreSQL database ${location} (${reason}). Check the --to URL (host, port, user, password, database name) and that the server is running and accepts connections from here. Create the database first if it does not exist (createdb, or CREATE DATABASE).`,
    );
  }
  try {
    const { rows } = await client.query<{ name: string }>(
      `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`,
    );
    if (rows.length === 0) return;
    const names = rows.map((r) => r.name);
    if (names.includes('instance')) {
      const held = await client
        .query<{ id: string }>('SELECT id FROM instance')
        .catch(() => ({ rows: [] as Array<{ id: string }> }));
      const id = held.rows[0]?.id;
      const which =
        id === instanceId ? `this instance (${id}): it was moved there before` : `an instance${id ? ` (${id})` : ''}`;
      throw new CopyRefusedError(
        `The PostgreSQL database ${location} already holds ${which}. A migration copies into an empty database only, and never merges or overwrites. ` +
          `Create an empty database (createdb <name>) and pass its URL with --to.`,
      );
    }
    throw new CopyRefusedError(
      `The PostgreSQL database ${location} is not empty (it holds the tables ${names.slice(0, 8).join(', ')}${names.length > 8 ? ', …' : ''}): ` +
        `a migration copies into an empty database only. Create an empty database (createdb <name>) and pass its URL with --to.`,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Removes the tables the copy's migrations created in the target, after a failed copy: the target
 * was empty before (assertEmptyTarget), and is again. Only tables of this schema are dropped.
 */
export async function removeCopiedSchema(url: string, tables: string[]): Promise<void> {
  const names = [...tables, ...Object.keys(SKIPPED_TABLES), ...MIGRATION_TABLES];
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(`DROP TABLE IF EXISTS ${names.map((n) => client.escapeIdentifier(n)).join(', ')} CASCADE`);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface CopiedTable {
  table: string;
  rows: number;
  /** SHA-256 over the rows (RowDigest), the same on both sides. */
  checksum: string;
  seconds: number;
}

export interface CopyResult {
  tables: CopiedTable[];
  /** Per table with an identity column: the next id PostgreSQL will hand out. */
  nextIds: Record<string, number>;
  /** Tables left behind, with their row count in the source and why. */
  skipped: Array<{ table: string; rows: number; reason: string }>;
}

/**
 * Copies every table of the source into the target (whose schema Database.open just made), in one
 * transaction of the target: rows keep their ids; each table is then read back in primary-key order
 * and must have as many rows and the same RowDigest as the source, and each identity column's
 * sequence continues after the largest id the source ever issued (sqlite_sequence, which counts
 * deleted rows too), so no id is handed out twice. Any mismatch or error rolls everything back.
 * Memory stays bounded: rows are streamed from SQLite and inserted, then fetched back, in batches.
 * @param onTable called after each table is copied and verified
 * @throws CopyFailedError naming what did not match (after the rollback)
 */
export async function copyInstance(
  source: SqliteSource,
  target: Database,
  onTable: (copied: CopiedTable) => void = () => undefined,
): Promise<CopyResult> {
  const plan = copyOrder(source.tables.filter((t) => !(t.name in SKIPPED_TABLES)));
  let current = 'the schema check';
  try {
    return await target.write(async (trx) => {
      const db = trx as unknown as Kysely<any>;
      const targetColumns = await columnsOf(db);
      checkSameSchema(plan, targetColumns);
      // Processes that open this database meanwhile wait here, and then read the moved identity.
      await sql`LOCK TABLE instance IN ACCESS EXCLUSIVE MODE`.execute(db);
      // Database.open gave the new database an identity of its own: the instance's replaces it.
      await sql`DELETE FROM instance`.execute(db);
      const tables: CopiedTable[] = [];
      const nextIds: Record<string, number> = {};
      for (const table of plan) {
        current = `table ${table.name}`;
        const started = process.hrtime.bigint();
        const types = targetColumns.get(table.name)!;
        const identity = table.columns.find((c) => types.get(c.name)?.identity);
        const copied = await insertAll(db, source, table, identity?.name);
        const verified = await digestTarget(db, table, types);
        if (verified.rows !== copied.digest.rows || verified.checksum !== copied.checksum) {
          throw new CopyFailedError(
            `Table ${table.name} does not match after the copy: the source has ${copied.digest.rows} rows (SHA-256 ${copied.checksum.slice(0, 16)}…), ` +
              `PostgreSQL ${verified.rows} rows (SHA-256 ${verified.checksum.slice(0, 16)}…).`,
          );
        }
        if (identity) {
          const issued = Math.max(source.lastIssuedId(table.name), copied.maxId);
          nextIds[table.name] = await continueIdentity(db, table.name, identity.name, issued);
        }
        const result = {
          table: table.name,
          rows: copied.digest.rows,
          checksum: copied.checksum,
          seconds: Number(process.hrtime.bigint() - started) / 1e9,
        };
        tables.push(result);
        onTable(result);
      }
      const skipped = Object.entries(SKIPPED_TABLES).map(([table, reason]) => ({
        table,
        rows: source.tables.some((t) => t.name === table) ? source.count(table) : 0,
        reason,
      }));
      return { tables, nextIds, skipped };
    });
  } catch (error) {
    if (error instanceof CopyFailedError) throw error;
    throw new CopyFailedError(
      `The copy failed at ${current}: ${error instanceof Error ? error.message : String(error)}.`,
    );
  }
}

interface TargetColumn {
  type: string;
  identity: boolean;
}

async function columnsOf(db: Kysely<any>): Promise<Map<string, Map<string, TargetColumn>>> {
  const { rows } = await sql<{ table_name: string; column_name: string; data_type: string; is_identity: string }>`
    SELECT table_name, column_name, data_type, is_identity FROM information_schema.columns
    WHERE table_schema = current_schema()`.execute(db);
  const tables = new Map<string, Map<string, TargetColumn>>();
  for (const r of rows) {
    if (!tables.has(r.table_name)) tables.set(r.table_name, new Map());
    tables.get(r.table_name)!.set(r.column_name, { type: r.data_type, identity: r.is_identity === 'YES' });
  }
  return tables;
}

/** Both databases were made by this release's migrations; anything else is refused before a row moves. */
function checkSameSchema(plan: SourceTable[], target: Map<string, Map<string, TargetColumn>>): void {
  const expected = [...plan.map((t) => t.name), ...Object.keys(SKIPPED_TABLES), ...MIGRATION_TABLES];
  const unexpected = [...target.keys()].filter((name) => !expected.includes(name));
  if (unexpected.length > 0) {
    throw new CopyFailedError(
      `PostgreSQL has tables the SQLite file lacks (${unexpected.join(', ')}): the two schemas differ, so nothing is copied.`,
    );
  }
  for (const table of plan) {
    const columns = target.get(table.name);
    const missing = columns
      ? table.columns.filter((c) => !columns.has(c.name)).map((c) => c.name)
      : ['(the whole table)'];
    const extra = columns ? [...columns.keys()].filter((name) => !table.columns.some((c) => c.name === name)) : [];
    if (missing.length > 0 || extra.length > 0) {
      throw new CopyFailedError(
        `Table ${table.name} differs between the SQLite file and the schema this release makes in PostgreSQL (missing there: ${missing.join(', ') || 'none'}; only there: ${extra.join(', ') || 'none'}).`,
      );
    }
  }
}

async function insertAll(
  db: Kysely<any>,
  source: SqliteSource,
  table: SourceTable,
  identity: string | undefined,
): Promise<{ digest: RowDigest; checksum: string; maxId: number }> {
  const names = table.columns.map((c) => c.name);
  const idIndex = identity === undefined ? -1 : names.indexOf(identity);
  const rowsPerBatch = Math.max(1, Math.min(MAX_BATCH_ROWS, Math.floor(MAX_PARAMETERS / names.length)));
  const digest = new RowDigest();
  let maxId = 0;
  let batch: Array<Record<string, unknown>> = [];
  let bytes = 0;
  const flush = async () => {
    if (batch.length > 0) await db.insertInto(table.name).values(batch).execute();
    batch = [];
    bytes = 0;
  };
  for (const values of source.rows(table)) {
    digest.add(values);
    if (idIndex >= 0 && typeof values[idIndex] === 'number') maxId = Math.max(maxId, values[idIndex] as number);
    batch.push(Object.fromEntries(names.map((name, i) => [name, values[i]])));
    bytes += values.reduce<number>((sum, v) => sum + valueBytes(v), 0);
    if (batch.length >= rowsPerBatch || bytes >= MAX_BATCH_BYTES) await flush();
  }
  await flush();
  return { digest, checksum: digest.hex(), maxId };
}

/** Reads the table back from PostgreSQL in the source's order (text compared bytewise, as SQLite does) and digests it. */
async function digestTarget(
  db: Kysely<any>,
  table: SourceTable,
  types: Map<string, TargetColumn>,
): Promise<{ rows: number; checksum: string }> {
  const order: RawBuilder<unknown>[] = orderColumns(table).map((c) =>
    types.get(c.name)?.type === 'text' ? sql`${sql.ref(c.name)} COLLATE "C"` : sql`${sql.ref(c.name)}`,
  );
  const columns = table.columns.map((c) => sql.ref(c.name));
  await sql`DECLARE migrate_verify NO SCROLL CURSOR FOR SELECT ${sql.join(columns)} FROM ${sql.table(table.name)} ORDER BY ${sql.join(order)}`.execute(
    db,
  );
  const digest = new RowDigest();
  for (;;) {
    const { rows } = await sql<
      Record<string, unknown>
    >`FETCH FORWARD ${sql.lit(VERIFY_FETCH_ROWS)} FROM migrate_verify`.execute(db);
    if (rows.length === 0) break;
    for (const row of rows) digest.add(table.columns.map((c) => row[c.name]));
  }
  await sql`CLOSE migrate_verify`.execute(db);
  return { rows: digest.rows, checksum: digest.hex() };
}

/** Sets the identity column's sequence so its next id is `issued + 1`; returns that next id. */
async function continueIdentity(db: Kysely<any>, table: string, column: string, issued: number): Promise<number> {
  const sequence = sql`pg_get_serial_sequence(${sql.lit(`"${table.replace(/"/g, '""')}"`)}, ${sql.lit(column)})`;
  // setval(seq, n, true): the next nextval is n + 1; setval(seq, 1, false): the next is 1 (nothing issued yet).
  if (issued > 0) await sql`SELECT setval(${sequence}, ${issued}, true)`.execute(db);
  else await sql`SELECT setval(${sequence}, 1, false)`.execute(db);
  return issued + 1;
}
