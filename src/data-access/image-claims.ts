import type { Database } from './database';

/**
 * How long an upload's claim on its images lasts without being renewed: longer than any upload
 * takes between two batches (each renews it). A process killed mid-upload leaves claims that
 * lapse after this, and the images become ordinary orphans.
 */
export const IMAGE_CLAIM_TTL_MS = 60 * 60 * 1000;

/**
 * Coordinates storing example images with removing unreferenced ones, across every process of the
 * instance on any machine (it replaces a lock that lived inside the one API process). An upload
 * claims each image's hash in the database before it writes the file, and drops the claim once
 * examples reference the image (or it gave up). Removal decides, in one write transaction, which
 * images neither an example nor a live claim holds, and deletes their files inside that
 * transaction: a claim is either committed before (and the image is kept) or waits until the
 * files are gone (and the upload writes its image again, since ImageStore.put finds no file).
 */
export class ImageClaims {
  constructor(private readonly db: Database) {}

  /** A new claim (one per upload) under `claimId`: add the images as they are about to be stored. */
  open(claimId: string): ImageClaim {
    return new ImageClaim(this.db, claimId);
  }

  /**
   * Of `hashes`, removes (with `removeFiles`) those no example references and no live claim holds,
   * and returns them. Expired claims are dropped on the way.
   */
  async removeUnreferenced(hashes: string[], removeFiles: (hashes: string[]) => Promise<void>, now = Date.now()): Promise<string[]> {
    const unique = [...new Set(hashes)];
    if (unique.length === 0) return [];
    return this.db.write(async (trx) => {
      await trx.deleteFrom('image_claims').where('expires', '<=', new Date(now).toISOString()).execute();
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

/** One upload's claim on the images it stores. */
export class ImageClaim {
  private renewed = 0;

  constructor(
    private readonly db: Database,
    readonly claimId: string,
  ) {}

  /**
   * Claims the images until now + IMAGE_CLAIM_TTL_MS. The claim's earlier images are renewed with
   * them once a quarter of the TTL has passed, so each call costs only its own rows.
   */
  async add(hashes: string[], now = Date.now()): Promise<void> {
    const expires = new Date(now + IMAGE_CLAIM_TTL_MS).toISOString();
    const renew = this.renewed > 0 && now - this.renewed >= IMAGE_CLAIM_TTL_MS / 4;
    if (this.renewed === 0 || renew) this.renewed = now;
    await this.db.write(async (trx) => {
      if (renew) await trx.updateTable('image_claims').set({ expires }).where('claim_id', '=', this.claimId).execute();
      const unique = [...new Set(hashes)];
      for (let start = 0; start < unique.length; start += 300) {
        await trx
          .insertInto('image_claims')
          .values(unique.slice(start, start + 300).map((image_hash) => ({ claim_id: this.claimId, image_hash, expires })))
          .onConflict((oc) => oc.columns(['image_hash', 'claim_id']).doUpdateSet({ expires }))
          .execute();
      }
    });
  }

  /** Drops the claim (its images are referenced by examples now, or the upload gave up). */
  async release(): Promise<void> {
    await this.db.kysely.deleteFrom('image_claims').where('claim_id', '=', this.claimId).execute();
  }
}
