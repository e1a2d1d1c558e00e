import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ImageStore, InvalidImageHashError, MissingImageError } from '../../src/data-access/files/image-store';
import { solidColorJpeg, solidColorPng, BLUE, RED } from '../../fixtures/images';
import { PID_SCOPE } from '../../src/lib/process-tag';

const OTHER = '0'.repeat(12);

/** Every file under `dir`, hidden ones included, relative to it. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

const sha256 = (bytes: Buffer) => crypto.createHash('sha256').update(bytes).digest('hex');

describe('ImageStore', () => {
  let root: string;
  let store: ImageStore;
  let jpeg: Buffer;
  let png: Buffer;

  beforeAll(async () => {
    jpeg = await solidColorJpeg(RED);
    png = await solidColorPng(BLUE);
  });

  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'image-store-'));
    store = new ImageStore(root);
  });

  afterEach(async () => {
    await fs.rm(root, { recursive: true, force: true });
  });

  it('stores an image under its SHA-256 in a two-character fan-out folder', async () => {
    const result = await store.put(jpeg);
    const hash = sha256(jpeg);
    expect(result).toEqual({ hash, bytes: jpeg.length, created: true });
    expect(store.path(hash)).toBe(path.join(root, hash.slice(0, 2), hash));
    expect(await fs.readFile(path.join(root, hash.slice(0, 2), hash))).toEqual(jpeg);
    expect(await listFiles(root)).toEqual([path.join(hash.slice(0, 2), hash)]);
  });

  it('stores the same image once however often it is put, leaving no temp files', async () => {
    const first = await store.put(jpeg);
    const again = await store.put(Buffer.from(jpeg));
    expect(again).toEqual({ ...first, created: false });
    const concurrent = await Promise.all(Array.from({ length: 8 }, () => store.put(png)));
    expect(new Set(concurrent.map((r) => r.hash))).toEqual(new Set([sha256(png)]));
    expect(await listFiles(root)).toEqual([first.hash, sha256(png)].map((h) => path.join(h.slice(0, 2), h)).sort());
  });

  it('makes a fan-out folder again when it was removed after the store first made it', async () => {
    const { hash } = await store.put(jpeg);
    await fs.rm(path.join(root, hash.slice(0, 2)), { recursive: true });
    expect(await store.put(jpeg)).toMatchObject({ hash, created: true });
    expect(await store.read(hash)).toEqual(jpeg);
  });

  it('reads back, reports presence and removes', async () => {
    const { hash } = await store.put(png);
    const other = (await store.put(jpeg)).hash;
    expect(await store.read(hash)).toEqual(png);
    expect(await store.has(hash)).toBe(true);
    await store.remove([hash, sha256(Buffer.from('never stored'))]);
    expect(await store.has(hash)).toBe(false);
    expect(await store.has(other)).toBe(true);
    await expect(store.read(hash)).rejects.toThrow(MissingImageError);
    await expect(store.read(hash)).rejects.toThrow(hash);
  });

  it('refuses anything but 64 lowercase hex characters before touching the file system', async () => {
    const { hash } = await store.put(png);
    const bad = [
      '../../etc/passwd',
      hash.toUpperCase(),
      hash.slice(1),
      `${hash}0`,
      `${hash.slice(0, 62)}/x`,
      '',
      `..${hash.slice(2)}`,
    ];
    for (const candidate of bad) {
      expect(() => store.path(candidate)).toThrow(InvalidImageHashError);
      await expect(store.read(candidate)).rejects.toThrow(InvalidImageHashError);
      await expect(store.has(candidate)).rejects.toThrow(InvalidImageHashError);
    }
    // One bad hash in a batch: nothing is removed.
    await expect(store.remove([hash, '../x'])).rejects.toThrow(InvalidImageHashError);
    expect(await store.has(hash)).toBe(true);
  });

  it('rewrites a file cut short under an image name (as a crash mid-write outside the store could leave)', async () => {
    const hash = sha256(jpeg);
    await fs.mkdir(path.dirname(store.path(hash)), { recursive: true });
    await fs.writeFile(store.path(hash), jpeg.subarray(0, 10));
    expect(await store.put(jpeg)).toEqual({ hash, bytes: jpeg.length, created: true });
    expect(await store.read(hash)).toEqual(jpeg);
  });

  it('leaves no temp file when the final rename fails', async () => {
    const hash = sha256(jpeg);
    // A non-empty folder where the image file belongs: the rename onto it must fail.
    await fs.mkdir(store.path(hash), { recursive: true });
    await fs.writeFile(path.join(store.path(hash), 'blocker'), 'x');
    await expect(store.put(jpeg)).rejects.toThrow();
    expect(await listFiles(root)).toEqual([path.join(hash.slice(0, 2), hash, 'blocker')]);
  });

  it('lists the stored hashes, removing the temp files of crashed writers but not those another process is writing now', async () => {
    const { hash } = await store.put(jpeg);
    const dir = path.dirname(store.path(hash));
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    const temp = async (tag: string, old = false) => {
      const file = path.join(dir, `.${hash}.${tag}.tmp`);
      await fs.writeFile(file, jpeg.subarray(0, 10));
      if (old) await fs.utimes(file, twoHoursAgo, twoHoursAgo);
      return path.basename(file);
    };
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      const kept = [
        await temp(`${os.hostname()}@${PID_SCOPE}.${live.pid}-00000001`, true),
        await temp(`other-machine@${OTHER}.7-00000002`),
      ];
      await temp(`${os.hostname()}@${PID_SCOPE}.${deadPid}-00000003`); // crashed here: removed however young
      await temp(`other-machine@${OTHER}.8-00000004`, true); // another machine's, untouched for two hours
      await temp('0123456789ab', true); // an older release's name: by age

      expect(await store.listHashes()).toEqual([hash]);
      expect(await listFiles(dir)).toEqual([hash, ...kept].sort());
    } finally {
      live.kill('SIGKILL');
    }
  });
});
