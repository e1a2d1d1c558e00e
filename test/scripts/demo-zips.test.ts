import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const ROOT = path.resolve(__dirname, '..', '..');

describe('npm run demo:zips', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-demo-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes files readable by all and writable by the owner only (0644), also over a world-writable one of an earlier run', async () => {
    fs.writeFileSync(path.join(dir, 'circles.zip'), 'an earlier run');
    fs.chmodSync(path.join(dir, 'circles.zip'), 0o666);
    // The script as the npm script runs it, from source.
    await promisify(execFile)(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'scripts', 'make-demo-zips.ts'), dir],
      { cwd: ROOT },
    );
    const modes = Object.fromEntries(
      fs
        .readdirSync(dir)
        .sort()
        .map((name) => [name, (fs.statSync(path.join(dir, name)).mode & 0o777).toString(8)]),
    );
    expect(modes).toEqual({
      'circle.jpg': '644',
      'circles.zip': '644',
      'noise.zip': '644',
      'squares.zip': '644',
      'stripes.jpg': '644',
      'stripes.zip': '644',
    });
    expect(fs.statSync(path.join(dir, 'circles.zip')).size).toBeGreaterThan(1000);
  });
});
