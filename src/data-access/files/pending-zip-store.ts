import fs from 'node:fs/promises';
import path from 'node:path';
import { claimTaggedName, leftByGoneProcess, releaseTaggedName } from '../../lib/process-tag';

/** `<host>@<pid scope>.<pid>-<8 hex>.zip` (claimTaggedName): the process that kept it is in its name. */
const PENDING_NAME = /^[A-Za-z0-9._-]+@[0-9a-f]{12}\.\d+-[0-9a-f]{8}\.zip$/;
/**
 * A file no database row names, kept by a process of another machine, is a crash's leftover after
 * this long: a create renames its zips here moments before it commits their rows.
 */
const ABANDONED_MS = 60 * 60 * 1000;

/** A string used as a pending zip's name that is not one: refused before it reaches a file path. */
export class InvalidPendingNameError extends Error {
  constructor(readonly name: string) {
    super(`'${String(name).slice(0, 80)}' is not a pending zip's name`);
    this.name = 'InvalidPendingNameError';
  }
}

/**
 * Zips a create or update accepted, kept whole under `<root>/<tag>.zip` until the worker has
 * extracted their images into the image store (issue 22: one durable file per zip instead of one per
 * image lets a 1,000-image create answer in well under a second). A zip is made durable where the
 * upload already lies (flushed to disk, renamed in, the folder flushed), so an answered create loses
 * nothing on power loss. The database row that names a file is written after the file is in place
 * (see ClassifierRepository.create): a file no row names was left by a request that failed or a process
 * that died before its commit, and `sweep` removes it once that process is gone.
 */
export class PendingZipStore {
  private readonly root: string;
  private made = false;

  constructor(rootDir: string) {
    this.root = path.resolve(rootDir);
  }

  /** Flushes an uploaded file's data to disk (start it early: it overlaps the checks). */
  async flush(file: string): Promise<void> {
    const handle = await fs.open(file, 'r+');
    try {
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }

  /**
   * Moves `file` (flushed with `flush`; on the data directory's file system, as the upload folder is)
   * into the store under a new name, and returns the name. The name stays this process's (so no sweep
   * removes it) until `settle`. Call `syncFolder` once after the last keep, before recording the names.
   */
  async keep(file: string): Promise<string> {
    if (!this.made) {
      if ((await fs.mkdir(this.root, { recursive: true })) !== undefined) await syncFolder(path.dirname(this.root));
      this.made = true;
    }
    const name = `${claimTaggedName()}.zip`;
    try {
      await fs.rename(file, this.path(name)).catch(async (error: NodeJS.ErrnoException) => {
        // The folder was removed meanwhile (an operator clearing the data directory): made again, tried once more.
        if (error.code !== 'ENOENT' || (await fs.stat(file).catch(() => undefined)) === undefined) throw error;
        await fs.mkdir(this.root, { recursive: true });
        await fs.rename(file, this.path(name));
      });
    } catch (error) {
      this.settle([name]);
      throw error;
    }
    return name;
  }

  /**
   * Refuses, as the file system would (an error with code ENOSPC), images that would not fit once the
   * worker extracts them beside their zip: `sizes` in bytes, each taking whole blocks of the data
   * directory's file system.
   */
  async checkRoomFor(sizes: number[]): Promise<void> {
    const { bavail, bsize } = await fs.statfs(path.dirname(this.root));
    const needed = sizes.reduce((sum, size) => sum + Math.ceil(size / bsize) + 1, 0);
    if (needed <= bavail) return;
    throw Object.assign(
      new Error(
        `ENOSPC: the accepted images need ${needed} blocks of ${bsize} bytes once extracted; ${bavail} are free`,
      ),
      { code: 'ENOSPC' },
    );
  }

  /** Flushes the folder, so the names `keep` gave survive a power loss. */
  async syncFolder(): Promise<void> {
    await syncFolder(this.root);
  }

  /** The kept names are recorded in the database (or removed): a sweep may judge them from now on. */
  settle(names: string[]): void {
    for (const name of names) releaseTaggedName(name.slice(0, -'.zip'.length));
  }

  /** The file of a kept zip; the name is validated, so the path is always inside the store. */
  path(name: string): string {
    if (typeof name !== 'string' || !PENDING_NAME.test(name)) throw new InvalidPendingNameError(name);
    return path.join(this.root, name);
  }

  /** Removes kept zips; names already gone are ignored. */
  async remove(names: string[]): Promise<void> {
    const files = names.map((name) => this.path(name));
    for (const file of files) await fs.rm(file, { force: true });
  }

  /**
   * Removes the files that `isRecorded` says no database row names and whose process is gone (this
   * machine's at once, another machine's after an hour). Returns how many were removed.
   */
  async sweep(isRecorded: (names: string[]) => Promise<Set<string>>, now = Date.now()): Promise<number> {
    const names = (await fs.readdir(this.root).catch(() => [] as string[])).filter((n) => PENDING_NAME.test(n));
    if (names.length === 0) return 0;
    const recorded = await isRecorded(names);
    let removed = 0;
    for (const name of names) {
      if (recorded.has(name)) continue;
      const stat = await fs.stat(this.path(name)).catch(() => undefined);
      if (!stat || !leftByGoneProcess(name.slice(0, -'.zip'.length), stat.mtimeMs, ABANDONED_MS, now)) continue;
      await fs.rm(this.path(name), { force: true });
      removed++;
    }
    return removed;
  }
}

async function syncFolder(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
