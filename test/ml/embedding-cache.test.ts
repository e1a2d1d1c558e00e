import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Database } from '../../src/data-access/db/database';
import { EmbeddingCache } from '../../src/data-access/db/embedding-cache';
import { ImageClaims, type ImageClaim } from '../../src/data-access/db/image-claims';
import { ClassifierRepository } from '../../src/data-access/db/classifier-repository';
import { createTestDatabase, type TestDatabase } from '../support/postgres';

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/** Deterministic pseudo-random embedding, with values whose every bit matters. */
function embedding(seed: number, dim = 1920): Float32Array {
  const out = new Float32Array(dim);
  let state = seed * 2654435761;
  for (let i = 0; i < dim; i += 1) {
    state = (state * 1103515245 + 12345) % 2147483648;
    out[i] = state / 2147483648 - 0.5 + 1e-7 * i;
  }
  return out;
}

const bytesOf = (values: Float32Array): Buffer => Buffer.from(values.buffer, values.byteOffset, values.byteLength);

describe.each(['sqlite', 'postgres'] as const)('EmbeddingCache on %s', (dialect) => {
  let dir: string;
  let pg: TestDatabase | undefined;
  let db: Database;
  let upload: ImageClaim;
  /** The service's database: a SQLite file in a folder not yet made, or a PostgreSQL database of its own. */
  const target = () => ({ databaseUrl: pg?.url, sqliteFile: path.join(dir, 'nested', 'service.sqlite') });
  /** The cache keeps embeddings of images an upload claims or an example references only: claim them, as an upload does. */
  const claimed = async <T extends { hash: string }>(entries: T[]) => {
    await upload.add(entries.map((e) => e.hash));
    return entries;
  };

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'embedding-cache-'));
    pg = dialect === 'postgres' ? await createTestDatabase() : undefined;
    db = await Database.open(target());
    upload = new ImageClaims(db, 60_000).open('test-upload');
  });
  afterEach(async () => {
    await upload.release();
    await db.close();
    await pg?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('survives a restart and reads back bit-identical embeddings', async () => {
    const entries = await claimed(
      [1, 2, 3].map((seed) => ({ hash: sha256(`image ${seed}`), embedding: embedding(seed) })),
    );
    await new EmbeddingCache(db).putMany(entries, 'bundled@1');
    await upload.release();
    await db.close();

    db = await Database.open(target());
    upload = new ImageClaims(db, 60_000).open('test-upload');
    const found = await new EmbeddingCache(db).getMany(
      [...entries.map((e) => e.hash), sha256('never stored')],
      'bundled@1',
    );
    expect([...found.keys()].sort()).toEqual(entries.map((e) => e.hash).sort());
    for (const entry of entries) expect(bytesOf(found.get(entry.hash)!)).toEqual(bytesOf(entry.embedding));
  });

  it('keeps packs apart and overwrites an entry of the same pack', async () => {
    const cache = new EmbeddingCache(db);
    const [{ hash }] = await claimed([{ hash: sha256('photo') }]);
    await cache.putMany([{ hash, embedding: embedding(1) }], 'bundled@1');
    await cache.putMany([{ hash, embedding: embedding(2, 1280) }], 'imagenet@1');
    expect((await cache.getMany([hash], 'bundled@2')).size).toBe(0);
    expect(bytesOf((await cache.getMany([hash], 'imagenet@1')).get(hash)!)).toEqual(bytesOf(embedding(2, 1280)));
    await cache.putMany([{ hash, embedding: embedding(3) }], 'bundled@1');
    expect(bytesOf((await cache.getMany([hash], 'bundled@1')).get(hash)!)).toEqual(bytesOf(embedding(3)));
    // The same hash twice in one call: the last one is kept (one statement may not write a row twice).
    await cache.putMany(
      [
        { hash, embedding: embedding(4) },
        { hash, embedding: embedding(5) },
      ],
      'bundled@1',
    );
    expect(bytesOf((await cache.getMany([hash], 'bundled@1')).get(hash)!)).toEqual(bytesOf(embedding(5)));
  });

  it('looks up more hashes than one SQL statement may bind, duplicates included, and tells hits and misses', async () => {
    const lookups: Array<[number, number]> = [];
    const cache = new EmbeddingCache(db, (hits, misses) => lookups.push([hits, misses]));
    const entries = await claimed(
      Array.from({ length: 1200 }, (_, i) => ({ hash: sha256(`n${i}`), embedding: embedding(i, 8) })),
    );
    await cache.putMany(entries, 'bundled@1');
    const wanted = [
      ...entries.map((e) => e.hash),
      entries[0].hash,
      ...Array.from({ length: 100 }, (_, i) => sha256(`missing ${i}`)),
    ];
    const found = await cache.getMany(wanted, 'bundled@1');
    expect(found.size).toBe(1200);
    expect(bytesOf(found.get(entries[777].hash)!)).toEqual(bytesOf(entries[777].embedding));
    expect(lookups).toEqual([[1200, 100]]);
  });

  it('stores subarray views by their own bytes', async () => {
    const cache = new EmbeddingCache(db);
    const backing = embedding(9, 30);
    const view = backing.subarray(10, 20);
    await claimed([{ hash: sha256('view') }]);
    await cache.putMany([{ hash: sha256('view'), embedding: view }], 'bundled@1');
    expect(bytesOf((await cache.getMany([sha256('view')], 'bundled@1')).get(sha256('view'))!)).toEqual(bytesOf(view));
  });

  it('keeps an embedding only while its image is kept: claimed by an upload or referenced by an example (issue 21)', async () => {
    const cache = new EmbeddingCache(db);
    const [ofExample, ofUpload, ofNothing] = ['example', 'upload', 'nothing'].map((name) => ({
      hash: sha256(name),
      embedding: embedding(1, 4),
    }));
    await new ClassifierRepository(db).create({
      id: 'k_1',
      ownerId: 'alice',
      name: 'k',
      examples: [{ className: 'a', imageHash: ofExample.hash }],
      customerId: null,
      now: new Date().toISOString(),
    });
    await claimed([ofUpload]);
    // A training run that embedded an image before a deletion removed it stores nothing for it.
    await cache.putMany([ofExample, ofUpload, ofNothing], 'bundled@1');
    expect(
      [...(await cache.getMany([ofExample.hash, ofUpload.hash, ofNothing.hash], 'bundled@1')).keys()].sort(),
    ).toEqual([ofExample.hash, ofUpload.hash].sort());
    expect((await cache.listHashes()).sort()).toEqual([ofExample.hash, ofUpload.hash].sort());

    // Removing unreferenced images takes their embeddings with them; the example's stays.
    await upload.release();
    const removedFiles: string[] = [];
    const claims = new ImageClaims(db, 60_000);
    expect(
      await claims.removeUnreferenced(
        [ofExample.hash, ofUpload.hash],
        async (doomed) => void removedFiles.push(...doomed),
      ),
    ).toEqual([ofUpload.hash]);
    expect(removedFiles).toEqual([ofUpload.hash]);
    expect(await cache.listHashes()).toEqual([ofExample.hash]);
  });

  if (dialect === 'sqlite') {
    it('lives in the service database, which uses WAL so the API and the worker read while the other writes', async () => {
      await new EmbeddingCache(db).putMany(
        await claimed([{ hash: sha256('wal'), embedding: embedding(1, 4) }]),
        'bundled@1',
      );
      expect(fs.readdirSync(path.join(dir, 'nested')).filter((f) => f.startsWith('embeddings'))).toEqual([]);
      const raw = new BetterSqlite3(target().sqliteFile, { readonly: true });
      try {
        expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
        expect(raw.prepare('SELECT hash FROM embeddings').all()).toEqual([{ hash: sha256('wal') }]);
      } finally {
        raw.close();
      }
    });
  }
});
