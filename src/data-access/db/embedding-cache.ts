import type { Database } from './database';
import { heldImageHashes } from './records';

/** Hashes looked up per statement: well below SQLite's and PostgreSQL's bound-parameter caps. */
const LOOKUP_CHUNK = 500;
/** Embeddings written per statement (3 parameters each). */
const WRITE_CHUNK = 200;

/**
 * Embeddings by (SHA-256 hex of the image bytes, pack key), in the service's database, so every
 * API process and worker, on any machine, reuses what any of them embedded, a retrain only embeds
 * new images and a restart loses nothing. A different pack key never matches, so embeddings of an
 * older pack build are never reused. Vectors are float32, little-endian bytes.
 *
 * An embedding is kept only while its image is: it is stored only for an image an example
 * references or an upload in flight has claimed, and goes with the image (ImageClaims.removeUnreferenced).
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

  /**
   * Stores embeddings (replacing any under the same hash and pack key) of the images an example
   * references or a live upload claim holds, and drops the others: in one write transaction, so a
   * run that embedded an image before a deletion removed it cannot store its embedding again after.
   */
  async putMany(
    entries: Array<{ hash: string; embedding: Float32Array }>,
    packKey: string,
    now = Date.now(),
  ): Promise<void> {
    if (entries.length === 0) return;
    const unique = new Map(entries.map((e) => [e.hash, e.embedding]));
    await this.db.write(async (trx) => {
      const hashes = [...unique.keys()];
      for (let start = 0; start < hashes.length; start += WRITE_CHUNK) {
        const chunk = hashes.slice(start, start + WRITE_CHUNK);
        const held = await heldImageHashes(trx, chunk, now);
        const rows = chunk
          .filter((hash) => held.has(hash))
          .map((hash) => {
            const embedding = unique.get(hash)!;
            return {
              hash,
              pack_key: packKey,
              vector: Buffer.from(embedding.buffer, embedding.byteOffset, embedding.byteLength),
            };
          });
        if (rows.length === 0) continue;
        await trx
          .insertInto('embeddings')
          .values(rows)
          .onConflict((oc) =>
            oc.columns(['hash', 'pack_key']).doUpdateSet((eb) => ({ vector: eb.ref('excluded.vector') })),
          )
          .execute();
      }
    });
  }

  /** Every image hash with a cached embedding (under any pack key): candidates for the orphan sweep. */
  async listHashes(): Promise<string[]> {
    return (await this.db.kysely.selectFrom('embeddings').select('hash').distinct().execute()).map((r) => r.hash);
  }
}
