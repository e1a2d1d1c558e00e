import fs from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { claimTaggedName, leftByGoneProcess, releaseTaggedName } from '../lib/process-tag';

/**
 * How long a holder may go without refreshing the install lock before another process takes it
 * over (proper-lockfile refreshes the lock's mtime every half of it). A conversion takes well under
 * a second of mostly asynchronous work, so only a dead holder goes silent this long.
 */
const LOCK_STALE_MS = 30_000;
/** Waits for the lock for about two minutes: past one stale period plus a slow conversion. */
const LOCK_RETRIES = { retries: 240, factor: 1, minTimeout: 500, maxTimeout: 500 };
/** A staging directory of another machine untouched this long is a dead process's: converting takes seconds. */
const STAGING_STALE_MS = 60 * 60 * 1000;

/**
 * Installs a converted model pack at `<modelsDir>/<name>` atomically: `write` fills a staging
 * directory beside it, which is renamed into place, so a crash never leaves a half-written pack.
 * Processes starting together (API processes, workers, other machines on a shared volume) take
 * the lock `<modelsDir>/.<name>.lock` in turn: the first converts, the others find the pack
 * current (`isCurrent`) and leave it as it is, so a pack another process is loading is never
 * moved. Staging directories of processes that died are removed first.
 */
export async function installPackAtomically(options: {
  modelsDir: string;
  name: string;
  isCurrent: () => Promise<boolean>;
  write: (stagingDir: string) => Promise<void>;
}): Promise<void> {
  const { modelsDir, name, isCurrent } = options;
  await fs.mkdir(modelsDir, { recursive: true });
  const release = await lockfile.lock(path.join(modelsDir, name), {
    realpath: false,
    lockfilePath: path.join(modelsDir, `.${name}.lock`),
    stale: LOCK_STALE_MS,
    retries: LOCK_RETRIES,
    // Taken over as stale (this process stalled): the rename below still checks isCurrent first.
    onCompromised: () => undefined,
  });
  try {
    if (await isCurrent()) return; // another process installed it while this one waited
    const stagingPrefix = `.${name}-staging-`;
    await removeAbandonedStaging(modelsDir, stagingPrefix);
    const tag = claimTaggedName();
    const staging = path.join(modelsDir, `${stagingPrefix}${tag}`);
    try {
      await fs.mkdir(staging);
      await options.write(staging);
      await moveIntoPlace(staging, path.join(modelsDir, name), isCurrent);
    } finally {
      await fs.rm(staging, { recursive: true, force: true });
      releaseTaggedName(tag);
    }
  } finally {
    await release().catch(() => undefined);
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
    // Another process renamed its own pack into place between our two renames (it took the lock as stale).
    if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !(await isCurrent())) throw error;
  } finally {
    await fs.rm(retired, { recursive: true, force: true });
  }
}

/** Removes staging directories whose process is gone (see leftByGoneProcess); a live one's, on any machine, stays. */
async function removeAbandonedStaging(modelsDir: string, prefix: string): Promise<void> {
  for (const entry of await fs.readdir(modelsDir)) {
    if (!entry.startsWith(prefix)) continue;
    const full = path.join(modelsDir, entry);
    const stat = await fs.stat(full).catch(() => undefined);
    if (!stat) continue;
    const name = entry.slice(prefix.length).replace(/-retired$/, '');
    if (leftByGoneProcess(name, stat.mtimeMs, STAGING_STALE_MS)) await fs.rm(full, { recursive: true, force: true });
  }
}
