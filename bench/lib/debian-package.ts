import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * A Debian package's files, unpacked (not installed) into a temp folder: `apt-get download` then
 * `dpkg-deb -x`, so benchmarks and the bank builder read packages no one installs, and nothing
 * lands in the repository. Reuses an earlier unpacking. Returns the folder standing for `/`.
 */
export function unpackDebianPackage(name: string): string {
  const root = path.join(os.tmpdir(), 'wvr-debian-packages', name);
  const done = path.join(root, '.unpacked');
  if (fs.existsSync(done)) return path.join(root, 'files');
  fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(root, { recursive: true });
  try {
    execFileSync('apt-get', ['download', name], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    throw new Error(
      `cannot download the Debian package ${name} (apt-get download ${name}; run apt-get update first?): ${(error as Error).message}`,
      { cause: error },
    );
  }
  const deb = fs.readdirSync(root).find((file) => file.endsWith('.deb'));
  if (!deb) throw new Error(`apt-get download ${name} left no .deb file in ${root}`);
  execFileSync('dpkg-deb', ['-x', deb, 'files'], { cwd: root });
  fs.writeFileSync(done, deb);
  return path.join(root, 'files');
}

/** The version of an unpacked package, from its .deb file name. */
export function unpackedVersion(name: string): string {
  const deb = fs.readFileSync(path.join(os.tmpdir(), 'wvr-debian-packages', name, '.unpacked'), 'utf8');
  return decodeURIComponent(deb.split('_')[1] ?? 'unknown');
}
