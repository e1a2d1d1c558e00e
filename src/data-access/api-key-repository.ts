import crypto from 'node:crypto';
import type { Database } from './database';

export type KeySource = 'env' | 'generated' | 'cli';

export interface ApiKeyInfo {
  id: number;
  ownerId: string;
  keyPrefix: string;
  source: KeySource;
  created: string;
  revoked: string | null;
}

/** Keys are stored only as SHA-256 hashes: they are long random secrets, so a fast hash is enough. */
export function hashKey(key: string): string {
  return crypto.createHash('sha256').update(key, 'utf8').digest('hex');
}

export function generateKey(): string {
  return crypto.randomBytes(30).toString('base64url');
}

/** Owners (accounts) and their API keys. */
export class ApiKeyRepository {
  constructor(private readonly db: Database) {}

  /**
   * The active key with this value, or undefined for an unknown or revoked key. The lookup is by
   * SHA-256 of the key, so no comparison's timing depends on how much of a guess is right.
   */
  findActiveKey(key: string): { id: number; ownerId: string } | undefined {
    const row = this.db
      .prepare('SELECT id, owner_id FROM api_keys WHERE key_hash = ? AND revoked IS NULL')
      .get(hashKey(key)) as { id: number; owner_id: string } | undefined;
    return row && { id: row.id, ownerId: row.owner_id };
  }

  ownerOfKey(key: string): string | undefined {
    return this.findActiveKey(key)?.ownerId;
  }

  /** The owner of an active key by its id (access tokens name the key by id). */
  ownerOfKeyId(id: number): string | undefined {
    const row = this.db.prepare('SELECT owner_id FROM api_keys WHERE id = ? AND revoked IS NULL').get(id) as
      | { owner_id: string }
      | undefined;
    return row?.owner_id;
  }

  /** The secret that signs access tokens: made once, kept in the database, never leaves the server. */
  tokenSigningSecret(): Buffer {
    this.db
      .prepare("INSERT OR IGNORE INTO secrets (name, value) VALUES ('token_signing', ?)")
      .run(crypto.randomBytes(32));
    return (this.db.prepare("SELECT value FROM secrets WHERE name = 'token_signing'").get() as { value: Buffer }).value;
  }

  add(ownerId: string, key: string, source: KeySource, now = new Date().toISOString()): ApiKeyInfo {
    this.db.transaction(() => {
      this.db.prepare('INSERT OR IGNORE INTO owners (id, created) VALUES (?, ?)').run(ownerId, now);
      this.db
        .prepare(
          `INSERT INTO api_keys (owner_id, key_hash, key_prefix, source, created) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT(key_hash) DO UPDATE SET owner_id = excluded.owner_id, source = excluded.source, revoked = NULL`,
        )
        .run(ownerId, hashKey(key), key.slice(0, 4), source, now);
    })();
    return this.list().find((k) => k.ownerId === ownerId && k.keyPrefix === key.slice(0, 4))!;
  }

  /** Makes the keys from API_KEYS exactly the active `env` keys: new ones added, removed ones revoked. */
  syncEnvironmentKeys(keys: Array<{ owner: string; key: string }>, now = new Date().toISOString()): void {
    this.db.transaction(() => {
      const wanted = new Set(keys.map((k) => hashKey(k.key)));
      for (const { owner, key } of keys) this.add(owner, key, 'env', now);
      const active = this.db
        .prepare("SELECT id, key_hash FROM api_keys WHERE source = 'env' AND revoked IS NULL")
        .all() as Array<{ id: number; key_hash: string }>;
      const revoke = this.db.prepare('UPDATE api_keys SET revoked = ? WHERE id = ?');
      for (const row of active) if (!wanted.has(row.key_hash)) revoke.run(now, row.id);
    })();
  }

  countActive(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM api_keys WHERE revoked IS NULL').get() as { n: number }).n;
  }

  list(): ApiKeyInfo[] {
    const rows = this.db.prepare('SELECT * FROM api_keys ORDER BY id').all() as Array<{
      id: number;
      owner_id: string;
      key_prefix: string;
      source: KeySource;
      created: string;
      revoked: string | null;
    }>;
    return rows.map((r) => ({
      id: r.id,
      ownerId: r.owner_id,
      keyPrefix: r.key_prefix,
      source: r.source,
      created: r.created,
      revoked: r.revoked,
    }));
  }

  revoke(id: number, now = new Date().toISOString()): boolean {
    return this.db.prepare('UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL').run(now, id).changes > 0;
  }
}
