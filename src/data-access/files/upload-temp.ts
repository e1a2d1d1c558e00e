import fs from 'node:fs/promises';
import path from 'node:path';
import { claimTaggedName, leftByGoneProcess, releaseTaggedName } from '../../lib/process-tag';
import type { Logger } from '../../logger';

/** How often a live process marks its temp folder as in use (its mtime), and how often it sweeps. */
const HEARTBEAT_MS = 60_000;
/**
 * A folder of another machine whose mark is older than this is a dead process's. Fifteen missed
 * marks: far beyond any event-loop stall, and beyond the clock skew of NTP-synchronised machines.
 * Not the age of the upload: a big upload's files stay unchanged while it is ingested for minutes.
 */
const STALE_AFTER_MS = 15 * 60_000;

/**
 * This process's folder for uploads in flight, `DATA_DIR/tmp/<host>@<pid>-<random>`. Several API
 * processes (on this machine or others sharing the data directory) each have their own, and a
 * starting process removes only the folders of processes that are gone (leftByGoneProcess): on
 * this machine as soon as their pid has exited, from other machines once their mark is stale.
 */
export class UploadTempDir {
  private timer?: NodeJS.Timeout;

  private constructor(
    private readonly root: string,
    private readonly name: string,
    private readonly logger: Logger,
  ) {}

  /** The folder to write uploads to. */
  get path(): string {
    return path.join(this.root, this.name);
  }

  /** Creates this process's folder under `root` after removing those of gone processes. */
  static async open(root: string, logger: Logger): Promise<UploadTempDir> {
    await fs.mkdir(root, { recursive: true });
    const dir = new UploadTempDir(root, claimTaggedName(), logger);
    await dir.sweep();
    await fs.mkdir(dir.path);
    dir.timer = setInterval(() => void dir.heartbeat(), HEARTBEAT_MS);
    dir.timer.unref();
    return dir;
  }

  /** Removes the folders (and stray files) that processes now gone left under the root; returns how many. */
  async sweep(now = Date.now()): Promise<number> {
    let removed = 0;
    for (const entry of await fs.readdir(this.root).catch(() => [] as string[])) {
      if (entry === this.name) continue;
      const full = path.join(this.root, entry);
      const stat = await fs.stat(full).catch(() => undefined);
      if (!stat || !leftByGoneProcess(entry, stat.mtimeMs, STALE_AFTER_MS, now)) continue;
      await fs.rm(full, { recursive: true, force: true });
      removed++;
    }
    if (removed > 0) this.logger.info({ removed }, 'removed uploads left by processes that are gone');
    return removed;
  }

  private async heartbeat(): Promise<void> {
    const now = new Date();
    try {
      await fs.mkdir(this.path, { recursive: true }); // back if an operator cleared tmp/ by hand
      await fs.utimes(this.path, now, now);
      await this.sweep(now.getTime());
    } catch (err) {
      this.logger.warn({ err }, 'could not refresh the upload temp folder');
    }
  }

  /** Stops marking and removes the folder (call once nothing uploads any more). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await fs.rm(this.path, { recursive: true, force: true });
    releaseTaggedName(this.name);
  }
}
