import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureBundledPack } from '../../src/ml/bundled-pack';
import { PID_SCOPE } from '../../src/lib/process-tag';

const OTHER = '0'.repeat(12);

const ROOT = path.resolve(__dirname, '..', '..');

/**
 * Several processes (API processes, workers, other machines on a shared volume) prepare the same
 * models directory on a first start: one converts, the others use its pack, and nobody removes
 * another live process's work in progress.
 */
describe('installing model packs from several processes', () => {
  let scratch: string;
  beforeEach(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'pack-install-'));
  });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('leaves the staging folder of a live process on another machine, and removes those of gone processes', async () => {
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    const hourAndMinuteAgo = new Date(Date.now() - 61 * 60_000);
    const staging = (name: string) => path.join(scratch, `.bundled-staging-${name}`);
    // Another machine's process converting right now: its pid means nothing here.
    fs.mkdirSync(staging(`other-machine@${OTHER}.${process.pid}-0123abcd`));
    fs.mkdirSync(staging(`other-machine@${OTHER}.1-4567cdef`));
    // Another machine's, untouched for over an hour: its process is gone.
    fs.mkdirSync(staging(`third-machine@${OTHER}.2-89abcdef`));
    fs.utimesSync(staging(`third-machine@${OTHER}.2-89abcdef`), hourAndMinuteAgo, hourAndMinuteAgo);
    // This machine's, with a pid that has exited.
    fs.mkdirSync(staging(`${os.hostname()}@${PID_SCOPE}.${deadPid}-00112233`));

    await ensureBundledPack(scratch);
    expect(fs.readdirSync(scratch).sort()).toEqual(
      [
        `.bundled-staging-other-machine@${OTHER}.1-4567cdef`,
        `.bundled-staging-other-machine@${OTHER}.${process.pid}-0123abcd`,
        'bundled',
      ].sort(),
    );
  });

  it('gives four processes preparing an empty models folder together the same pack files, never replaced under them, and leaves nothing over', async () => {
    // Each process prepares both packs the way a starting service does, then reports the model files' inodes.
    const script = `
      const fs = require('node:fs');
      const { ensureBundledPack } = require('./src/ml/bundled-pack');
      const { ensureDetectorPack } = require('./src/ml/detector/detector-pack');
      const { loadBestPack } = require('./src/ml/model-pack');
      (async () => {
        const dir = process.argv[1];
        await ensureBundledPack(dir);
        const detector = await ensureDetectorPack(dir);
        const pack = await loadBestPack(dir);
        const ino = (file) => fs.statSync(file).ino;
        process.stdout.write(JSON.stringify({ bundled: ino(pack.modelPath), detector: ino(detector.modelPath) }));
      })().catch((error) => { console.error(error); process.exit(1); });
    `;
    const run = () =>
      new Promise<{ bundled: number; detector: number }>((resolve, reject) => {
        const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script, scratch], {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.once('exit', (code) =>
          code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`a preparing process exited with ${code}`)),
        );
      });
    const reports = await Promise.all([run(), run(), run(), run()]);

    // The same files for all: no process replaced a pack another had found current.
    expect(new Set(reports.map((r) => r.bundled)).size).toBe(1);
    expect(new Set(reports.map((r) => r.detector)).size).toBe(1);
    expect(fs.statSync(path.join(scratch, 'bundled', 'model.onnx')).ino).toBe(reports[0].bundled);
    expect(fs.statSync(path.join(scratch, 'detector', 'model.onnx')).ino).toBe(reports[0].detector);
    // No staging folder, retired pack or lock left behind.
    expect(fs.readdirSync(scratch).sort()).toEqual(['bundled', 'detector']);
  });
});
