import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
const DIRECTORIES = 60;

/**
 * One process binding DIRECTORIES new data directories under `root`, in order, from `startAt` (ms
 * since the epoch) on, so that several such processes race on each directory. Prints a JSON array
 * of the failures' messages.
 */
function binder(root: string, instanceId: string, startAt: number): Promise<string[]> {
  const script = `
    const path = require('node:path');
    const { Database } = require('./src/data-access/db/database');
    const { bindDataDirectory } = require('./src/data-access/files/data-directory');
    (async () => {
      const db = await Database.open({ sqliteFile: path.join(${JSON.stringify(root)}, 'db-' + process.pid + '.sqlite') });
      while (Date.now() < ${startAt}) {}
      const failures = [];
      for (let i = 0; i < ${DIRECTORIES}; i++) {
        await bindDataDirectory(path.join(${JSON.stringify(root)}, 'dir-' + i), ${JSON.stringify(instanceId)}, db)
          .catch((error) => failures.push('dir-' + i + ': ' + error.message));
      }
      await db.close();
      console.log(JSON.stringify(failures));
    })();`;
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) =>
    child.once('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out) as string[]) : reject(new Error(`exit ${code}`)),
    ),
  );
}

/**
 * Several processes start on one new data directory at once (npm start's API and worker, the
 * processes of a cluster): each must find the instance id the first one wrote, never a file that
 * exists but is not written yet.
 */
describe('binding new data directories from several processes at once', () => {
  let root: string;
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-bind-'));
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it('binds every directory to the instance in every process, never reading an unwritten id', async () => {
    const startAt = Date.now() + 4000; // after every process has loaded
    const failures = await Promise.all(Array.from({ length: 4 }, () => binder(root, 'instance-a', startAt)));
    expect(failures).toEqual([[], [], [], []]);
    for (let i = 0; i < DIRECTORIES; i++) {
      expect(fs.readFileSync(path.join(root, `dir-${i}`, 'instance-id'), 'utf8')).toBe('instance-a\n');
    }
  });
});
