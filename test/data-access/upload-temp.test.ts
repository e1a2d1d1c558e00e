import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UploadTempDir } from '../../src/data-access/files/upload-temp';
import { createLogger } from '../../src/logger';
import { PID_SCOPE } from '../../src/lib/process-tag';

/** A pid scope that is not this process's: another machine, or a container sharing this host name. */
const OTHER = '0'.repeat(12);

const logger = createLogger('silent', 'test');

/**
 * DATA_DIR/tmp is shared by every API process of an instance (API_PROCESSES, other machines on a
 * shared volume): each writes its uploads in its own folder, and a starting process removes only
 * what processes that are gone left behind.
 */
describe('UploadTempDir', () => {
  let root: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'upload-temp-'));
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  const folder = (name: string, options: { ageMinutes?: number; file?: boolean } = {}) => {
    const full = path.join(root, name);
    if (options.file) fs.writeFileSync(full, 'part of an upload');
    else {
      fs.mkdirSync(full);
      fs.writeFileSync(path.join(full, 'upload-0123'), 'part of an upload');
    }
    if (options.ageMinutes !== undefined) {
      const then = new Date(Date.now() - options.ageMinutes * 60_000);
      fs.utimesSync(full, then, then);
    }
  };

  it("keeps live processes' uploads and removes what gone ones left", async () => {
    const host = os.hostname();
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      folder(`${host}@${PID_SCOPE}.${live.pid}-00000001`, { ageMinutes: 120 }); // live here: kept whatever its age
      folder(`${host}@${PID_SCOPE}.${deadPid}-00000002`); // exited here: removed at once
      folder(`${host}@${PID_SCOPE}.${process.pid}-00000003`); // this pid, but not this process's folder: an earlier life's
      folder(`other-host@${OTHER}.1-00000004`, { ageMinutes: 5 }); // another machine's, marked recently: kept
      // Another container with this host name (host networking) whose node is this pid too: not ours to judge by pid.
      folder(`${host}@${OTHER}.${process.pid}-00000006`, { ageMinutes: 5 });
      folder(`other-host@${OTHER}.2-00000005`, { ageMinutes: 20 }); // another machine's, mark stale: removed
      folder('upload-abcdef', { file: true, ageMinutes: 20 }); // an older release's stray upload: removed by age
      folder('upload-fedcba', { file: true }); // …but not a fresh one

      const mine = await UploadTempDir.open(root, logger);
      expect(path.dirname(mine.path)).toBe(root);
      expect(path.basename(mine.path)).toMatch(new RegExp(`^${host}@${PID_SCOPE}\\.${process.pid}-[0-9a-f]{8}$`));
      expect(fs.readdirSync(root).sort()).toEqual(
        [
          `${host}@${PID_SCOPE}.${live.pid}-00000001`,
          `other-host@${OTHER}.1-00000004`,
          `${host}@${OTHER}.${process.pid}-00000006`,
          'upload-fedcba',
          path.basename(mine.path),
        ].sort(),
      );

      // A second process's start (here: another folder of this one) leaves the first one's folder and uploads alone.
      fs.writeFileSync(path.join(mine.path, 'upload-in-flight'), 'half a zip');
      const second = await UploadTempDir.open(root, logger);
      expect(fs.readFileSync(path.join(mine.path, 'upload-in-flight'), 'utf8')).toBe('half a zip');

      await second.close();
      await mine.close();
      expect(fs.existsSync(mine.path)).toBe(false);
      expect(fs.existsSync(second.path)).toBe(false);
      // Once closed, its folder counts as a gone process's: a later start would remove a leftover of it.
      folder(path.basename(mine.path));
      const third = await UploadTempDir.open(root, logger);
      expect(fs.existsSync(mine.path)).toBe(false);
      await third.close();
    } finally {
      live.kill('SIGKILL');
    }
  });
});
