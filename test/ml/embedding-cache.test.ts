import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { EmbeddingCache } from '../../src/ml/embedding-cache';

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

describe('EmbeddingCache', () => {
  let dir: string;
  let dbPath: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'embedding-cache-'));
    dbPath = path.join(dir, 'nested', 'embeddings.sqlite');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('survives a restart and reads back bit-identical embeddings', () => {
    const entries = [1, 2, 3].map((seed) => ({ hash: sha256(`image ${seed}`), embedding: embedding(seed) }));
    const first = new EmbeddingCache(dbPath);
    first.putMany(entries, 'bundled@1');
    first.close();

    const reopened = new EmbeddingCache(dbPath);
    const found = reopened.getMany([...entries.map((e) => e.hash), sha256('never stored')], 'bundled@1');
    expect([...found.keys()].sort()).toEqual(entries.map((e) => e.hash).sort());
    for (const entry of entries) expect(bytesOf(found.get(entry.hash)!)).toEqual(bytesOf(entry.embedding));
    reopened.close();
  });

  it('keeps packs apart and overwrites an entry of the same pack', () => {
    const cache = new EmbeddingCache(dbPath);
    const hash = sha256('photo');
    cache.putMany([{ hash, embedding: embedding(1) }], 'bundled@1');
    cache.putMany([{ hash, embedding: embedding(2, 1280) }], 'imagenet@1');
    expect(cache.getMany([hash], 'bundled@2').size).toBe(0);
    expect(bytesOf(cache.getMany([hash], 'imagenet@1').get(hash)!)).toEqual(bytesOf(embedding(2, 1280)));
    cache.putMany([{ hash, embedding: embedding(3) }], 'bundled@1');
    expect(bytesOf(cache.getMany([hash], 'bundled@1').get(hash)!)).toEqual(bytesOf(embedding(3)));
    cache.close();
  });

  it('looks up more hashes than one SQL statement may bind, duplicates included', () => {
    const cache = new EmbeddingCache(dbPath);
    const entries = Array.from({ length: 1200 }, (_, i) => ({ hash: sha256(`n${i}`), embedding: embedding(i, 8) }));
    cache.putMany(entries, 'bundled@1');
    const wanted = [...entries.map((e) => e.hash), entries[0].hash, ...Array.from({ length: 100 }, (_, i) => sha256(`missing ${i}`))];
    const found = cache.getMany(wanted, 'bundled@1');
    expect(found.size).toBe(1200);
    expect(bytesOf(found.get(entries[777].hash)!)).toEqual(bytesOf(entries[777].embedding));
    cache.close();
  });

  it('stores subarray views by their own bytes and uses WAL', () => {
    const cache = new EmbeddingCache(dbPath);
    const backing = embedding(9, 30);
    const view = backing.subarray(10, 20);
    cache.putMany([{ hash: sha256('view'), embedding: view }], 'bundled@1');
    expect(bytesOf(cache.getMany([sha256('view')], 'bundled@1').get(sha256('view'))!)).toEqual(bytesOf(view));
    const db = new Database(dbPath, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
    cache.close();
  });
});
