import type { Database, Queries } from './database';
import { chunks, referencedImageHashes } from './records';

/** A zip a create or update accepted, kept whole until its images are extracted (PendingZipStore). */
export interface NewPendingZip {
  /** Its name in the PendingZipStore. */
  file: string;
  /** The images the request accepted from it: [SHA-256, entry name in the zip] (the checked entry table). */
  entries: Array<[string, string]>;
}

export interface PendingZip extends NewPendingZip {
  id: string;
  classifierId: string;
}

/** Records the request's kept zips in the transaction that records its examples. */
export async function insertPendingZips(
  trx: Queries,
  classifierId: string,
  customerId: string | null,
  zips: NewPendingZip[],
  now: string,
): Promise<void> {
  if (zips.length === 0) return;
  await trx
    .insertInto('pending_zips')
    .values(
      zips.map((z) => ({
        id: z.file,
        classifier_id: classifierId,
        customer_id: customerId,
        file: z.file,
        entries: JSON.stringify(z.entries),
        created: now,
      })),
    )
    .execute();
}

/** The kept zips of the classifier (their rows go with it through the foreign key): return their files to remove. */
export async function pendingFilesOf(trx: Queries, classifierId: string): Promise<string[]> {
  return (await trx.selectFrom('pending_zips').select('file').where('classifier_id', '=', classifierId).execute()).map(
    (r) => r.file,
  );
}

/**
 * Deletes the kept zips of requests sent with the customer id to the owner's classifiers (their
 * examples are deleted in the same transaction) and returns their files to remove.
 */
export async function deleteCustomerPendingZips(trx: Queries, ownerId: string, customerId: string): Promise<string[]> {
  const rows = await trx
    .selectFrom('pending_zips as p')
    .innerJoin('classifiers as c', 'c.id', 'p.classifier_id')
    .select(['p.id', 'p.file'])
    .where('c.owner_id', '=', ownerId)
    .where('p.customer_id', '=', customerId)
    .execute();
  for (const ids of chunks(
    rows.map((r) => r.id),
    500,
  ))
    await trx.deleteFrom('pending_zips').where('id', 'in', ids).execute();
  return rows.map((r) => r.file);
}

/** Zips accepted and not yet extracted, as the worker and a thumbnail of a pending image read them. */
export class PendingZipRepository {
  constructor(private readonly db: Database) {}

  /** The classifier's kept zips, oldest first. */
  async ofClassifier(classifierId: string): Promise<PendingZip[]> {
    const rows = await this.db.kysely
      .selectFrom('pending_zips')
      .select(['id', 'classifier_id', 'file', 'entries'])
      .where('classifier_id', '=', classifierId)
      .orderBy('created')
      .orderBy('id')
      .execute();
    return rows.map((r) => ({
      id: r.id,
      classifierId: r.classifier_id,
      file: r.file,
      entries: JSON.parse(r.entries) as Array<[string, string]>,
    }));
  }

  /** The zip's images are in the image store now (or it is no longer wanted). */
  async remove(id: string): Promise<void> {
    await this.db.write((trx) => trx.deleteFrom('pending_zips').where('id', '=', id).execute());
  }

  /** Of `hashes`, the images an example (of any classifier) references. */
  referenced(hashes: string[]): Promise<Set<string>> {
    return referencedImageHashes(this.db.kysely, hashes);
  }

  /** Of `files`, those a row names. */
  async recorded(files: string[]): Promise<Set<string>> {
    const found = new Set<string>();
    for (const batch of chunks(files, 500)) {
      const rows = await this.db.kysely.selectFrom('pending_zips').select('file').where('file', 'in', batch).execute();
      rows.forEach((r) => found.add(r.file));
    }
    return found;
  }
}
