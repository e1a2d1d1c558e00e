import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { sql } from 'kysely';
import { ApiKeyRepository, hashKey } from '../../src/data-access/db/api-key-repository';
import { Database } from '../../src/data-access/db/database';
import { migrationProvider } from '../../src/data-access/db/migrations';
import { bootstrapApiKeys } from '../../src/domain/bootstrap-keys';
import { createTestDatabase, type TestDatabase } from '../support/postgres';

describe.each(['sqlite', 'postgres'] as const)('API keys on %s', (dialect) => {
  let dir: string;
  let pg: TestDatabase | undefined;
  const target = () => ({ databaseUrl: pg?.url, sqliteFile: path.join(dir, 'db.sqlite') });
  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keys-'));
    pg = dialect === 'postgres' ? await createTestDatabase() : undefined;
  });
  afterEach(async () => {
    await pg?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('generates one key on first start, stores only its hash, and never again', async () => {
    const db = await Database.open(target());
    try {
      const keys = new ApiKeyRepository(db);
      const { generatedKey } = await bootstrapApiKeys(keys, []);
      expect(generatedKey).toMatch(/^[A-Za-z0-9_-]{40}$/);
      expect(await keys.ownerOfKey(generatedKey!)).toBe('admin');
      const stored = JSON.stringify(await db.kysely.selectFrom('api_keys').selectAll().execute());
      expect(stored).not.toContain(generatedKey!);
      expect(stored).toContain(hashKey(generatedKey!));
      expect((await bootstrapApiKeys(keys, [])).generatedKey).toBeUndefined();
    } finally {
      await db.close();
    }
  });

  it('makes API_KEYS the active environment keys and revokes removed ones', async () => {
    const db = await Database.open(target());
    try {
      const keys = new ApiKeyRepository(db);
      await bootstrapApiKeys(keys, [
        { owner: 'a', key: 'key-of-a-1' },
        { owner: 'b', key: 'key-of-b-1' },
      ]);
      expect(await keys.ownerOfKey('key-of-b-1')).toBe('b');
      await bootstrapApiKeys(keys, [{ owner: 'a', key: 'key-of-a-1' }]);
      expect(await keys.ownerOfKey('key-of-a-1')).toBe('a');
      expect(await keys.ownerOfKey('key-of-b-1')).toBeUndefined();
      const cli = await keys.add('c', 'key-of-c-1', 'cli');
      expect(await keys.revoke(cli.id)).toBe(true);
      expect(await keys.ownerOfKey('key-of-c-1')).toBeUndefined();
    } finally {
      await db.close();
    }
  });

  it('migrates a database once even when opened twice', async () => {
    const first = await Database.open(target());
    const second = await Database.open(target());
    try {
      const applied = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(
        second.kysely,
      );
      expect(applied.rows.map((r) => r.name)).toEqual(migrationProvider(dialect).names);
      expect(await second.kysely.selectFrom('instance').select('singleton').execute()).toEqual([{ singleton: 1 }]);
      if (dialect === 'sqlite') {
        const version = await sql<{ user_version: number }>`PRAGMA user_version`.execute(second.kysely);
        expect(version.rows[0].user_version).toBeGreaterThan(0);
      }
    } finally {
      await first.close();
      await second.close();
    }
  });
});
