import crypto from 'node:crypto';
import type { Selectable } from 'kysely';
import { isStorageUnavailable, type Database, type Queries } from './database';
import type { Schema } from './schema';

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

export interface NewExample {
  className: string | null; // null: a negative example
  imageHash: string;
  /** The entry's path in the uploaded zip, for messages (absent: unnamed). */
  entryName?: string;
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

export interface TrainingSnapshot {
  classifier: ClassifierRecord;
  /** The classifier's training set: every example not retired by an activation. */
  /** entryName: the entry's path in its zip; null for examples stored before names were kept. */
  examples: Array<{ id: number; className: string | null; imageHash: string; entryName: string | null }>;
}

/** One change of a classifier's current version: a training run's result, or an activation (rollback). */
export interface VersionEvent {
  versionId: number;
  previousVersionId: number | null;
  cause: 'trained' | 'activated';
  created: string;
}

export type ActivationResult =
  | { outcome: 'activated' | 'unchanged'; classifier: ClassifierRecord; pendingExamples: number }
  | { outcome: 'no-classifier' }
  | { outcome: 'no-version' }
  | { outcome: 'pruned' };

/** What a classify request asked for: a classifier's current version, or a pinned one. */
export interface VersionRequest {
  classifierId: string;
  versionId?: number;
}

export type ResolvedVersion =
  | { outcome: 'ok'; classifier: ClassifierRecord; version: VersionRecord }
  | { outcome: 'no-classifier' | 'no-version' | 'not-trained' | 'pruned'; classifier?: ClassifierRecord };

/** The body of a training-end callback, as stored in the outbox and sent. */
export interface TrainingEndPayload {
  delivery_id: string;
  classifier_id: string;
  status: 'ready' | 'failed';
  version_id: number | null;
  explanation: string | null;
  retrained: string | null;
  created: string;
}

type ClassifierRow = Selectable<Schema['classifiers']>;

/** Rows per multi-row statement: well below either database's bound-parameter cap. */
const ROWS_PER_STATEMENT = 200;

function chunks<T>(items: T[], size = ROWS_PER_STATEMENT): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

async function classesOf(q: Queries, id: string): Promise<string[]> {
  const rows = await q.selectFrom('classes').select('name').where('classifier_id', '=', id).orderBy('position').execute();
  return rows.map((r) => r.name);
}

async function toRecord(q: Queries, row: ClassifierRow): Promise<ClassifierRecord> {
  const callback = await q.selectFrom('classifier_callbacks').select('url').where('classifier_id', '=', row.id).executeTakeFirst();
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

async function findIn(q: Queries, id: string): Promise<ClassifierRecord | undefined> {
  const row = await q.selectFrom('classifiers').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toRecord(q, row);
}

async function findVersionIn(q: Queries, id: number): Promise<VersionRecord | undefined> {
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
function retiredIds(q: Queries, classifierId: string) {
  return q.selectFrom('retired_examples').select('example_id').where('classifier_id', '=', classifierId);
}

/**
 * Classifiers, their classes, examples and immutable versions, in the service's database (SQLite
 * or PostgreSQL, see database.ts). Every change is one write transaction holding the write lock
 * from its first read, so when API processes and workers write at once the later one waits
 * instead of acting on what it read before the other's change.
 */
export class ClassifierRepository {
  constructor(private readonly db: Database) {}

  find(id: string): Promise<ClassifierRecord | undefined> {
    return findIn(this.db.kysely, id);
  }

  /** The classifier if it exists and belongs to the owner; another owner's classifier looks like a missing one. */
  async findOwned(id: string, ownerId: string): Promise<ClassifierRecord | undefined> {
    const found = await this.find(id);
    return found && found.ownerId === ownerId ? found : undefined;
  }

  async listByOwner(ownerId: string): Promise<ClassifierRecord[]> {
    const rows = await this.db.kysely.selectFrom('classifiers').selectAll().where('owner_id', '=', ownerId).orderBy('created').orderBy('id').execute();
    return Promise.all(rows.map((r) => toRecord(this.db.kysely, r)));
  }

  async listUnfinished(): Promise<ClassifierRecord[]> {
    const rows = await this.db.kysely.selectFrom('classifiers').selectAll().where('status', 'in', ['training', 'retraining']).execute();
    return Promise.all(rows.map((r) => toRecord(this.db.kysely, r)));
  }

  async exists(id: string): Promise<boolean> {
    return (await this.db.kysely.selectFrom('classifiers').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;
  }

  /**
   * True when this database ever issued the id, even if that classifier was deleted since: an id
   * is never given to a second classifier, so a stale job, head folder or cached head that names
   * it can only ever mean the first one.
   */
  async wasIssued(id: string): Promise<boolean> {
    return (await this.db.kysely.selectFrom('issued_classifier_ids').select('id').where('id', '=', id).executeTakeFirst()) !== undefined;
  }

  private async addClassesAndExamples(trx: Queries, id: string, generation: number, examples: NewExample[], customerId: string | null, now: string) {
    const last = await trx
      .selectFrom('classes')
      .select((eb) => eb.fn.max('position').as('p'))
      .where('classifier_id', '=', id)
      .executeTakeFirst();
    const known = new Set(await classesOf(trx, id));
    let position = (last?.p ?? -1) + 1;
    const newClasses = [...new Set(examples.map((e) => e.className).filter((c): c is string => c !== null && !known.has(c)))];
    for (const names of chunks(newClasses)) {
      await trx
        .insertInto('classes')
        .values(names.map((name) => ({ classifier_id: id, name, position: position++ })))
        .execute();
    }
    for (const batch of chunks(examples)) {
      const inserted = await trx
        .insertInto('examples')
        .values(
          batch.map((e) => ({
            classifier_id: id,
            class_name: e.className,
            image_hash: e.imageHash,
            entry_name: e.entryName ?? null,
            generation,
            customer_id: customerId,
            created: now,
          })),
        )
        .onConflict((oc) => oc.doNothing())
        .returning(['class_name', 'image_hash'])
        .execute();
      // An example retired by an activation and sent again joins the training set again.
      const key = (className: string | null, hash: string) => `${className ?? ''}\u0000${hash}`;
      const fresh = new Set(inserted.map((r) => key(r.class_name, r.image_hash)));
      const resent = batch.filter((e) => !fresh.has(key(e.className, e.imageHash)));
      if (resent.length === 0) continue;
      const existing = await trx
        .selectFrom('examples')
        .select(['id', 'class_name', 'image_hash'])
        .where('classifier_id', '=', id)
        .where('image_hash', 'in', resent.map((e) => e.imageHash))
        .execute();
      const wanted = new Set(resent.map((e) => key(e.className, e.imageHash)));
      const ids = existing.filter((r) => wanted.has(key(r.class_name, r.image_hash))).map((r) => r.id);
      if (ids.length > 0) await trx.deleteFrom('retired_examples').where('example_id', 'in', ids).execute();
    }
  }

  /** Sets (a URL) or removes (null) the classifier's callback URL; undefined leaves it as it is. */
  private async writeCallbackUrl(trx: Queries, id: string, url: string | null | undefined): Promise<void> {
    if (url === undefined) return;
    if (url === null) {
      await trx.deleteFrom('classifier_callbacks').where('classifier_id', '=', id).execute();
    } else {
      await trx
        .insertInto('classifier_callbacks')
        .values({ classifier_id: id, url })
        .onConflict((oc) => oc.column('classifier_id').doUpdateSet({ url }))
        .execute();
    }
  }

  /** Changes only the callback URL (an update that sends no examples). Returns undefined if the classifier is gone. */
  async setCallbackUrl(id: string, url: string | null, now: string): Promise<ClassifierRecord | undefined> {
    return this.db.write(async (trx) => {
      const updated = await trx.updateTable('classifiers').set({ updated: now }).where('id', '=', id).executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 0) return undefined;
      await this.writeCallbackUrl(trx, id, url);
      return findIn(trx, id);
    });
  }

  async create(input: {
    id: string;
    ownerId: string;
    name: string;
    examples: NewExample[];
    customerId: string | null;
    callbackUrl?: string | null;
    now: string;
  }): Promise<ClassifierRecord> {
    return this.db.write(async (trx) => {
      await trx.insertInto('issued_classifier_ids').values({ id: input.id, owner_id: input.ownerId, issued: input.now }).execute();
      await trx
        .insertInto('classifiers')
        .values({
          id: input.id,
          owner_id: input.ownerId,
          name: input.name,
          status: 'training',
          created: input.now,
          updated: input.now,
          generation: 1,
          customer_id: input.customerId,
          explanation: null,
          retrained: null,
          current_version_id: null,
        })
        .execute();
      await this.addClassesAndExamples(trx, input.id, 1, input.examples, input.customerId, input.now);
      await this.writeCallbackUrl(trx, input.id, input.callbackUrl);
      return (await findIn(trx, input.id))!;
    });
  }

  /**
   * Accepts more examples for a retrain: bumps the generation and sets the status to
   * `retraining` (or `training` when no version exists yet). Returns undefined if the classifier is gone.
   */
  async addExamples(input: {
    id: string;
    examples: NewExample[];
    customerId: string | null;
    /** Set (a URL) or removed (null) in the same transaction; undefined: unchanged. */
    callbackUrl?: string | null;
    now: string;
  }): Promise<ClassifierRecord | undefined> {
    return this.db.write(async (trx) => {
      const row = await trx.selectFrom('classifiers').select(['generation', 'current_version_id']).where('id', '=', input.id).executeTakeFirst();
      if (!row) return undefined;
      const generation = row.generation + 1;
      await trx
        .updateTable('classifiers')
        .set({ generation, status: row.current_version_id === null ? 'training' : 'retraining', explanation: null, updated: input.now })
        .where('id', '=', input.id)
        .execute();
      await this.addClassesAndExamples(trx, input.id, generation, input.examples, input.customerId, input.now);
      await this.writeCallbackUrl(trx, input.id, input.callbackUrl);
      return findIn(trx, input.id);
    });
  }

  /** Everything a training run needs, read in one transaction so examples and generation agree. */
  async trainingSnapshot(id: string): Promise<TrainingSnapshot | undefined> {
    return this.db.read(async (trx) => {
      const classifier = await findIn(trx, id);
      if (!classifier) return undefined;
      const rows = await trx
        .selectFrom('examples')
        .select(['id', 'class_name', 'image_hash', 'entry_name'])
        .where('classifier_id', '=', id)
        .where('id', 'not in', retiredIds(trx, id))
        .orderBy('id')
        .execute();
      const examples = rows.map((r) => ({ id: r.id, className: r.class_name, imageHash: r.image_hash, entryName: r.entry_name }));
      return { classifier, examples };
    });
  }

  /** How many distinct images the classifier's next version trains on (an image in two classes counts once; retired examples do not). */
  async distinctImageCount(id: string): Promise<number> {
    const row = await this.db.kysely
      .selectFrom('examples')
      .select((eb) => eb.fn.count('image_hash').distinct().as('n'))
      .where('classifier_id', '=', id)
      .where('id', 'not in', retiredIds(this.db.kysely, id))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * Records a finished training run and makes it the serving version, atomically, with the
   * examples it trained on (what an activation of it restores) and a `trained` event.
   * Returns false when the classifier was deleted meanwhile, or when its snapshot is not newer
   * than the current version's (a newer run or an activation came first, or another worker already
   * published this generation after this one's queue lock lapsed): the caller removes the head file.
   * If more examples arrived while training, the status stays in training until the next run;
   * otherwise a callback, if the classifier has one, is put in the outbox in the same transaction.
   */
  async publishVersion(input: {
    classifierId: string;
    generation: number;
    headFile: string;
    classes: string[];
    packKey: string;
    evaluation: unknown;
    /** Usable examples (images that could be read). */
    examples: number;
    /** Ids of the snapshot's examples: the training set this version represents. */
    exampleIds: number[];
    now: string;
  }): Promise<boolean> {
    return this.db.write(async (trx) => {
      const row = await trx
        .selectFrom('classifiers')
        .select(['generation', 'trained_generation', 'current_version_id'])
        .where('id', '=', input.classifierId)
        .executeTakeFirst();
      if (!row || input.generation <= row.trained_generation) return false;
      const { id: versionId } = await trx
        .insertInto('versions')
        .values({
          classifier_id: input.classifierId,
          generation: input.generation,
          head_file: input.headFile,
          classes: JSON.stringify(input.classes),
          pack_key: input.packKey,
          evaluation: JSON.stringify(input.evaluation),
          examples: input.examples,
          created: input.now,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      // Only examples still there: a customer-data deletion may have removed some during the run.
      for (const ids of chunks(input.exampleIds, 500)) {
        await trx
          .insertInto('version_examples')
          .columns(['classifier_id', 'version_id', 'example_id'])
          .expression((eb) =>
            eb
              .selectFrom('examples')
              .select(['classifier_id', eb.val(versionId).as('version_id'), 'id'])
              .where('classifier_id', '=', input.classifierId)
              .where('id', 'in', ids),
          )
          .onConflict((oc) => oc.doNothing())
          .execute();
      }
      const caughtUp = input.generation >= row.generation;
      const wasRetrain = row.current_version_id !== null;
      await trx
        .updateTable('classifiers')
        .set({
          current_version_id: versionId,
          trained_generation: input.generation,
          ...(caughtUp ? { status: 'ready' as const, explanation: null } : {}),
          ...(wasRetrain ? { retrained: input.now } : {}),
        })
        .where('id', '=', input.classifierId)
        .execute();
      await recordEvent(trx, input.classifierId, versionId, row.current_version_id, 'trained', input.now);
      if (caughtUp) await recordTrainingEnd(trx, input.classifierId, input.now);
      return true;
    });
  }

  /**
   * Marks a training run as failed unless newer examples arrived meanwhile (then the next run decides).
   * The current version, if any, keeps serving. Returns whether the failure was recorded.
   */
  async markFailed(id: string, generation: number, explanation: string, now: string): Promise<boolean> {
    return this.db.write(async (trx) => {
      const result = await trx
        .updateTable('classifiers')
        .set({ status: 'failed', explanation })
        .where('id', '=', id)
        .where('generation', '=', generation)
        .executeTakeFirst();
      const changed = Number(result.numUpdatedRows) > 0;
      if (changed) await recordTrainingEnd(trx, id, now);
      return changed;
    });
  }

  findVersion(id: number): Promise<VersionRecord | undefined> {
    return findVersionIn(this.db.kysely, id);
  }

  async listVersions(classifierId: string): Promise<VersionRecord[]> {
    const ids = await this.db.kysely.selectFrom('versions').select('id').where('classifier_id', '=', classifierId).orderBy('id').execute();
    const versions = await Promise.all(ids.map((r) => this.findVersion(r.id)));
    return versions.filter((v): v is VersionRecord => v !== undefined);
  }

  /** Every change of the current version, oldest first. */
  async listVersionEvents(classifierId: string): Promise<VersionEvent[]> {
    const rows = await this.db.kysely
      .selectFrom('version_events')
      .select(['version_id', 'previous_version_id', 'cause', 'created'])
      .where('classifier_id', '=', classifierId)
      .orderBy('id')
      .execute();
    return rows.map((r) => ({ versionId: r.version_id, previousVersionId: r.previous_version_id, cause: r.cause, created: r.created }));
  }

  /**
   * Makes an earlier (or later) version current: a rollback, recorded as an `activated` event.
   *
   * The training set becomes the examples that version trained on plus the pending ones (accepted
   * but in no run that reached the current version yet), unless `discardPending`; every other
   * example is retired (kept while some version still uses it, so activating that version brings
   * it back). The generation moves past every run in flight, so a run that started before the
   * activation cannot publish over it. With pending examples the classifier is `retraining` (the
   * caller queues a run); without, it is `ready` at once. Activating the current version without
   * `discardPending` changes nothing.
   */
  async activateVersion(input: { classifierId: string; versionId: number; discardPending: boolean; now: string }): Promise<ActivationResult> {
    return this.db.write(async (trx): Promise<ActivationResult> => {
      const c = await findIn(trx, input.classifierId);
      if (!c) return { outcome: 'no-classifier' };
      const version = await findVersionIn(trx, input.versionId);
      if (!version || version.classifierId !== c.id) return { outcome: 'no-version' };
      if (version.pruned) return { outcome: 'pruned' };
      if (version.id === c.currentVersionId && !input.discardPending) {
        return { outcome: 'unchanged', classifier: c, pendingExamples: 0 };
      }
      const membersOf = (versionId: number) => trx.selectFrom('version_examples').select('example_id').where('version_id', '=', versionId);
      const pending = input.discardPending
        ? []
        : await trx
            .selectFrom('examples')
            .select(['id', 'class_name'])
            .where('classifier_id', '=', c.id)
            .where('id', 'not in', retiredIds(trx, c.id))
            .where('id', 'not in', membersOf(c.currentVersionId ?? -1))
            .orderBy('id')
            .execute();

      await trx
        .insertInto('retired_examples')
        .columns(['example_id', 'classifier_id'])
        .expression(
          trx.selectFrom('examples').select(['id', 'classifier_id']).where('classifier_id', '=', c.id).where('id', 'not in', membersOf(version.id)),
        )
        .onConflict((oc) => oc.doNothing())
        .execute();
      await trx.deleteFrom('retired_examples').where('example_id', 'in', membersOf(version.id)).execute();
      for (const ids of chunks(pending.map((e) => e.id), 500)) {
        await trx.deleteFrom('retired_examples').where('example_id', 'in', ids).execute();
      }

      // The classes: the version's, in its order, then those only pending examples have, in their old order.
      const classNames = [...version.classes];
      for (const name of c.classes) {
        if (!classNames.includes(name) && pending.some((e) => e.class_name === name)) classNames.push(name);
      }
      await trx.deleteFrom('classes').where('classifier_id', '=', c.id).execute();
      for (const names of chunks(classNames.map((name, position) => ({ classifier_id: c.id, name, position })))) {
        await trx.insertInto('classes').values(names).execute();
      }

      // Generation g+1 is "exactly this version's examples", which the version represents; the
      // pending examples, if any, come back as generation g+2, which the next run trains on.
      const trainedGeneration = c.generation + 1;
      const generation = pending.length > 0 ? trainedGeneration + 1 : trainedGeneration;
      await trx
        .updateTable('classifiers')
        .set({
          current_version_id: version.id,
          generation,
          trained_generation: trainedGeneration,
          status: pending.length > 0 ? 'retraining' : 'ready',
          explanation: null,
          updated: input.now,
        })
        .where('id', '=', c.id)
        .execute();
      await recordEvent(trx, c.id, version.id, c.currentVersionId, 'activated', input.now);
      return { outcome: 'activated', classifier: (await findIn(trx, c.id))!, pendingExamples: pending.length };
    });
  }

  /**
   * Retention: deletes the head files of all but the `keep` newest versions, never the current
   * one nor one a request in flight holds a lease on. A pruned version stays listed (marked
   * `pruned`) but can no longer be pinned or activated. Retired examples no kept version uses
   * any more are deleted. Returns the head files to remove and the image hashes those examples
   * referenced (for the image store's garbage collection).
   */
  async pruneVersions(classifierId: string, keep: number, now: string): Promise<{ headFiles: string[]; imageHashes: string[] }> {
    return this.db.write(async (trx) => {
      await trx.deleteFrom('version_leases').where('expires', '<=', now).execute();
      const current = await trx.selectFrom('classifiers').select('current_version_id').where('id', '=', classifierId).executeTakeFirst();
      if (!current) return { headFiles: [], imageHashes: [] };
      const live = await trx
        .selectFrom('versions as v')
        .select(['v.id', 'v.head_file'])
        .select((eb) => eb.exists(eb.selectFrom('version_leases as l').select('l.id').whereRef('l.version_id', '=', 'v.id')).as('leased'))
        .where('v.classifier_id', '=', classifierId)
        .where('v.id', 'not in', trx.selectFrom('pruned_versions').select('version_id').where('classifier_id', '=', classifierId))
        .orderBy('v.id', 'desc')
        .execute();
      const doomed = live.slice(keep).filter((v) => v.id !== current.current_version_id && !Number(v.leased));
      for (const v of doomed) {
        await trx.insertInto('pruned_versions').values({ version_id: v.id, classifier_id: classifierId, pruned: now }).execute();
        await trx.deleteFrom('version_examples').where('version_id', '=', v.id).execute();
      }
      const orphans = await trx
        .selectFrom('examples as e')
        .innerJoin('retired_examples as r', 'r.example_id', 'e.id')
        .select(['e.id', 'e.image_hash'])
        .where('r.classifier_id', '=', classifierId)
        .where((eb) => eb.not(eb.exists(eb.selectFrom('version_examples as ve').select('ve.example_id').whereRef('ve.example_id', '=', 'e.id'))))
        .execute();
      for (const ids of chunks(orphans.map((e) => e.id), 500)) {
        await trx.deleteFrom('examples').where('id', 'in', ids).execute();
        await trx.deleteFrom('retired_examples').where('example_id', 'in', ids).execute();
      }
      return { headFiles: doomed.map((v) => v.head_file), imageHashes: [...new Set(orphans.map((e) => e.image_hash))] };
    });
  }

  /**
   * Resolves the versions a classify request uses (each classifier's current one, or the pinned
   * one) and leases them until `expires`, in one transaction, so retention cannot delete a head
   * between this read and the end of the request. Returns the lease ids for releaseLeases.
   * When the lease cannot be written (a full disk, a locked database) the request still gets its
   * versions, unleased: classifying must keep working wherever reading does, and pruning, which
   * must write too, is then just as stuck.
   */
  async resolveAndLease(
    ownerId: string,
    requests: VersionRequest[],
    expires: string,
  ): Promise<{ resolved: ResolvedVersion[]; leaseIds: number[] }> {
    if (requests.length === 0) return { resolved: [], leaseIds: [] };
    try {
      return await this.db.write((trx) =>
        resolveVersions(trx, ownerId, requests, async (classifierId, versionId) => {
          const { id } = await trx
            .insertInto('version_leases')
            .values({ classifier_id: classifierId, version_id: versionId, expires })
            .returning('id')
            .executeTakeFirstOrThrow();
          return id;
        }),
      );
    } catch (error) {
      if (!isStorageUnavailable(error)) throw error;
      return this.db.read((trx) => resolveVersions(trx, ownerId, requests));
    }
  }

  /** Ends a request's leases. One that cannot be deleted now (a full disk) simply expires. */
  async releaseLeases(leaseIds: number[]): Promise<void> {
    if (leaseIds.length === 0) return;
    try {
      await this.db.kysely.deleteFrom('version_leases').where('id', 'in', leaseIds).execute();
    } catch (error) {
      if (!isStorageUnavailable(error)) throw error;
    }
  }

  /** Deletes the classifier with its classes, examples and versions. Returns the image hashes it referenced. */
  async delete(id: string): Promise<{ deleted: boolean; imageHashes: string[] }> {
    return this.db.write((trx) => deleteIn(trx, id));
  }

  /**
   * Removes what is labelled with a customer id among one owner's classifiers: classifiers created
   * with it entirely; elsewhere its examples, and classes left without examples. Classifiers that
   * lost examples move to (re)training, so no served version keeps learning from them for long.
   */
  async deleteCustomerData(ownerId: string, customerId: string, now: string): Promise<{
    deletedClassifiers: string[];
    retrainClassifiers: string[];
    imageHashes: string[];
  }> {
    return this.db.write(async (trx) => {
      const deletedClassifiers = (
        await trx.selectFrom('classifiers').select('id').where('owner_id', '=', ownerId).where('customer_id', '=', customerId).execute()
      ).map((r) => r.id);
      const hashes = new Set<string>();
      for (const id of deletedClassifiers) (await deleteIn(trx, id)).imageHashes.forEach((h) => hashes.add(h));

      const labelled = await trx
        .selectFrom('examples as e')
        .innerJoin('classifiers as c', 'c.id', 'e.classifier_id')
        .select(['e.id', 'e.classifier_id', 'e.image_hash'])
        .where('c.owner_id', '=', ownerId)
        .where('e.customer_id', '=', customerId)
        .execute();
      for (const ids of chunks(labelled.map((e) => e.id), 500)) {
        await trx.deleteFrom('examples').where('id', 'in', ids).execute();
        await trx.deleteFrom('version_examples').where('example_id', 'in', ids).execute();
        await trx.deleteFrom('retired_examples').where('example_id', 'in', ids).execute();
      }
      labelled.forEach((e) => hashes.add(e.image_hash));
      const retrainClassifiers = [...new Set(labelled.map((e) => e.classifier_id))];
      for (const id of retrainClassifiers) {
        await trx
          .deleteFrom('classes')
          .where('classifier_id', '=', id)
          .where(
            'name',
            'not in',
            trx.selectFrom('examples').select('class_name').distinct().where('classifier_id', '=', id).where('class_name', 'is not', null).$narrowType<{ class_name: string }>(),
          )
          .execute();
        const row = await trx.selectFrom('classifiers').select(['generation', 'current_version_id']).where('id', '=', id).executeTakeFirstOrThrow();
        await trx
          .updateTable('classifiers')
          .set({
            generation: row.generation + 1,
            updated: now,
            explanation: null,
            status: row.current_version_id === null ? 'training' : 'retraining',
          })
          .where('id', '=', id)
          .execute();
      }
      return { deletedClassifiers, retrainClassifiers, imageHashes: [...hashes] };
    });
  }

  /** Of the head files given, those a version names (pruned versions' files are removed, so they do not count). */
  async headFilesInUse(files: string[]): Promise<Set<string>> {
    const inUse = new Set<string>();
    for (const chunk of chunks(files, 500)) {
      const rows = await this.db.kysely
        .selectFrom('versions as v')
        .select('v.head_file')
        .where('v.head_file', 'in', chunk)
        .where('v.id', 'not in', this.db.kysely.selectFrom('pruned_versions').select('version_id'))
        .execute();
      rows.forEach((r) => inUse.add(r.head_file));
    }
    return inUse;
  }

  /**
   * Ready classifiers whose serving version was embedded under another pack key than `packKey` move to
   * retraining (generation bumped, so a run retrains them from their stored examples); their current
   * version keeps serving until the new one is published. Returns their ids.
   */
  async markStalePackForRetraining(packKey: string): Promise<string[]> {
    return this.db.write(async (trx) => {
      const stale = await trx
        .selectFrom('classifiers as c')
        .innerJoin('versions as v', 'v.id', 'c.current_version_id')
        .select(['c.id', 'c.generation'])
        .where('c.status', '=', 'ready')
        .where('v.pack_key', '!=', packKey)
        .execute();
      for (const c of stale) {
        await trx
          .updateTable('classifiers')
          .set({ generation: c.generation + 1, status: 'retraining', explanation: null })
          .where('id', '=', c.id)
          .execute();
      }
      return stale.map((c) => c.id);
    });
  }
}

async function resolveVersions(
  q: Queries,
  ownerId: string,
  requests: VersionRequest[],
  lease?: (classifierId: string, versionId: number) => Promise<number>,
): Promise<{ resolved: ResolvedVersion[]; leaseIds: number[] }> {
  const leaseIds: number[] = [];
  const resolved: ResolvedVersion[] = [];
  for (const r of requests) {
    const found = await findIn(q, r.classifierId);
    const classifier = found && found.ownerId === ownerId ? found : undefined;
    if (!classifier) {
      resolved.push({ outcome: 'no-classifier' });
      continue;
    }
    const versionId = r.versionId ?? classifier.currentVersionId;
    if (versionId === null) {
      resolved.push({ outcome: 'not-trained', classifier });
      continue;
    }
    const version = await findVersionIn(q, versionId);
    if (!version || version.classifierId !== classifier.id) resolved.push({ outcome: 'no-version', classifier });
    else if (version.pruned) resolved.push({ outcome: 'pruned', classifier });
    else {
      if (lease) leaseIds.push(await lease(classifier.id, version.id));
      resolved.push({ outcome: 'ok', classifier, version });
    }
  }
  return { resolved, leaseIds };
}

async function deleteIn(trx: Queries, id: string): Promise<{ deleted: boolean; imageHashes: string[] }> {
  const hashes = (await trx.selectFrom('examples').select('image_hash').distinct().where('classifier_id', '=', id).execute()).map((r) => r.image_hash);
  const result = await trx.deleteFrom('classifiers').where('id', '=', id).executeTakeFirst();
  return { deleted: Number(result.numDeletedRows) > 0, imageHashes: hashes };
}

async function recordEvent(trx: Queries, classifierId: string, versionId: number, previous: number | null, cause: VersionEvent['cause'], now: string) {
  await trx
    .insertInto('version_events')
    .values({ classifier_id: classifierId, version_id: versionId, previous_version_id: previous, cause, created: now })
    .execute();
}

/** Puts the training-end callback in the outbox, if the classifier has a callback URL (inside the caller's transaction). */
async function recordTrainingEnd(trx: Queries, classifierId: string, now: string): Promise<void> {
  const row = await trx
    .selectFrom('classifiers as c')
    .innerJoin('classifier_callbacks as cb', 'cb.classifier_id', 'c.id')
    .select(['c.owner_id', 'c.status', 'c.explanation', 'c.retrained', 'c.current_version_id', 'cb.url'])
    .where('c.id', '=', classifierId)
    .executeTakeFirst();
  if (!row || (row.status !== 'ready' && row.status !== 'failed')) return;
  const payload: TrainingEndPayload = {
    delivery_id: crypto.randomUUID(),
    classifier_id: classifierId,
    status: row.status,
    version_id: row.current_version_id,
    explanation: row.status === 'failed' ? row.explanation : null,
    retrained: row.retrained,
    created: now,
  };
  await trx
    .insertInto('callback_outbox')
    .values({ delivery_id: payload.delivery_id, classifier_id: classifierId, owner_id: row.owner_id, url: row.url, body: JSON.stringify(payload), created: now })
    .execute();
}
