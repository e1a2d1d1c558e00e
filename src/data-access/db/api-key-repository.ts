import crypto from 'node:crypto';
import type { Database, Queries } from './database';

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
  async findActiveKey(key: string): Promise<{ id: number; ownerId: string } | undefined> {
    const row = await this.db.kysely
      .selectFrom('api_keys')
      .select(['id', 'owner_id'])
      .where('key_hash', '=', hashKey(key))
      .where('revoked', 'is', null)
      .executeTakeFirst();
    return row && { id: row.id, ownerId: row.owner_id };
  }

  async ownerOfKey(key: string): Promise<string | undefined> {
    return (await this.findActiveKey(key))?.ownerId;
  }

  /** The owner of an active key by its id (access tokens name the key by id). */
  async ownerOfKeyId(id: number): Promise<string | undefined> {
    const row = await this.db.kysely
      .selectFrom('api_keys')
      .select('owner_id')
      .where('id', '=', id)
      .where('revoked', 'is', null)
      .executeTakeFirst();
    return row?.owner_id;
  }

  /** The secret that signs access tokens: made once, kept in the database, never leaves the server. */
  async tokenSigningSecret(): Promise<Buffer> {
    await this.db.kysely
      .insertInto('secrets')
      .values({ name: 'token_signing', value: crypto.randomBytes(32) })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    const row = await this.db.kysely
      .selectFrom('secrets')
      .select('value')
      .where('name', '=', 'token_signing')
      .executeTakeFirstOrThrow();
    return Buffer.from(row.value);
  }

  async add(ownerId: string, key: string, source: KeySource, now = new Date().toISOString()): Promise<ApiKeyInfo> {
    await this.db.write((trx) => addKey(trx, ownerId, key, source, now));
    return (await this.list()).find((k) => k.ownerId === ownerId && k.keyPrefix === key.slice(0, 4))!;
  }

  /** Adds the key only if no key is active, in one transaction; returns whether it was added. */
  async addIfNoneActive(
    ownerId: string,
    key: string,
    source: KeySource,
    now = new Date().toISOString(),
  ): Promise<boolean> {
    return this.db.write(async (trx) => {
      const active = await trx
        .selectFrom('api_keys')
        .select('id')
        .where('revoked', 'is', null)
        .limit(1)
        .executeTakeFirst();
      if (active) return false;
      await addKey(trx, ownerId, key, source, now);
      return true;
    });
  }

  /** Makes the keys from API_KEYS exactly the active `env` keys: new ones added, removed ones revoked. */
  async syncEnvironmentKeys(
    keys: Array<{ owner: string; key: string }>,
    now = new Date().toISOString(),
  ): Promise<void> {
    await this.db.write(async (trx) => {
      const wanted = new Set(keys.map((k) => hashKey(k.key)));
      for (const { owner, key } of keys) await addKey(trx, owner, key, 'env', now);
      const active = await trx
        .selectFrom('api_keys')
        .select(['id', 'key_hash'])
        .where('source', '=', 'env')
        .where('revoked', 'is', null)
        .execute();
      const stale = active.filter((row) => !wanted.has(row.key_hash)).map((row) => row.id);
      if (stale.length > 0) await trx.updateTable('api_keys').set({ revoked: now }).where('id', 'in', stale).execute();
    });
  }

  async countActive(): Promise<number> {
    const row = await this.db.kysely
      .selectFrom('api_keys')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('revoked', 'is', null)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async list(): Promise<ApiKeyInfo[]> {
    const rows = await this.db.kysely.selectFrom('api_keys').selectAll().orderBy('id').execute();
    return rows.map((r) => ({
      id: r.id,
      ownerId: r.owner_id,
      keyPrefix: r.key_prefix,
      source: r.source,
      created: r.created,
      revoked: r.revoked,
    }));
  }

  async revoke(id: number, now = new Date().toISOString()): Promise<boolean> {
    const result = await this.db.kysely
      .updateTable('api_keys')
      .set({ revoked: now })
      .where('id', '=', id)
      .where('revoked', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }
}

async function addKey(trx: Queries, ownerId: string, key: string, source: KeySource, now: string): Promise<void> {
  await trx
    .insertInto('owners')
    .values({ id: ownerId, created: now })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
  await trx
    .insertInto('api_keys')
    .values({ owner_id: ownerId, key_hash: hashKey(key), key_prefix: key.slice(0, 4), source, created: now })
    .onConflict((oc) =>
      oc.column('key_hash').doUpdateSet((eb) => ({
        owner_id: eb.ref('excluded.owner_id'),
        source: eb.ref('excluded.source'),
        revoked: null,
      })),
    )
    .execute();
}
