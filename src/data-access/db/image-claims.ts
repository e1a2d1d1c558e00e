import crypto from 'node:crypto';
import { isRunning, PID_SCOPE } from '../../lib/process-tag';
import type { Database } from './database';
import { chunks, heldImageHashes } from './records';

/** Tells this process apart from an earlier one with the same pid (a restarted container's). */
const PROCESS_TOKEN = crypto.randomBytes(6).toString('hex');
const OWNER_TAG = /^([0-9a-f]{12})\.(\d+)\.([0-9a-f]{12})\//;
/**
 * Image hashes removal decides on and removes per transaction: 500 files go in about 40 ms on a
 * local disk under load (measured: 10 000 in 0.83 s at load average 10 on 2 cores), a few seconds
 * on slow network storage, far below the stall timeout; also the IN-list size the queries use.
 */
const REMOVAL_CHUNK = 500;

/** The tag a claim id starts with: `<pid scope>.<pid>.<token>`, by default this process's. */
export function claimOwner(pid = process.pid, token = PROCESS_TOKEN): string {
  return `${PID_SCOPE}.${pid}.${token}`;
}

/** Whether the claim was made by a process of this pid scope that no longer runs (never guessed for other scopes). */
function ownerIsGone(claimId: string): boolean {
  const tag = OWNER_TAG.exec(claimId);
  if (!tag || tag[1] !== PID_SCOPE) return false;
  const pid = Number(tag[2]);
  if (pid === process.pid) return tag[3] !== PROCESS_TOKEN;
  return !isRunning(pid);
}

/**
 * Coordinates storing example images with removing unreferenced ones, across every process of the
 * instance on any machine (it replaces a lock that lived inside the one API process). An upload
 * claims each image's hash in the database before it writes the file, and drops the claim once
 * examples reference the image (or it gave up). Removal decides, in a write transaction (one per
 * chunk of images), which images neither an example nor a live claim holds, and deletes their files
 * inside that transaction: a claim is either committed before (and the image is kept) or waits until the
 * files are gone (and the upload writes its image again, since ImageStore.put finds no file).
 *
 * A claim lives `ttlMs` (UPLOAD_CLAIM_TTL_MS) and its upload renews it every quarter of that while
 * it runs, so the claims of a process killed mid-upload lapse soon after, and its images become
 * ordinary orphans that the next sweep removes. Sooner on the same machine: claim ids name their
 * process (claimOwner), and removal drops the claims of processes of its pid scope that no longer
 * run, so a start after a crash removes the crashed upload's images at once.
 *
 * Since migration 0006 an upload writes no image file: it keeps its zips whole (PendingZipStore) and
 * the worker extracts the images of recorded examples, which removal never takes. Only processes of
 * an earlier release, during a rolling upgrade, still claim images; removal keeps honouring their
 * claims. `open` (the claiming side) then has no caller left in the service and can go.
 */
export class ImageClaims {
  /** @param owner the tag this instance's claims carry (claimOwner); another process's only in tests */
  constructor(
    private readonly db: Database,
    readonly ttlMs: number,
    private readonly owner = claimOwner(),
  ) {}

  /** A new claim (one per upload) under `claimId`; release() it when the upload ends, whatever the outcome. */
  open(claimId: string): ImageClaim {
    return new ImageClaim(this.db, `${this.owner}/${claimId}`, this.ttlMs);
  }

  /**
   * Of `hashes`, removes (with `removeFiles`) those no example references and no live claim holds,
   * with their cached embeddings, and returns them. Expired claims, and those of processes of this
   * pid scope that no longer run, are dropped first. One transaction per REMOVAL_CHUNK hashes: the
   * write lock (and the session, idle while the files go: see DatabaseTarget.stallTimeoutMs) is
   * held for one chunk's files, not for a whole classifier's.
   */
  async removeUnreferenced(
    hashes: string[],
    removeFiles: (hashes: string[]) => Promise<void>,
    now = Date.now(),
  ): Promise<string[]> {
    const unique = [...new Set(hashes)];
    if (unique.length === 0) return [];
    await this.db.write(async (trx) => {
      await trx.deleteFrom('image_claims').where('expires', '<=', new Date(now).toISOString()).execute();
      const local = await trx
        .selectFrom('image_claims')
        .select('claim_id')
        .distinct()
        .where('claim_id', 'like', `${PID_SCOPE}.%`)
        .execute();
      const gone = local.map((r) => r.claim_id).filter(ownerIsGone);
      for (const batch of chunks(gone, 500))
        await trx.deleteFrom('image_claims').where('claim_id', 'in', batch).execute();
    });
    const removed: string[] = [];
    for (const chunk of chunks(unique, REMOVAL_CHUNK)) {
      const doomed = await this.db.write(async (trx) => {
        const held = await heldImageHashes(trx, chunk, now);
        const unheld = chunk.filter((h) => !held.has(h));
        if (unheld.length > 0) await trx.deleteFrom('embeddings').where('hash', 'in', unheld).execute();
        await removeFiles(unheld);
        return unheld;
      });
      removed.push(...doomed);
    }
    return removed;
  }
}

/** One upload's claim on the images it stores. */
export class ImageClaim {
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly db: Database,
    readonly claimId: string,
    private readonly ttlMs: number,
  ) {}

  /** Claims the images until now + TTL, and from the first call renews the whole claim every TTL/4 until release(). */
  async add(hashes: string[], now = Date.now()): Promise<void> {
    const expires = new Date(now + this.ttlMs).toISOString();
    const unique = [...new Set(hashes)];
    await this.db.write(async (trx) => {
      for (let start = 0; start < unique.length; start += 300) {
        await trx
          .insertInto('image_claims')
          .values(
            unique.slice(start, start + 300).map((image_hash) => ({ claim_id: this.claimId, image_hash, expires })),
          )
          .onConflict((oc) => oc.columns(['image_hash', 'claim_id']).doUpdateSet({ expires }))
          .execute();
      }
    });
    if (!this.timer) {
      this.timer = setInterval(() => void this.renew().catch(() => undefined), this.ttlMs / 4);
      this.timer.unref();
    }
  }

  /** Extends every image of the claim to now + TTL. */
  async renew(now = Date.now()): Promise<void> {
    const expires = new Date(now + this.ttlMs).toISOString();
    await this.db.kysely.updateTable('image_claims').set({ expires }).where('claim_id', '=', this.claimId).execute();
  }

  /** Drops the claim (its images are referenced by examples now, or the upload gave up). */
  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.db.kysely.deleteFrom('image_claims').where('claim_id', '=', this.claimId).execute();
  }
}
