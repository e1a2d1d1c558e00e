import type { Selectable } from 'kysely';
import type { Queries } from './database';
import type { Schema } from './schema';

// The rows of classifiers and versions as records, shared by the classifier and version repositories.

export type ClassifierStatus = 'training' | 'retraining' | 'ready' | 'failed';

export interface ClassifierRecord {
  id: string;
  ownerId: string;
  name: string;
  status: ClassifierStatus;
  explanation: string | null;
  created: string;
  updated: string;
  retrained: string | null;
  /** Bumped by every create/update request; a training run records the generation it saw. */
  generation: number;
  /** The generation the current version was trained on (0: none yet). */
  trainedGeneration: number;
  currentVersionId: number | null;
  classes: string[];
  /** Where a training-end callback goes (extension); null: none. */
  callbackUrl: string | null;
}

export interface VersionRecord {
  id: number;
  classifierId: string;
  generation: number;
  headFile: string;
  classes: string[];
  packKey: string;
  evaluation: unknown;
  examples: number;
  created: string;
  /** When the retention setting deleted its head file; a pruned version cannot be used any more. */
  pruned: string | null;
}

export type ClassifierRow = Selectable<Schema['classifiers']>;

/** Rows per multi-row statement: well below either database's bound-parameter cap. */
export const ROWS_PER_STATEMENT = 200;

export function chunks<T>(items: T[], size = ROWS_PER_STATEMENT): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export async function classesOf(q: Queries, id: string): Promise<string[]> {
  const rows = await q
    .selectFrom('classes')
    .select('name')
    .where('classifier_id', '=', id)
    .orderBy('position')
    .execute();
  return rows.map((r) => r.name);
}

export async function toRecord(q: Queries, row: ClassifierRow): Promise<ClassifierRecord> {
  const callback = await q
    .selectFrom('classifier_callbacks')
    .select('url')
    .where('classifier_id', '=', row.id)
    .executeTakeFirst();
  return {
    id: row.id,
    ownerId: row.owner_id,
    name: row.name,
    status: row.status,
    explanation: row.explanation,
    created: row.created,
    updated: row.updated,
    retrained: row.retrained,
    generation: row.generation,
    trainedGeneration: row.trained_generation,
    currentVersionId: row.current_version_id,
    classes: await classesOf(q, row.id),
    callbackUrl: callback?.url ?? null,
  };
}

export async function findClassifierIn(q: Queries, id: string): Promise<ClassifierRecord | undefined> {
  const row = await q.selectFrom('classifiers').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toRecord(q, row);
}

export async function findVersionIn(q: Queries, id: number): Promise<VersionRecord | undefined> {
  const row = await q
    .selectFrom('versions as v')
    .leftJoin('pruned_versions as p', 'p.version_id', 'v.id')
    .selectAll('v')
    .select('p.pruned')
    .where('v.id', '=', id)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    id: row.id,
    classifierId: row.classifier_id,
    generation: row.generation,
    headFile: row.head_file,
    classes: JSON.parse(row.classes),
    packKey: row.pack_key,
    evaluation: JSON.parse(row.evaluation),
    examples: row.examples,
    created: row.created,
    pruned: row.pruned,
  };
}

/** Example ids of the classifier that an activation retired (not in the training set). */
export function retiredIds(q: Queries, classifierId: string) {
  return q.selectFrom('retired_examples').select('example_id').where('classifier_id', '=', classifierId);
}

/** The versions whose recorded training set (version_examples) holds any of `exampleIds`. */
export async function versionsListingExamples(trx: Queries, exampleIds: number[]): Promise<Set<number>> {
  const found = new Set<number>();
  for (const ids of chunks(exampleIds, 500)) {
    const rows = await trx
      .selectFrom('version_examples')
      .select('version_id')
      .distinct()
      .where('example_id', 'in', ids)
      .execute();
    rows.forEach((r) => found.add(r.version_id));
  }
  return found;
}

/**
 * Which of `hashes` an example (of any classifier and owner) references: the images whose files and
 * cached embeddings must stay. Any number of hashes (queried in `IN` lists of 500).
 */
export async function referencedImageHashes(trx: Queries, hashes: string[]): Promise<Set<string>> {
  const found = new Set<string>();
  for (const batch of chunks(hashes, 500)) {
    const rows = await trx
      .selectFrom('examples')
      .select('image_hash')
      .distinct()
      .where('image_hash', 'in', batch)
      .execute();
    rows.forEach((r) => found.add(r.image_hash));
  }
  return found;
}

/**
 * Which of `hashes` (at most a few hundred: one `IN` list) an example references or an unexpired upload claim
 * holds at `now` (ms since the epoch): the images whose files and cached embeddings must stay.
 */
export async function heldImageHashes(trx: Queries, hashes: string[], now: number): Promise<Set<string>> {
  const held = await referencedImageHashes(trx, hashes);
  const claimed = await trx
    .selectFrom('image_claims')
    .select('image_hash')
    .distinct()
    .where('image_hash', 'in', hashes)
    .where('expires', '>', new Date(now).toISOString())
    .execute();
  claimed.forEach((r) => held.add(r.image_hash));
  return held;
}
