import type { Database } from './database';

/** Hashes looked up per statement: well below SQLite's and PostgreSQL's bound-parameter caps. */
const LOOKUP_CHUNK = 500;
/** Embeddings written per statement (3 parameters each). */
const WRITE_CHUNK = 200;

/**
 * Embeddings by (SHA-256 hex of the image bytes, pack key), in the service's database, so every
 * API process and worker, on any machine, reuses what any of them embedded, a retrain only embeds
 * new images and a restart loses nothing. A different pack key never matches, so embeddings of an
 * older pack build are never reused. Vectors are float32, little-endian bytes.
 */
export class EmbeddingCache {
  /** `onLookup` is told each lookup's hits and misses (unique hashes), for metrics. */
  constructor(
    private readonly db: Database,
    private readonly onLookup: (hits: number, misses: number) => void = () => undefined,
  ) {}

  /** The cached embeddings among `hashes`, by hash; misses are simply absent. */
  async getMany(hashes: string[], packKey: string): Promise<Map<string, Float32Array>> {
    const found = new Map<string, Float32Array>();
    const unique = [...new Set(hashes)];
    for (let start = 0; start < unique.length; start += LOOKUP_CHUNK) {
      const chunk = unique.slice(start, start + LOOKUP_CHUNK);
      const rows = await this.db.kysely
        .selectFrom('embeddings')
        .select(['hash', 'vector'])
        .where('pack_key', '=', packKey)
        .where('hash', 'in', chunk)
        .execute();
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

  /** Stores embeddings (replacing any under the same hash and pack key). */
  async putMany(entries: Array<{ hash: string; embedding: Float32Array }>, packKey: string): Promise<void> {
    if (entries.length === 0) return;
    const unique = new Map(entries.map((e) => [e.hash, e.embedding]));
    const rows = [...unique].map(([hash, embedding]) => ({
      hash,
      pack_key: packKey,
      vector: Buffer.from(embedding.buffer, embedding.byteOffset, embedding.byteLength),
    }));
    for (let start = 0; start < rows.length; start += WRITE_CHUNK) {
      await this.db.kysely
        .insertInto('embeddings')
        .values(rows.slice(start, start + WRITE_CHUNK))
        .onConflict((oc) => oc.columns(['hash', 'pack_key']).doUpdateSet((eb) => ({ vector: eb.ref('excluded.vector') })))
        .execute();
    }
  }
}
