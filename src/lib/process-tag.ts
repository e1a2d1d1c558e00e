import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';

/**
 * Names for files and folders that one process owns in a directory other processes share (the data
 * directory on one machine, or a volume several machines mount): `<host>@<pid scope>.<pid>-<random>`.
 * The name alone tells another process whether its owner can still be alive, so leftovers of a
 * crashed process can be removed without touching work another live process has in flight.
 */
export interface ProcessTag {
  host: string;
  scope: string;
  pid: number;
}

/**
 * Which processes' pids this one can check: those of the same kernel boot and pid namespace
 * (Linux); elsewhere, those of the same host name. Not the host name alone on Linux: containers
 * can share one (host networking) and still number their processes apart (often each its pid 1).
 */
export const PID_SCOPE = (() => {
  let basis: string;
  try {
    basis = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() + fs.readlinkSync('/proc/self/ns/pid');
  } catch {
    basis = os.hostname();
  }
  return crypto.createHash('sha256').update(basis).digest('hex').slice(0, 12);
})();

const TAGGED = /^(.+)@([0-9a-f]{12})\.(\d+)-([0-9a-f]{8})$/;

/** This process's live tagged names: a name with this host and pid that is not in it was left by an earlier process with the same pid. */
const ownLive = new Set<string>();

function hostName(): string {
  return os.hostname().replace(/[^A-Za-z0-9.-]/g, '_') || 'localhost';
}

/** A new name `<host>@<pid scope>.<pid>-<8 hex>` for something this process is about to create; see `release`. */
export function claimTaggedName(): string {
  const name = `${hostName()}@${PID_SCOPE}.${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  ownLive.add(name);
  return name;
}

/** This process no longer uses the name (it removed what it named). */
export function releaseTaggedName(name: string): void {
  ownLive.delete(name);
}

/** The owner a tagged name records; undefined for names not made by `claimTaggedName`. */
export function parseTaggedName(name: string): ProcessTag | undefined {
  const match = TAGGED.exec(name);
  return match ? { host: match[1], scope: match[2], pid: Number(match[3]) } : undefined;
}

/**
 * Whether the tagged `name` (last changed at `mtimeMs`) was left by a process that is gone.
 * - Same pid scope (PID_SCOPE): exactly when its pid no longer runs. Its pid running but being this
 *   process's own while the name is not one this process holds means an earlier process with the
 *   same pid (a restarted container keeps its host name and often its pid) left it.
 * - Another scope, whose processes this one cannot see: when untouched for `staleAfterMs`; owners
 *   that live longer than that refresh their names' mtime (see UploadTempDir).
 * - A name that is not tagged (an older release's): by age alone.
 */
export function leftByGoneProcess(name: string, mtimeMs: number, staleAfterMs: number, now = Date.now()): boolean {
  const tag = parseTaggedName(name);
  if (tag && tag.scope === PID_SCOPE) {
    if (tag.pid === process.pid) return !ownLive.has(name);
    return !isRunning(tag.pid);
  }
  return now - mtimeMs > staleAfterMs;
}

/** Whether a process of this pid scope with that pid runs (one we may not signal runs too). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
