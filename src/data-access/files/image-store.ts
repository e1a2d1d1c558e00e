import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeFileDurably } from '../../lib/durable-write';
import { claimTaggedName, leftByGoneProcess, releaseTaggedName } from '../../lib/process-tag';

const IMAGE_HASH = /^[0-9a-f]{64}$/;
/**
 * A temp file of another machine's process older than this was left by a crash: writing one image
 * (≤ 50 MB, one write and one fsync) takes seconds even on a slow shared volume. (This machine's
 * are judged by their process: see leftByGoneProcess.)
 */
const ABANDONED_TEMP_MS = 60 * 60 * 1000;

/** A string used as an image hash that is not one: refused before it reaches a file path. */
export class InvalidImageHashError extends Error {
  constructor(readonly hash: string) {
    super(`'${String(hash).slice(0, 80)}' is not an image hash: expected 64 lowercase hex characters (SHA-256)`);
    this.name = 'InvalidImageHashError';
  }
}

/** The image named by a valid hash is not in the store. */
export class MissingImageError extends Error {
  constructor(
    readonly hash: string,
    readonly file: string,
  ) {
    super(`image ${hash} is not in the image store (no file ${file})`);
    this.name = 'MissingImageError';
  }
}

/**
 * Example images, content-addressed: each image lives once at `<root>/<hh>/<sha256>`, however
 * many times and under however many classes it was uploaded. Files are written to a temp file in
 * the same folder and renamed into place, so a reader never sees a half-written image.
 */
export class ImageStore {
  private readonly root: string;
  /** Fan-out folders this store has made or found: see ensureDir. */
  private readonly dirs = new Set<string>();

  constructor(rootDir: string) {
    this.root = path.resolve(rootDir);
  }

  async put(bytes: Buffer): Promise<{ hash: string; bytes: number; created: boolean }> {
    const hash = crypto.createHash('sha256').update(bytes).digest('hex');
    const file = this.path(hash);
    // A file of the right size under this name is this image: a renamed file is always complete.
    const existing = await fs.stat(file).catch(() => null);
    if (existing?.isFile() && existing.size === bytes.length) return { hash, bytes: bytes.length, created: false };

    const dir = path.dirname(file);
    // Named with its process, so another process (API processes and machines share the store) can tell a crash's leftover from a write in progress.
    const tag = claimTaggedName();
    const temp = path.join(dir, `.${hash}.${tag}.tmp`);
    try {
      // Durable before named: an existing name is trusted and never written again.
      await this.ensureDir(dir, () => writeFileDurably(temp, file, bytes));
    } finally {
      releaseTaggedName(tag);
    }
    return { hash, bytes: bytes.length, created: true };
  }

  /**
   * Runs `write` in `dir`, created first unless this store has made or seen it before: one file
   * system call fewer per image on a 1,000-image create (bench:upload). A folder removed meanwhile
   * by someone else fails the write with ENOENT; it is made again and the write retried once.
   */
  private async ensureDir(dir: string, write: () => Promise<void>): Promise<void> {
    if (!this.dirs.has(dir)) {
      await fs.mkdir(dir, { recursive: true });
      this.dirs.add(dir);
    }
    try {
      await write();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      await fs.mkdir(dir, { recursive: true });
      await write();
    }
  }

  /**
   * Flushes the fan-out folders of the images, so their names survive a power loss (put flushes each
   * file's data; call this before removing another copy of the images, as the worker does with a zip).
   */
  async syncFolders(hashes: string[]): Promise<void> {
    for (const dir of new Set(hashes.map((hash) => path.dirname(this.path(hash))))) {
      const handle = await fs.open(dir, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  }

  /**
   * Every stored image's hash. Also removes temp files a crash left mid-write (they are never
   * complete images, and nothing refers to them), leaving those another live process is writing.
   */
  async listHashes(now = Date.now()): Promise<string[]> {
    const hashes: string[] = [];
    const fanOut = await fs.readdir(this.root).catch(() => [] as string[]);
    for (const dir of fanOut) {
      if (!/^[0-9a-f]{2}$/.test(dir)) continue;
      for (const name of await fs.readdir(path.join(this.root, dir))) {
        if (IMAGE_HASH.test(name)) hashes.push(name);
        else if (name.endsWith('.tmp')) await removeIfAbandoned(path.join(this.root, dir, name), now);
      }
    }
    return hashes;
  }

  /** The file of an image; the hash is validated, so the path is always inside the store. */
  path(hash: string): string {
    if (typeof hash !== 'string' || !IMAGE_HASH.test(hash)) throw new InvalidImageHashError(hash);
    return path.join(this.root, hash.slice(0, 2), hash);
  }

  async read(hash: string): Promise<Buffer> {
    const file = this.path(hash);
    try {
      return await fs.readFile(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new MissingImageError(hash, file);
      throw error;
    }
  }

  async has(hash: string): Promise<boolean> {
    const stat = await fs.stat(this.path(hash)).catch(() => null);
    return stat?.isFile() ?? false;
  }

  /** Deletes the images; hashes not in the store are ignored. All hashes are validated first. */
  async remove(hashes: string[]): Promise<void> {
    const files = hashes.map((hash) => this.path(hash));
    for (const file of files) await fs.rm(file, { force: true });
  }
}

/** `.<hash>.<process tag>.tmp`: removed when its process is gone. */
async function removeIfAbandoned(file: string, now: number): Promise<void> {
  const stat = await fs.stat(file).catch(() => undefined);
  const tag = path.basename(file).slice(1 + 64 + 1, -'.tmp'.length);
  if (stat && leftByGoneProcess(tag, stat.mtimeMs, ABANDONED_TEMP_MS, now)) await fs.rm(file, { force: true });
}
