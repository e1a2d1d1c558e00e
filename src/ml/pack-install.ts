import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * Installs a converted model pack at `<modelsDir>/<name>` atomically: `write` fills a staging
 * directory beside it, which is renamed into place, so a crash never leaves a half-written pack.
 * Concurrent callers each convert and the first rename wins (`isCurrent` tells whether a complete,
 * current pack is already there). Staging directories of processes that died are removed first.
 */
export async function installPackAtomically(options: {
  modelsDir: string;
  name: string;
  isCurrent: () => Promise<boolean>;
  write: (stagingDir: string) => Promise<void>;
}): Promise<void> {
  const { modelsDir, name, isCurrent } = options;
  const stagingPrefix = `.${name}-staging-`;
  await fs.mkdir(modelsDir, { recursive: true });
  await removeAbandonedStaging(modelsDir, stagingPrefix);
  const staging = path.join(modelsDir, `${stagingPrefix}${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await fs.mkdir(staging);
    await options.write(staging);
    await moveIntoPlace(staging, path.join(modelsDir, name), isCurrent);
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
}

/** Replaces `target` with `staging`; an outdated or broken `target` is moved aside first and removed after. */
async function moveIntoPlace(staging: string, target: string, isCurrent: () => Promise<boolean>): Promise<void> {
  if (await isCurrent()) return; // another process finished first
  const retired = `${staging}-retired`;
  try {
    await fs.rename(target, retired);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  try {
    await fs.rename(staging, target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Another process renamed its own pack into place between our two renames.
    if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !(await isCurrent())) throw error;
  } finally {
    await fs.rm(retired, { recursive: true, force: true });
  }
}

async function removeAbandonedStaging(modelsDir: string, prefix: string): Promise<void> {
  for (const entry of await fs.readdir(modelsDir)) {
    const pid = entry.startsWith(prefix) ? Number.parseInt(entry.slice(prefix.length), 10) : NaN;
    if (pid && !isRunning(pid)) await fs.rm(path.join(modelsDir, entry), { recursive: true, force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
