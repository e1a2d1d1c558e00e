import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

/** SQLite caps bound parameters per statement; look hashes up in chunks well below it. */
const LOOKUP_CHUNK = 500;

/**
 * Embeddings by (SHA-256 hex of the image bytes, pack key), in their own SQLite file so a retrain
 * only embeds new images and a restart loses nothing. A different pack key never matches, so
 * embeddings of an older pack build are never reused.
 */
export class EmbeddingCache {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement<[string, string, Buffer]>;
  private readonly putAll: (entries: Array<{ hash: string; embedding: Float32Array }>, packKey: string) => void;

  /** `onLookup` is told each lookup's hits and misses (unique hashes), for metrics. */
  constructor(
    dbPath: string,
    private readonly onLookup: (hits: number, misses: number) => void = () => undefined,
  ) {
    fs.mkdirSync(path.dirname(dbPath), { recursive: true });
    this.db = new Database(dbPath);
    this.db.pragma('journal_mode = WAL');
    // WAL with NORMAL survives process crashes; a power cut may lose the last writes, which are only a cache.
    this.db.pragma('synchronous = NORMAL');
    // The API (embedding uploads) and the training worker write it from separate processes.
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`CREATE TABLE IF NOT EXISTS embeddings (
      hash TEXT NOT NULL,
      pack_key TEXT NOT NULL,
      vector BLOB NOT NULL,
      PRIMARY KEY (hash, pack_key)
    ) WITHOUT ROWID`);
    this.insert = this.db.prepare('INSERT OR REPLACE INTO embeddings (hash, pack_key, vector) VALUES (?, ?, ?)');
    this.putAll = this.db.transaction((entries, packKey) => {
      for (const { hash, embedding } of entries) {
        this.insert.run(hash, packKey, Buffer.from(embedding.buffer, embedding.byteOffset, embedding.byteLength));
      }
    });
  }

  /** The cached embeddings among `hashes`, by hash; misses are simply absent. */
  getMany(hashes: string[], packKey: string): Map<string, Float32Array> {
    const found = new Map<string, Float32Array>();
    const unique = [...new Set(hashes)];
    for (let start = 0; start < unique.length; start += LOOKUP_CHUNK) {
      const chunk = unique.slice(start, start + LOOKUP_CHUNK);
      const rows = this.db
        .prepare(`SELECT hash, vector FROM embeddings WHERE pack_key = ? AND hash IN (${chunk.map(() => '?').join(',')})`)
        .all(packKey, ...chunk) as Array<{ hash: string; vector: Buffer }>;
      for (const { hash, vector } of rows) {
        // Copy: the blob's buffer need not be 4-byte aligned, and the caller owns the result.
        const embedding = new Float32Array(vector.byteLength / Float32Array.BYTES_PER_ELEMENT);
        new Uint8Array(embedding.buffer).set(vector);
        found.set(hash, embedding);
      }
    }
    this.onLookup(found.size, unique.length - found.size);
    return found;
  }

  putMany(entries: Array<{ hash: string; embedding: Float32Array }>, packKey: string): void {
    this.putAll(entries, packKey);
  }

  close(): void {
    this.db.close();
  }
}
