import crypto from 'node:crypto';
import pg from 'pg';

/**
 * The PostgreSQL server tests use, as an administrative URL (one that may CREATE DATABASE):
 * TEST_POSTGRES_URL, by default the local server's postgres role.
 */
export function postgresAdminUrl(): string {
  return process.env.TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
}

/** True when the component tests run on PostgreSQL (`npm run test:postgres` sets TEST_DATABASE=postgres). */
export function testsUsePostgres(): boolean {
  return process.env.TEST_DATABASE === 'postgres';
}

export interface TestDatabase {
  /** DATABASE_URL of a new, empty database. */
  url: string;
  drop(): Promise<void>;
}

/** Creates an empty database of its own on the test server (127.0.0.1 only), dropped by drop(). */
export async function createTestDatabase(adminUrl = postgresAdminUrl()): Promise<TestDatabase> {
  const name = `wvr_test_${crypto.randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect().catch((error: Error) => {
    throw new Error(
      `These tests need a PostgreSQL server whose role may create databases, at ${adminUrl} (set TEST_POSTGRES_URL to use another): ${error.message}`,
    );
  });
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
