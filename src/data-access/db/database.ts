import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { CompiledQuery, Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type DatabaseConnection } from 'kysely';
import pg from 'pg';
import { StartupError } from '../../errors';
import { KYSELY_MANAGED_USER_VERSION, LEGACY_SQLITE_STEPS, migrationProvider } from './migrations';
import type { Schema } from './schema';

/** The database was written by a newer release: starting would half-understand it. */
export class DatabaseSchemaError extends StartupError {}

/** The database named by DATABASE_URL cannot be reached or refuses us (down, wrong host, password or name). */
export class DatabaseUnavailableError extends StartupError {}

/**
 * The database is not the instance the data directory belongs to, and opening it would create or
 * use the wrong one: the SQLite file of an instance moved to PostgreSQL, or a database with no
 * instance yet beside a data directory that already has one.
 */
export class WrongDatabaseError extends StartupError {}

/**
 * PostgreSQL ended the session of a write transaction, which is rolled back: nothing of it was
 * applied. Usually this process stopped inside it for longer than the stall timeout (frozen or hung:
 * see DatabaseTarget.stallTimeoutMs) and the other processes' writes went on without it; or the
 * server restarted.
 */
export class TransactionAbortedError extends Error {}

export interface DatabaseTarget {
  /** PostgreSQL; undefined: the SQLite file. */
  databaseUrl?: string;
  sqliteFile: string;
  /**
   * The instance the data directory belongs to (DATA_DIR/instance-id), if it has one: a database
   * holding no instance yet is then refused before anything is created in it.
   */
  dataDirectoryInstance?: string;
  /**
   * PostgreSQL: how long (ms) this process may stop inside a transaction (send no next statement:
   * `idle_in_transaction_session_timeout`; or read none of the answer the server is sending:
   * `tcp_user_timeout`) before the server ends its session, rolling the transaction back and
   * releasing the write lock. A process frozen or hung inside a write would otherwise hold every
   * other process's writes forever. Undefined: no limit. SQLite has no such bound (see Database.write).
   */
  stallTimeoutMs?: number;
}

export type Dialect = 'sqlite' | 'postgres';
/** A query builder: the database itself, or one transaction's connection. */
export type Queries = Kysely<Schema>;

/** Arbitrary constant key of the advisory lock every PostgreSQL write transaction takes. */
const WRITE_LOCK_KEY = 0x5756_5233; // "WVR3"

/**
 * The service's metadata store: the embedded SQLite file under DATA_DIR, or PostgreSQL when
 * DATABASE_URL names one. Both are reached through Kysely with the same schema and migrations,
 * and keep the same guarantee: every change is one transaction that holds the database's write
 * lock from its first read (SQLite `BEGIN IMMEDIATE`; on PostgreSQL an advisory transaction lock
 * every write transaction takes), so changes apply one after another across all processes of the
 * instance, on any machine, exactly as they did with one process.
 */
export class Database {
  private constructor(
    readonly kysely: Kysely<Schema>,
    readonly dialect: Dialect,
    /** Where the data is, for messages (never with a password). */
    readonly location: string,
    /** What tells this database apart from a copy of it (see instance-id.ts). */
    readonly fingerprint: string,
    /** PostgreSQL: why the server last ended a session this process had checked out (pg reports it to no query). */
    private readonly sessionLoss: { reason?: Error } = {},
  ) {}

  /**
   * Opens (and migrates) the database: PostgreSQL if `databaseUrl` is set, else the SQLite file.
   * Any number of processes may open the same database at once; the first migrates it.
   * @throws DatabaseUnavailableError when PostgreSQL cannot be reached or refuses the login
   * @throws DatabaseSchemaError when a newer release wrote the schema
   * @throws WrongDatabaseError for an instance's SQLite file after its move to PostgreSQL, or an
   *   empty database beside a data directory that belongs to an instance
   */
  static async open(target: DatabaseTarget): Promise<Database> {
    return target.databaseUrl
      ? openPostgres(target.databaseUrl, target.dataDirectoryInstance, target.stallTimeoutMs)
      : openSqlite(target.sqliteFile, target.dataDirectoryInstance);
  }

  /**
   * Runs `work` as one write transaction holding the write lock from its start (see the class
   * note). `work` must use only the `trx` it is given, never this Database: the SQLite connection
   * is taken for the whole transaction.
   *
   * On PostgreSQL the server ends a transaction this process stops in for longer than the target's
   * stallTimeoutMs, so a frozen or hung process cannot hold the others' writes; `work` must
   * therefore never wait on anything but its statements (nor block the event loop) that long. On
   * SQLite a process frozen inside `work` holds the write lock until it runs again: the others'
   * writes fail after the busy timeout (SQLITE_BUSY) meanwhile.
   * @throws TransactionAbortedError when PostgreSQL ended the transaction's session (nothing applied)
   */
  async write<T>(work: (trx: Queries) => Promise<T>): Promise<T> {
    if (this.dialect === 'postgres') {
      return this.kysely
        .transaction()
        .execute(async (trx) => {
          await sql`SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`.execute(trx);
          return work(trx);
        })
        .catch((error: unknown) => {
          throw this.explained(error);
        });
    }
    return this.kysely.connection().execute(async (conn) => {
      await sql`BEGIN IMMEDIATE`.execute(conn);
      try {
        const result = await work(conn);
        await sql`COMMIT`.execute(conn);
        return result;
      } catch (error) {
        await sql`ROLLBACK`.execute(conn).catch(() => undefined);
        throw error;
      }
    });
  }

  /** A write's error as TransactionAbortedError, saying why, when its session ended (see sessionEnd). */
  private explained(error: unknown): unknown {
    const reason = sessionEnd(error, this.sessionLoss.reason);
    if (!reason) return error;
    return new TransactionAbortedError(
      `The database ended this write's session, rolling the transaction back: ${reason.message}`,
      { cause: error },
    );
  }

  /** Runs `work` on one consistent snapshot (reads only). */
  async read<T>(work: (trx: Queries) => Promise<T>): Promise<T> {
    if (this.dialect === 'postgres') {
      return this.kysely.transaction().setIsolationLevel('repeatable read').setAccessMode('read only').execute(work);
    }
    return this.kysely.transaction().execute(work);
  }

  async close(): Promise<void> {
    await this.kysely.destroy();
  }

  /** @internal used by open */
  static create(
    kysely: Kysely<Schema>,
    dialect: Dialect,
    location: string,
    fingerprint: string,
    sessionLoss?: { reason?: Error },
  ): Database {
    return new Database(kysely, dialect, location, fingerprint, sessionLoss);
  }
}

/** Opens the SQLite file, bringing a file of an older release up to date first. */
async function openSqlite(file: string, dataDirectoryInstance: string | undefined): Promise<Database> {
  const moved = path.join(path.dirname(file), 'moved-to-postgres');
  if (fs.existsSync(moved)) {
    const record = JSON.parse(fs.readFileSync(moved, 'utf8')) as { to: string; moved: string };
    throw new WrongDatabaseError(
      `This instance moved to PostgreSQL (${record.to}) on ${record.moved}; ${file} is only the source of that copy and out of date. ` +
        `Set DATABASE_URL to that database (every API process, worker and npm run keys needs it).`,
    );
  }
  if (dataDirectoryInstance && !fs.existsSync(file)) {
    throw new WrongDatabaseError(
      `The data directory ${path.dirname(file)} belongs to instance ${dataDirectoryInstance}, but its database ${file} is missing. ` +
        `Restore it from a backup, or set DATABASE_URL if the instance lives in PostgreSQL.`,
    );
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const raw = new BetterSqlite3(file);
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = NORMAL');
  raw.pragma('foreign_keys = ON');
  // Several processes write the same file: wait for the lock instead of failing.
  raw.pragma('busy_timeout = 5000');
  const kysely = new Kysely<Schema>({ dialect: new SqliteDialect({ database: raw }) });
  try {
    // One IMMEDIATE transaction around every step, so processes starting together migrate once.
    raw.exec('BEGIN IMMEDIATE');
    try {
      const applied = raw.pragma('user_version', { simple: true }) as number;
      if (applied > KYSELY_MANAGED_USER_VERSION) throw newerSchema(`schema version ${applied}`);
      if (applied > 0 && applied < LEGACY_SQLITE_STEPS.length) {
        for (let step = applied; step < LEGACY_SQLITE_STEPS.length; step++) raw.exec(LEGACY_SQLITE_STEPS[step]);
      }
      await runMigrations(kysely, 'sqlite', { disableTransactions: true });
      // Only when it changes: an unchanged database must open without writing (a full disk).
      if (applied !== KYSELY_MANAGED_USER_VERSION) raw.pragma(`user_version = ${KYSELY_MANAGED_USER_VERSION}`);
      raw.exec('COMMIT');
    } catch (error) {
      if (raw.inTransaction) raw.exec('ROLLBACK');
      throw error;
    }
    await importLegacyEmbeddingCache(raw, path.join(path.dirname(file), 'embeddings.sqlite'));
    return Database.create(kysely, 'sqlite', file, `sqlite:inode:${fs.statSync(file).ino}`);
  } catch (error) {
    await kysely.destroy();
    throw error;
  }
}

async function openPostgres(
  url: string,
  dataDirectoryInstance: string | undefined,
  stallTimeoutMs: number | undefined,
): Promise<Database> {
  const location = redact(url);
  const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 10_000 });
  // A client losing its session (a PostgreSQL restart; the server ending a transaction this process
  // stopped in, see stallTimeoutMs) must not crash the process: idle, the pool drops it; checked
  // out, its pending and next queries fail, and the pool drops it when it comes back.
  const sessionLoss: { reason?: Error } = {};
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    // The first error is the server's reason; the socket's close follows it.
    let first: Error | undefined;
    client.on('error', (error) => {
      first ??= error;
      sessionLoss.reason = first;
    });
  });
  // Set on each new session, whatever options DATABASE_URL carries. A frozen process inside a
  // transaction is idle to the server, unless the server was sending it an answer: then it is
  // blocked writing to the socket, where only tcp_user_timeout (Linux servers) ends it.
  const onCreateConnection =
    stallTimeoutMs === undefined
      ? undefined
      : async (connection: DatabaseConnection) => {
          await connection.executeQuery(
            CompiledQuery.raw(
              "SELECT set_config('idle_in_transaction_session_timeout', $1, false), set_config('tcp_user_timeout', $1, false)",
              [String(stallTimeoutMs)],
            ),
          );
        };
  const kysely = new Kysely<Schema>({ dialect: new PostgresDialect({ pool, onCreateConnection }) });
  try {
    try {
      await sql`SELECT 1`.execute(kysely);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new DatabaseUnavailableError(
        `Cannot use the PostgreSQL database ${location} (${reason}). Check DATABASE_URL (host, port, user, password, database name) and that the server is running and accepts connections from here.`,
      );
    }
    if (dataDirectoryInstance && !(await holdsInstance(kysely))) {
      throw new WrongDatabaseError(
        `The database ${location} holds no instance, but the data directory belongs to instance ${dataDirectoryInstance}. ` +
          `To move that instance from its SQLite file, run: npm run migrate -- --to <this DATABASE_URL>. To start a new instance on this database, give it an empty DATA_DIR. Nothing was created in the database.`,
      );
    }
    await runMigrations(kysely, 'postgres', { disableTransactions: false });
    return Database.create(kysely, 'postgres', location, await postgresFingerprint(kysely), sessionLoss);
  } catch (error) {
    await kysely.destroy();
    throw error;
  }
}

/**
 * Why the session of a query that failed with `error` ended, if it did: pg gives the server's reason
 * (25P03: the idle-in-transaction timeout; 57P01: a shutdown) to the query in flight, if any; a
 * socket the server reset (tcp_user_timeout) as "Connection terminated unexpectedly"; and to the
 * queries after the end (a rollback) only "not queryable", when `lastLoss` says why.
 */
function sessionEnd(error: unknown, lastLoss: Error | undefined): Error | undefined {
  if (error instanceof pg.DatabaseError) return error.severity === 'FATAL' ? error : undefined;
  if (!(error instanceof Error)) return undefined;
  if (/is not queryable$/.test(error.message)) return lastLoss ?? error;
  const reset = /^Connection terminated/.test(error.message) || (error as NodeJS.ErrnoException).code === 'ECONNRESET';
  return reset ? error : undefined;
}

/** Runs the Kysely migrations, refusing a database that a newer release migrated further. */
async function runMigrations(
  kysely: Kysely<Schema>,
  dialect: Dialect,
  options: { disableTransactions: boolean },
): Promise<void> {
  const provider = migrationProvider(dialect);
  const migrator = new Migrator({ db: kysely, provider, disableTransactions: options.disableTransactions });
  const unknown = await appliedUnknown(kysely, provider.names);
  if (unknown.length > 0) throw newerSchema(`migrations ${unknown.join(', ')}`);
  const { error } = await migrator.migrateToLatest();
  if (error) throw error;
  // The instance's identity is made with its database and never changes (see instance-id.ts).
  await kysely
    .insertInto('instance')
    .values({ singleton: 1, id: crypto.randomUUID(), created: new Date().toISOString() })
    .onConflict((oc) => oc.column('singleton').doNothing())
    .execute();
}

async function holdsInstance(kysely: Kysely<Schema>): Promise<boolean> {
  const tables = await kysely.introspection.getTables();
  if (!tables.some((t) => t.name === 'instance')) return false;
  return (await kysely.selectFrom('instance').select('id').executeTakeFirst()) !== undefined;
}

async function appliedUnknown(kysely: Kysely<Schema>, known: string[]): Promise<string[]> {
  const tables = await kysely.introspection.getTables({ withInternalKyselyTables: true });
  if (!tables.some((t) => t.name === 'kysely_migration')) return [];
  const rows = await sql<{ name: string }>`SELECT name FROM kysely_migration`.execute(kysely);
  return rows.rows.map((r) => r.name).filter((name) => !known.includes(name));
}

function newerSchema(what: string): DatabaseSchemaError {
  return new DatabaseSchemaError(
    `The database has ${what}, newer than this release knows. Run the release that wrote it, or a newer one.`,
  );
}

/**
 * The embedding cache used to be a SQLite file of its own: its embeddings move into the database
 * once (a cache, so a failure only costs re-embedding), and the file goes.
 */
async function importLegacyEmbeddingCache(raw: BetterSqlite3.Database, file: string): Promise<void> {
  if (!fs.existsSync(file)) return;
  try {
    raw.prepare('ATTACH DATABASE ? AS legacy_cache').run(file);
    try {
      raw.exec('BEGIN IMMEDIATE');
      raw.exec(
        'INSERT OR IGNORE INTO embeddings (hash, pack_key, vector) SELECT hash, pack_key, vector FROM legacy_cache.embeddings',
      );
      raw.exec('COMMIT');
    } finally {
      if (raw.inTransaction) raw.exec('ROLLBACK');
      raw.exec('DETACH DATABASE legacy_cache');
    }
  } catch {
    // Another process imported it first, or it was not a cache file: it is only a cache.
  }
  for (const suffix of ['', '-wal', '-shm']) fs.rmSync(file + suffix, { force: true });
}

/**
 * PostgreSQL's identity of this database: the cluster's system identifier (where the role may read
 * it) and the database's OID and name. A restored dump gets another OID or cluster.
 */
async function postgresFingerprint(kysely: Kysely<Schema>): Promise<string> {
  const db = await sql<{ name: string; oid: string }>`
    SELECT current_database() AS name, (SELECT oid::text FROM pg_database WHERE datname = current_database()) AS oid`.execute(
    kysely,
  );
  const cluster = await sql<{ id: string }>`SELECT system_identifier::text AS id FROM pg_control_system()`
    .execute(kysely)
    .then((r) => r.rows[0]?.id ?? 'unknown')
    .catch(() => 'unknown');
  return `postgres:${cluster}:${db.rows[0].oid}:${db.rows[0].name}`;
}

/** The URL without its password, for messages and logs. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(an unparseable DATABASE_URL)';
  }
}
