import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Database } from '../../src/data-access/db/database';
import { ImageClaims, claimOwner, type ImageClaim } from '../../src/data-access/db/image-claims';
import { createTestDatabase, type TestDatabase } from '../support/postgres';

/** Long enough that no claim lapses during the test: only a gone owner frees an image. */
const TTL_MS = 60_000;

/**
 * An API process killed mid-upload leaves claims on the images it stored. Every process of the
 * instance may remove images, so a claim names its process: removal drops the claims of processes
 * on this machine (same kernel boot and pid namespace) that no longer run, and only those.
 */
describe.each(['sqlite', 'postgres'] as const)('image claims of processes that are gone, on %s', (dialect) => {
  let dir: string;
  let pg: TestDatabase | undefined;
  let db: Database;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-claims-'));
    if (dialect === 'postgres') pg = await createTestDatabase();
    db = await Database.open(
      dialect === 'postgres'
        ? { databaseUrl: pg!.url, sqliteFile: '' }
        : { sqliteFile: path.join(dir, 'service.sqlite') },
    );
  });
  afterEach(async () => {
    await db.close();
    await pg?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("drops an exited process's claims and an earlier life's of this pid; keeps a live process's, another machine's and its own", async () => {
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid!;
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    const claims: ImageClaim[] = [];
    const claimAs = async (owner: string | undefined, hash: string) => {
      const claim = new ImageClaims(db, TTL_MS, owner).open('upload');
      claims.push(claim);
      await claim.add([hash]);
      return claim;
    };
    try {
      const hash = (d: string) => d.repeat(64);
      const [exited, earlierLife, alive, otherMachine, own] = ['1', '2', '3', '4', '5'].map(hash);
      await claimAs(claimOwner(deadPid), exited);
      await claimAs(claimOwner(process.pid, '000000000000'), earlierLife);
      await claimAs(claimOwner(live.pid!), alive);
      await claimAs(`ffffffffffff.${deadPid}.000000000000`, otherMachine);
      const ownClaim = await claimAs(undefined, own);
      const mine = new ImageClaims(db, TTL_MS);

      const removed: string[] = [];
      const gone = await mine.removeUnreferenced(
        [exited, earlierLife, alive, otherMachine, own],
        async (h) => void removed.push(...h),
      );
      expect(gone.sort()).toEqual([exited, earlierLife].sort());
      expect(removed.sort()).toEqual([exited, earlierLife].sort());
      const left = await db.kysely.selectFrom('image_claims').select('image_hash').orderBy('image_hash').execute();
      expect(left.map((r) => r.image_hash)).toEqual([alive, otherMachine, own]);

      // Released, its own image goes like any other.
      await ownClaim.release();
      expect(await mine.removeUnreferenced([own], async () => undefined)).toEqual([own]);
    } finally {
      live.kill('SIGKILL');
      await Promise.all(claims.map((c) => c.release())); // stops their renewal timers
    }
  });
});
