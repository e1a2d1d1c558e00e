import type { Queries } from './database';
import { chunks } from './records';

// Removing versions for good, inside the caller's write transaction: shared by the customer-data
// deletion (classifier repository) and by publish, activation and failure (version repository).

/** Records that no process may serve these versions' heads again (see forgotten_heads). */
export async function logForgottenHeads(
  trx: Queries,
  classifierId: string,
  versionIds: number[],
  now: string,
): Promise<void> {
  for (const ids of chunks(versionIds)) {
    await trx
      .insertInto('forgotten_heads')
      .values(ids.map((version_id) => ({ version_id, classifier_id: classifierId, forgotten: now })))
      .execute();
  }
}

/**
 * Deletes versions of one classifier with everything that describes them (classes, evaluation,
 * example lists, marks), logs them as forgotten, and returns their head files for the
 * caller to delete once the transaction is committed. The history of current-version changes
 * keeps naming them (ids and times only): it tells which version answered when. The caller makes
 * sure none of them stays the classifier's current version.
 */
export async function removeVersions(
  trx: Queries,
  classifierId: string,
  versionIds: number[],
  now: string,
): Promise<string[]> {
  if (versionIds.length === 0) return [];
  const headFiles: string[] = [];
  for (const ids of chunks(versionIds)) {
    const rows = await trx
      .selectFrom('versions')
      .select('head_file')
      .where('classifier_id', '=', classifierId)
      .where('id', 'in', ids)
      .execute();
    headFiles.push(...rows.map((r) => r.head_file));
    await trx.deleteFrom('version_examples').where('version_id', 'in', ids).execute();
    await trx.deleteFrom('pruned_versions').where('version_id', 'in', ids).execute();
    await trx.deleteFrom('versions_to_remove').where('version_id', 'in', ids).execute();
    await trx.deleteFrom('version_reviews').where('version_id', 'in', ids).execute();
    await trx.deleteFrom('versions').where('classifier_id', '=', classifierId).where('id', 'in', ids).execute();
  }
  await logForgottenHeads(trx, classifierId, versionIds, now);
  return headFiles;
}

/**
 * Removes the classifier's versions marked for removal (trained on deleted customer data) that
 * are no longer its current version: a version without the data replaced them, or another was activated.
 */
export async function removeReplacedVersions(trx: Queries, classifierId: string, now: string): Promise<string[]> {
  const current = await trx
    .selectFrom('classifiers')
    .select('current_version_id')
    .where('id', '=', classifierId)
    .executeTakeFirst();
  const marked = await trx
    .selectFrom('versions_to_remove')
    .select('version_id')
    .where('classifier_id', '=', classifierId)
    .execute();
  const replaced = marked.map((r) => r.version_id).filter((id) => id !== current?.current_version_id);
  return removeVersions(trx, classifierId, replaced, now);
}

/** Whether the version is marked for removal (it serves only until the classifier has a version without the deleted data). */
export async function isMarkedForRemoval(trx: Queries, versionId: number): Promise<boolean> {
  return (
    (await trx
      .selectFrom('versions_to_remove')
      .select('version_id')
      .where('version_id', '=', versionId)
      .executeTakeFirst()) !== undefined
  );
}

/**
 * Deletes the classifier's retired examples that no remaining version uses (nothing can bring
 * them back), and returns their image hashes for the image store's garbage collection.
 */
export async function deleteUnusedRetiredExamples(trx: Queries, classifierId: string): Promise<string[]> {
  const orphans = await trx
    .selectFrom('examples as e')
    .innerJoin('retired_examples as r', 'r.example_id', 'e.id')
    .select(['e.id', 'e.image_hash'])
    .where('r.classifier_id', '=', classifierId)
    .where((eb) =>
      eb.not(
        eb.exists(
          eb.selectFrom('version_examples as ve').select('ve.example_id').whereRef('ve.example_id', '=', 'e.id'),
        ),
      ),
    )
    .execute();
  for (const ids of chunks(
    orphans.map((e) => e.id),
    500,
  )) {
    await trx.deleteFrom('examples').where('id', 'in', ids).execute();
    await trx.deleteFrom('retired_examples').where('example_id', 'in', ids).execute();
  }
  return [...new Set(orphans.map((e) => e.image_hash))];
}
