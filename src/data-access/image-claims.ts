import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import type { Database } from './database';

/**
 * How long an upload's claim on its images lasts without being renewed: longer than any upload
 * takes between two batches (each renews it). The claims of a process killed mid-upload are
 * dropped by the next removal on its machine (see ownerIsGone); elsewhere they lapse after this,
 * and the images become ordinary orphans, removed at the next start.
 */
export const IMAGE_CLAIM_TTL_MS = 60 * 60 * 1000;

/**
 * Which processes' pids this one can check: those of the same kernel boot and pid namespace
 * (Linux); elsewhere, those of the same host name. Not the host name alone on Linux: containers
 * can share one (host networking) and still number their processes apart.
 */
const PID_SCOPE = (() => {
  let basis: string;
  try {
    basis = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() + fs.readlinkSync('/proc/self/ns/pid');
  } catch {
    basis = os.hostname();
  }
  return crypto.createHash('sha256').update(basis).digest('hex').slice(0, 12);
})();
/** Tells this process apart from an earlier one with the same pid (a restarted container's). */
const PROCESS_TOKEN = crypto.randomBytes(6).toString('hex');
const OWNER_TAG = /^([0-9a-f]{12})\.(\d+)\.([0-9a-f]{12})\//;

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
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'EPERM';
  }
}

/**
 * Coordinates storing example images with removing unreferenced ones, across every process of the
 * instance on any machine (it replaces a lock that lived inside the one API process). An upload
 * claims each image's hash in the database before it writes the file, and drops the claim once
 * examples reference the image (or it gave up). Removal decides, in one write transaction, which
 * images neither an example nor a live claim holds, and deletes their files inside that
 * transaction: a claim is either committed before (and the image is kept) or waits until the
 * files are gone (and the upload writes its image again, since ImageStore.put finds no file).
 * Claim ids name their process (claimOwner): removal drops the claims of processes of its pid scope
 * that no longer run (an API killed mid-upload), so their images go at once; other machines'
 * claims lapse after IMAGE_CLAIM_TTL_MS.
 */
export class ImageClaims {
  /** @param owner the tag this instance's claims carry (claimOwner); another process's only in tests */
  constructor(
    private readonly db: Database,
    private readonly owner = claimOwner(),
  ) {}

  /** Claims the images (and renews the claim's earlier ones) until now + IMAGE_CLAIM_TTL_MS. */
  async claim(upload: string, hashes: string[], now = Date.now()): Promise<void> {
    const claimId = `${this.owner}/${upload}`;
    const expires = new Date(now + IMAGE_CLAIM_TTL_MS).toISOString();
    await this.db.write(async (trx) => {
      await trx.updateTable('image_claims').set({ expires }).where('claim_id', '=', claimId).execute();
      const unique = [...new Set(hashes)];
      for (let start = 0; start < unique.length; start += 300) {
        await trx
          .insertInto('image_claims')
          .values(unique.slice(start, start + 300).map((image_hash) => ({ claim_id: claimId, image_hash, expires })))
          .onConflict((oc) => oc.columns(['image_hash', 'claim_id']).doUpdateSet({ expires }))
          .execute();
      }
    });
  }

  /** Drops the claim (its images are referenced by examples now, or the upload gave up). */
  async release(upload: string): Promise<void> {
    await this.db.kysely.deleteFrom('image_claims').where('claim_id', '=', `${this.owner}/${upload}`).execute();
  }

  /**
   * Of `hashes`, removes (with `removeFiles`) those no example references and no live claim holds,
   * and returns them. Expired claims, and those of processes of this pid scope that no longer
   * run, are dropped on the way.
   */
  async removeUnreferenced(hashes: string[], removeFiles: (hashes: string[]) => Promise<void>, now = Date.now()): Promise<string[]> {
    const unique = [...new Set(hashes)];
    if (unique.length === 0) return [];
    return this.db.write(async (trx) => {
      await trx.deleteFrom('image_claims').where('expires', '<=', new Date(now).toISOString()).execute();
      const local = await trx.selectFrom('image_claims').select('claim_id').distinct().where('claim_id', 'like', `${PID_SCOPE}.%`).execute();
      const gone = local.map((r) => r.claim_id).filter(ownerIsGone);
      for (let start = 0; start < gone.length; start += 500) {
        await trx.deleteFrom('image_claims').where('claim_id', 'in', gone.slice(start, start + 500)).execute();
      }
      const held = new Set<string>();
      for (let start = 0; start < unique.length; start += 500) {
        const chunk = unique.slice(start, start + 500);
        const referenced = await trx.selectFrom('examples').select('image_hash').distinct().where('image_hash', 'in', chunk).execute();
        const claimed = await trx.selectFrom('image_claims').select('image_hash').distinct().where('image_hash', 'in', chunk).execute();
        for (const row of [...referenced, ...claimed]) held.add(row.image_hash);
      }
      const doomed = unique.filter((h) => !held.has(h));
      await removeFiles(doomed);
      return doomed;
    });
  }
}
