import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { syntheticTrainingSet } from '../../bench/lib/synthetic-embeddings';
import { HeadCache, headBytes } from '../../src/data-access/files/head-cache';
import { HeadStore } from '../../src/data-access/files/head-store';
import { serializeHead, trainHead, type TrainedHead } from '../../src/ml/heads';

describe('the head cache', () => {
  let dir: string;
  let store: HeadStore;
  const files: string[] = [];
  let head: TrainedHead;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-head-cache-'));
    store = new HeadStore(dir);
    const set = syntheticTrainingSet({ examples: 60, classes: 2, dim: 64, seed: 3, negativeShare: 0.1 });
    head = await trainHead({ ...set, classes: ['a', 'b'] }, { packKey: 'bundled@1', threads: 1 });
    for (let i = 0; i < 4; i++) files.push(await store.write(`c${i}`, 1, serializeHead(head)));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('keeps the loaded heads within its byte budget, evicting the least recently used', async () => {
    const each = headBytes(head);
    expect(each).toBeGreaterThan(0);
    const cache = new HeadCache(store, 2.5 * each);
    const ref = (i: number) => ({ id: i + 1, classifierId: `c${i}`, headFile: files[i] });
    await cache.get(ref(0));
    await cache.get(ref(1));
    await cache.get(ref(0)); // 0 is now the most recently used
    await cache.get(ref(2)); // over budget: 1 goes
    expect(cache.size).toEqual({ entries: 2, bytes: 2 * each });
    const again = cache.get(ref(1)); // evicted, so loaded anew: 0 goes (2 is newer)
    await again;
    expect(cache.size).toEqual({ entries: 2, bytes: 2 * each });
  });

  it('drops the heads no request asked for in maxIdleMs (replaced versions, deleted classifiers), keeping those in use', async () => {
    let clock = 0;
    const cache = new HeadCache(store, undefined, { maxIdleMs: 60_000, now: () => clock });
    const ref = (i: number) => ({ id: i + 1, classifierId: `c${i}`, headFile: files[i] });
    await cache.get(ref(0));
    await cache.get(ref(1));
    clock = 50_000;
    await cache.get(ref(1));
    clock = 100_000; // 0 unused for 100 s, 1 for 50 s
    await cache.get(ref(2));
    expect(cache.size).toEqual({ entries: 2, bytes: 2 * headBytes(head) });
    clock = 1_000_000;
    await cache.get(ref(2));
    expect(cache.size).toEqual({ entries: 1, bytes: headBytes(head) });
  });

  it('never mixes up two versions that share an id', async () => {
    const cache = new HeadCache(store);
    const first = await cache.get({ id: 7, classifierId: 'c0', headFile: files[0] });
    const second = await cache.get({ id: 7, classifierId: 'c3', headFile: files[3] });
    expect(second).not.toBe(first);
    expect(cache.size.entries).toBe(2);
  });

  it('forgets a head that could not be read, so the next request tries again', async () => {
    const cache = new HeadCache(store);
    await expect(cache.get({ id: 9, classifierId: 'gone', headFile: 'gone/1-x.head' })).rejects.toThrow();
    await new Promise((r) => setImmediate(r));
    expect(cache.size).toEqual({ entries: 0, bytes: 0 });
  });
});
