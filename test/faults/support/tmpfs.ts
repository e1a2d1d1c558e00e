import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Why a small tmpfs cannot be mounted here (not root, or a container without the right to
 * mount), found by trying once; undefined when it can.
 */
export function tmpfsUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root (CI runs as root)';
  try {
    SmallDisk.mount(1).unmount();
    return undefined;
  } catch (error) {
    return `mount -t tmpfs failed: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`;
  }
}

/** A small tmpfs mounted on a fresh folder: a disk that fills up for real. Needs root. */
export class SmallDisk {
  private constructor(readonly dir: string) {}

  static mount(megabytes: number): SmallDisk {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-small-disk-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${megabytes}m`, 'tmpfs', dir], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
    } catch (error) {
      fs.rmdirSync(dir);
      throw error;
    }
    return new SmallDisk(dir);
  }

  freeBytes(): number {
    const s = fs.statfsSync(this.dir);
    return s.bavail * s.bsize;
  }

  /** Writes a filler file until the disk refuses more (ENOSPC); returns its path (delete it to free the space). */
  fill(): string {
    const filler = path.join(this.dir, 'filler');
    const fd = fs.openSync(filler, 'w');
    const block = Buffer.alloc(64 * 1024, 7);
    try {
      // A write that does not fit whole writes what fits; the next one fails with ENOSPC.
      for (;;) fs.writeSync(fd, block);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
    } finally {
      fs.closeSync(fd);
    }
    return filler;
  }

  unmount(): void {
    execFileSync('umount', [this.dir]);
    fs.rmdirSync(this.dir);
  }
}
