import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ClassifierRepository } from '../../src/data-access/db/classifier-repository';
import { VersionRepository } from '../../src/data-access/db/version-repository';
import { Database } from '../../src/data-access/db/database';
import { HeadStore } from '../../src/data-access/files/head-store';
import { removeOrphanHeads } from '../../src/domain/ingest-examples';
import type { VersionLeaseReader } from '../../src/data-access/redis/version-leases';
import type { ServiceContext } from '../../src/domain/service-context';

describe('head files no version names', () => {
  let dir: string;
  let db: Database;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'wvr-heads-'));
    db = await Database.open({ sqliteFile: path.join(dir, 'service.sqlite') });
  });
  afterEach(async () => {
    await db.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('are removed once old enough; a published head and a fresh unpublished one stay', async () => {
    const heads = new HeadStore(path.join(dir, 'heads'));
    const classifiers = new ClassifierRepository(db);
    const versions = new VersionRepository(db);
    const now = new Date().toISOString();
    await classifiers.create({
      id: 'c_1',
      ownerId: 'o',
      name: 'c',
      examples: [{ className: 'a', imageHash: 'a'.repeat(64) }],
      customerId: null,
      now,
    });
    const published = await heads.write('c_1', 1, Buffer.from('published'));
    await versions.publishVersion({
      classifierId: 'c_1',
      generation: 1,
      headFile: published,
      classes: ['a'],
      packKey: 'p@1',
      evaluation: {},
      examples: 1,
      exampleIds: [],
      now,
    });
    const killedRun = await heads.write('c_1', 2, Buffer.from('never published'));
    const old = new Date(Date.now() - 20 * 60_000);
    await fs.utimes(heads.resolve(killedRun), old, old);
    await fs.utimes(heads.resolve(published), old, old);
    const inFlight = await heads.write('c_1', 3, Buffer.from('being published right now'));

    // No classify request holds a version here (leases are tested in test/service/version-leases.test.ts).
    const leases: VersionLeaseReader = { held: async () => new Set<number>() };
    const ctx = { heads, classifiers, versions, leases } as unknown as ServiceContext;
    expect(await removeOrphanHeads(ctx, 10 * 60_000)).toBe(1);
    await expect(fs.stat(heads.resolve(killedRun))).rejects.toThrow(/ENOENT/);
    expect((await heads.read(published)).toString()).toBe('published');
    expect((await heads.read(inFlight)).toString()).toBe('being published right now');
  });
});
