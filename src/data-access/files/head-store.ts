import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeFileDurably } from '../../lib/durable-write';

const SAFE_ID = /^[A-Za-z0-9_-]+$/;

/**
 * Trained head files, one folder per classifier: `<root>/<classifier_id>/<generation>-<random>.head`.
 * A version's file is written once and never changed; the database points to it.
 */
export class HeadStore {
  constructor(private readonly root: string) {}

  private classifierDir(classifierId: string): string {
    if (!SAFE_ID.test(classifierId)) throw new Error(`unsafe classifier id for a path: ${classifierId}`);
    return path.join(this.root, classifierId);
  }

  /**
   * Writes atomically (temp file + fsync + rename); returns the file name relative to the store.
   * The name is new to every write, so processes on any machine sharing the store never write the same file.
   */
  async write(classifierId: string, generation: number, bytes: Buffer): Promise<string> {
    const dir = this.classifierDir(classifierId);
    await fs.mkdir(dir, { recursive: true });
    const name = `${generation}-${crypto.randomBytes(6).toString('hex')}.head`;
    await writeFileDurably(path.join(dir, `.${name}.tmp`), path.join(dir, name), bytes);
    return path.join(classifierId, name);
  }

  resolve(relativeFile: string): string {
    const full = path.resolve(this.root, relativeFile);
    if (!full.startsWith(path.resolve(this.root) + path.sep))
      throw new Error(`head file outside the store: ${relativeFile}`);
    return full;
  }

  read(relativeFile: string): Promise<Buffer> {
    return fs.readFile(this.resolve(relativeFile));
  }

  async remove(relativeFile: string): Promise<void> {
    await fs.rm(this.resolve(relativeFile), { force: true });
  }

  /**
   * Head files (and temp files) last changed more than `minAgeMs` ago, relative to the store: the
   * candidates for removal when no version names them (a run killed between writing and publishing).
   */
  async listOlderThan(minAgeMs: number, now = Date.now()): Promise<string[]> {
    const found: string[] = [];
    for (const dir of await fs.readdir(this.root).catch(() => [] as string[])) {
      if (!SAFE_ID.test(dir)) continue;
      for (const name of await fs.readdir(path.join(this.root, dir)).catch(() => [] as string[])) {
        const stat = await fs.stat(path.join(this.root, dir, name)).catch(() => undefined);
        if (stat?.isFile() && now - stat.mtimeMs > minAgeMs) found.push(path.join(dir, name));
      }
    }
    return found;
  }

  async removeClassifier(classifierId: string): Promise<void> {
    await fs.rm(this.classifierDir(classifierId), { recursive: true, force: true });
  }
}
