import type { Database, Queries } from './database';
import { chunks, retiredIds, versionsListingExamples } from './records';

/** One example of a classifier's training set (not retired by an activation). */
export interface ExampleRecord {
  id: number;
  /** null: a negative example. */
  className: string | null;
  imageHash: string;
  /** The zip entry it was uploaded as; null for examples stored before names were kept. */
  entryName: string | null;
  created: string;
}

/**
 * What a version's training run learned about its examples, kept with the version (version_reviews):
 * `classes` in the head's order; `scores[exampleId]` the calibrated out-of-fold score of each class
 * for each example it evaluated; `duplicates` pairs of examples with differently labelled,
 * near-identical pictures, with their cosine distance.
 */
export interface ReviewBody {
  classes: string[];
  scores: Record<string, number[]>;
  duplicates: Array<[number, number, number]>;
}

/** One move: to a class, or to the negatives (null). */
export interface ExampleMove {
  exampleId: number;
  className: string | null;
}

export type ChangeOutcome =
  | {
      outcome: 'changed';
      /** Image hashes of the removed examples (remove those nothing references any more). */
      imageHashes: string[];
      removed: number;
      moved: number;
    }
  | { outcome: 'no-classifier' }
  /** An id that is not a current example of the classifier (unknown, retired, another's, or just removed). */
  | { outcome: 'no-example'; exampleId: number }
  | { outcome: 'no-class'; exampleId: number; className: string }
  | { outcome: 'same-class'; exampleId: number; className: string | null }
  /** The picture is already an example of the target: moving would make it twice. */
  | { outcome: 'already-there'; exampleId: number; existingId: number; className: string | null }
  /** The change leaves a class (null: the negatives of a one-class classifier) with fewer than `needed`. */
  | { outcome: 'below-minimum'; className: string | null; remaining: number; needed: number; before: number };

/**
 * A classifier's examples for review (issue 23): pages of them, their lookups, the scores each
 * version recorded, and removing or moving them as one write transaction.
 */
export class ExampleRepository {
  constructor(private readonly db: Database) {}

  /**
   * Up to `limit` examples newest first (by id, which only grows), older than `beforeId` when given;
   * `className` undefined: all, null: the negatives, a name: that class's. Retired examples are not listed.
   */
  async page(
    classifierId: string,
    filter: { className?: string | null },
    beforeId: number | undefined,
    limit: number,
  ): Promise<ExampleRecord[]> {
    let query = this.db.kysely
      .selectFrom('examples')
      .select(['id', 'class_name', 'image_hash', 'entry_name', 'created'])
      .where('classifier_id', '=', classifierId)
      .where('id', 'not in', retiredIds(this.db.kysely, classifierId));
    if (filter.className === null) query = query.where('class_name', 'is', null);
    else if (filter.className !== undefined) query = query.where('class_name', '=', filter.className);
    if (beforeId !== undefined) query = query.where('id', '<', beforeId);
    const rows = await query.orderBy('id', 'desc').limit(limit).execute();
    return rows.map(toExample);
  }

  /** The classifier's current examples among `ids`, by id (others are simply absent). */
  async findMany(classifierId: string, ids: number[]): Promise<Map<number, ExampleRecord>> {
    return findIn(this.db.kysely, classifierId, ids);
  }

  /** The version's review, if its run recorded one. */
  async review(versionId: number): Promise<ReviewBody | undefined> {
    const row = await this.db.kysely
      .selectFrom('version_reviews')
      .select('body')
      .where('version_id', '=', versionId)
      .executeTakeFirst();
    return row ? (JSON.parse(row.body) as ReviewBody) : undefined;
  }

  /** Removed and moved counts summed by the version that applied them (requests no version applied yet are left out). */
  async changesByVersion(classifierId: string): Promise<Map<number, { removed: number; moved: number }>> {
    const rows = await this.db.kysely
      .selectFrom('example_changes')
      .select(['version_id', 'removed', 'moved'])
      .where('classifier_id', '=', classifierId)
      .where('version_id', 'is not', null)
      .execute();
    const out = new Map<number, { removed: number; moved: number }>();
    for (const r of rows) {
      const sum = out.get(r.version_id!) ?? { removed: 0, moved: 0 };
      out.set(r.version_id!, { removed: sum.removed + r.removed, moved: sum.moved + r.moved });
    }
    return out;
  }

  /**
   * Removes and moves examples in one write transaction, or changes nothing and says why. Checked
   * inside the transaction, so a deletion, an activation or another change that came first is seen:
   * every id must be a current example, every target an existing class other than its own (or the
   * negatives), no target may hold the same picture already, and no class may end below `minimum`
   * examples where the change took some away (nor the negatives of a one-class classifier).
   *
   * When applied: every version trained on a removed example is marked for removal (it serves until
   * the retraining without it publishes, which removes it: see versions_to_remove); the removed
   * examples go with their version lists and retirement marks; moved ones get their new label;
   * the generation is bumped (status `retraining`, or `training` before any version) so the next run
   * trains on exactly this, and the counts are recorded for the version list.
   */
  async applyChanges(input: {
    classifierId: string;
    remove: number[];
    move: ExampleMove[];
    minimum: number;
    now: string;
  }): Promise<ChangeOutcome> {
    const { classifierId, remove, move, minimum, now } = input;
    return this.db.write(async (trx): Promise<ChangeOutcome> => {
      const classifier = await trx
        .selectFrom('classifiers')
        .select(['generation', 'current_version_id'])
        .where('id', '=', classifierId)
        .executeTakeFirst();
      if (!classifier) return { outcome: 'no-classifier' };
      const named = [...remove, ...move.map((m) => m.exampleId)];
      const found = await findIn(trx, classifierId, named);
      const missing = named.find((id) => !found.has(id));
      if (missing !== undefined) return { outcome: 'no-example', exampleId: missing };

      const classes = new Set(
        (await trx.selectFrom('classes').select('name').where('classifier_id', '=', classifierId).execute()).map(
          (r) => r.name,
        ),
      );
      for (const m of move) {
        const current = found.get(m.exampleId)!;
        if (m.className !== null && !classes.has(m.className))
          return { outcome: 'no-class', exampleId: m.exampleId, className: m.className };
        if (current.className === m.className)
          return { outcome: 'same-class', exampleId: m.exampleId, className: m.className };
      }

      const all = await trx
        .selectFrom('examples')
        .select(['id', 'class_name', 'image_hash'])
        .where('classifier_id', '=', classifierId)
        .where('id', 'not in', retiredIds(trx, classifierId))
        .execute();
      // The labels after the change, to count and to find a picture landing twice in one place.
      const removed = new Set(remove);
      const movedTo = new Map(move.map((m) => [m.exampleId, m.className]));
      const key = (className: string | null, hash: string) => `${className ?? ''}\u0000${hash}`;
      const after = new Map<string, number>();
      for (const e of all) {
        if (removed.has(e.id) || movedTo.has(e.id)) continue;
        after.set(key(e.class_name, e.image_hash), e.id);
      }
      for (const m of move) {
        const k = key(m.className, found.get(m.exampleId)!.imageHash);
        const existing = after.get(k);
        if (existing !== undefined)
          return { outcome: 'already-there', exampleId: m.exampleId, existingId: existing, className: m.className };
        after.set(k, m.exampleId);
      }

      const count = (labels: Array<string | null>) => {
        const n = new Map<string | null, number>();
        for (const l of labels) n.set(l, (n.get(l) ?? 0) + 1);
        return n;
      };
      const before = count(all.map((e) => e.class_name));
      const afterCounts = count(
        all.filter((e) => !removed.has(e.id)).map((e) => (movedTo.has(e.id) ? movedTo.get(e.id)! : e.class_name)),
      );
      const guarded: Array<string | null> = [...classes];
      if (classes.size === 1) guarded.push(null);
      for (const label of guarded) {
        const was = before.get(label) ?? 0;
        const will = afterCounts.get(label) ?? 0;
        if (will < was && will < minimum)
          return { outcome: 'below-minimum', className: label, remaining: will, needed: minimum, before: was };
      }

      // Every live version trained on a removed example goes once the retraining without it publishes.
      if (remove.length > 0) {
        const trained = await versionsListingExamples(trx, remove);
        const marked = new Set(
          (
            await trx
              .selectFrom('versions_to_remove')
              .select('version_id')
              .where('classifier_id', '=', classifierId)
              .execute()
          ).map((r) => r.version_id),
        );
        const fresh = [...trained].filter((v) => !marked.has(v));
        for (const ids of chunks(fresh)) {
          await trx
            .insertInto('versions_to_remove')
            .values(ids.map((version_id) => ({ version_id, classifier_id: classifierId, since: now })))
            .execute();
        }
        for (const ids of chunks(remove, 500)) {
          await trx.deleteFrom('version_examples').where('example_id', 'in', ids).execute();
          await trx.deleteFrom('retired_examples').where('example_id', 'in', ids).execute();
          await trx.deleteFrom('examples').where('classifier_id', '=', classifierId).where('id', 'in', ids).execute();
        }
      }
      for (const m of move) {
        await trx
          .updateTable('examples')
          .set({ class_name: m.className })
          .where('classifier_id', '=', classifierId)
          .where('id', '=', m.exampleId)
          .execute();
      }

      const generation = classifier.generation + 1;
      await trx
        .updateTable('classifiers')
        .set({
          generation,
          status: classifier.current_version_id === null ? 'training' : 'retraining',
          explanation: null,
          updated: now,
        })
        .where('id', '=', classifierId)
        .execute();
      await trx
        .insertInto('example_changes')
        .values({ classifier_id: classifierId, generation, removed: remove.length, moved: move.length, created: now })
        .execute();
      return {
        outcome: 'changed',
        imageHashes: [...new Set(remove.map((id) => found.get(id)!.imageHash))],
        removed: remove.length,
        moved: move.length,
      };
    });
  }
}

function toExample(r: {
  id: number;
  class_name: string | null;
  image_hash: string;
  entry_name: string | null;
  created: string;
}): ExampleRecord {
  return { id: r.id, className: r.class_name, imageHash: r.image_hash, entryName: r.entry_name, created: r.created };
}

async function findIn(q: Queries, classifierId: string, ids: number[]): Promise<Map<number, ExampleRecord>> {
  const found = new Map<number, ExampleRecord>();
  for (const chunk of chunks([...new Set(ids)], 500)) {
    const rows = await q
      .selectFrom('examples')
      .select(['id', 'class_name', 'image_hash', 'entry_name', 'created'])
      .where('classifier_id', '=', classifierId)
      .where('id', 'in', chunk)
      .where('id', 'not in', retiredIds(q, classifierId))
      .execute();
    for (const r of rows) found.set(r.id, toExample(r));
  }
  return found;
}
