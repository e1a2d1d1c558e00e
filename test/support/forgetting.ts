import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Database } from '../../src/data-access/db/database';
import { dataLayout } from '../../src/data-access/files/data-layout';
import { deserializeHead } from '../../src/ml/heads';

/**
 * What a deleted image may leave behind, looked at from outside the service: its cached
 * embeddings, its file, and head files on disk whose k-NN gate stores a vector of it.
 */

/** Cached embeddings by image hash (every pack key), as float32 vectors. */
export async function cachedEmbeddings(db: Database, hashes: string[]): Promise<Map<string, Float32Array>> {
  const found = new Map<string, Float32Array>();
  if (hashes.length === 0) return found;
  const rows = await db.kysely
    .selectFrom('embeddings')
    .select(['hash', 'vector'])
    .where('hash', 'in', hashes)
    .execute();
  for (const { hash, vector } of rows) {
    const embedding = new Float32Array(vector.byteLength / 4);
    new Uint8Array(embedding.buffer).set(vector);
    found.set(hash, embedding);
  }
  return found;
}

export function imageFileExists(dataDir: string, hash: string): boolean {
  return fs.existsSync(path.join(dataLayout(dataDir).images, hash.slice(0, 2), hash));
}

/** Every head file on disk (relative to the head store), temp files of interrupted writes included. */
export function headFilesOnDisk(dataDir: string): string[] {
  const root = dataLayout(dataDir).heads;
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .flatMap((dir) => fs.readdirSync(path.join(root, dir)).map((name) => path.join(dir, name)));
}

function cosine(a: Float32Array, aAt: number, b: Float32Array, dim: number): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let k = 0; k < dim; k++) {
    dot += a[aAt + k] * b[k];
    na += a[aAt + k] * a[aAt + k];
    nb += b[k] * b[k];
  }
  return dot / Math.sqrt(na * nb);
}

/** The head files on disk that store a vector within cosine `minCosine` of `embedding` (the test: 0.999). */
export function headsHolding(dataDir: string, embedding: Float32Array, minCosine = 0.999): string[] {
  const root = dataLayout(dataDir).heads;
  return headFilesOnDisk(dataDir).filter((file) => {
    if (!file.endsWith('.head')) return false;
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(path.join(root, file));
    } catch (error) {
      // Removed since the listing (retention pruning a version meanwhile): it holds nothing now.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
    const head = deserializeHead(bytes, file);
    const positives = head.gate?.positives;
    if (!positives || head.dim !== embedding.length) return false;
    for (let at = 0; at < positives.length; at += head.dim)
      if (cosine(positives, at, embedding, head.dim) > minCosine) return true;
    return false;
  });
}

export const sha256 = (bytes: Buffer) => crypto.createHash('sha256').update(bytes).digest('hex');
