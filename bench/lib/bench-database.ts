import { createTestDatabase } from '../../test/support/postgres';

/** The database a bench service runs on: a fresh PostgreSQL database of its own, or the embedded SQLite. */
export interface BenchDatabase {
  kind: 'postgres' | 'sqlite';
  /** Why it is SQLite: what the PostgreSQL server answered. */
  reason?: string;
  /** startBenchService overrides: DATABASE_URL set to the new database, or removed for SQLite. */
  env: Record<string, string | undefined>;
  /** Drops the PostgreSQL database (after the service stopped); nothing for SQLite. */
  drop(): Promise<void>;
}

/**
 * A new, empty PostgreSQL database on BENCH_POSTGRES_URL's server (an administrative URL; by
 * default the local postgres role at 127.0.0.1:5432), or, when no server lets the bench create one,
 * the embedded SQLite, saying why.
 */
export async function openBenchDatabase(): Promise<BenchDatabase> {
  const adminUrl = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  try {
    const db = await createTestDatabase(adminUrl);
    return { kind: 'postgres', env: { DATABASE_URL: db.url }, drop: () => db.drop() };
  } catch (error) {
    const reason = `no database could be created at ${adminUrl} (BENCH_POSTGRES_URL): ${error instanceof Error ? error.message : String(error)}`;
    return { kind: 'sqlite', reason, env: { DATABASE_URL: undefined }, drop: async () => undefined };
  }
}
