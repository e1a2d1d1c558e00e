import type { Database, Queries } from './database';
import { recordTrainingEnd } from './callback-repository';
import type { ReviewBody } from './example-repository';
import {
  chunks,
  findClassifierIn,
  findVersionIn,
  retiredIds,
  type ClassifierRecord,
  type VersionRecord,
} from './records';
import {
  deleteUnusedRetiredExamples,
  isMarkedForRemoval,
  logForgottenHeads,
  removeReplacedVersions,
} from './version-removal';

export type { VersionRecord } from './records';

/** One change of a classifier's current version: a training run's result, or an activation (rollback). */
export interface VersionEvent {
  versionId: number;
  previousVersionId: number | null;
  cause: 'trained' | 'activated';
  created: string;
}

export type ActivationResult =
  /** removedHeadFiles: of the version it replaced, when that one was trained on deleted customer data; the caller deletes them. */
  | {
      outcome: 'activated' | 'unchanged';
      classifier: ClassifierRecord;
      pendingExamples: number;
      removedHeadFiles: string[];
    }
  | { outcome: 'no-classifier' }
  | { outcome: 'no-version' }
  | { outcome: 'pruned' }
  /** Removed because customer data it was trained on was deleted. */
  | { outcome: 'removed' }
  /** Trained on deleted customer data; current only until its replacement, trained without it, is ready. */
  | { outcome: 'being-removed' };

/** What a publish did. removedHeadFiles: of versions it replaced that were trained on deleted customer data; the caller deletes them. */
export interface PublishResult {
  published: boolean;
  removedHeadFiles: string[];
}

/** What recording a failed run did; removedHeadFiles as in PublishResult. */
export interface FailureResult {
  recorded: boolean;
  removedHeadFiles: string[];
}

/** What a classify request asked for: a classifier's current version, or a pinned one. */
export interface VersionRequest {
  classifierId: string;
  versionId?: number;
}

export type ResolvedVersion =
  | { outcome: 'ok'; classifier: ClassifierRecord; version: VersionRecord }
  | { outcome: 'no-classifier' | 'no-version' | 'not-trained' | 'pruned'; classifier?: ClassifierRecord };

/**
 * A classifier's immutable versions and their lifecycle, in the service's database: a training run's
 * result published (or its failure recorded), activation (rollback), retention (pruning), the events
 * that changed the current version, and what classify requests read (they hold versions in Redis:
 * see VersionLeases).
 * Every change is one write transaction holding the write lock from its first read (see database.ts).
 */
export class VersionRepository {
  constructor(private readonly db: Database) {}

  /**
   * Records a finished training run and makes it the serving version, atomically, with the
   * examples it trained on (what an activation of it restores) and a `trained` event.
   * Not published when the classifier was deleted meanwhile, when its snapshot is not newer
   * than the current version's (a newer run or an activation came first, or another worker already
   * published this generation after this one's queue lock lapsed), or when a customer-data deletion
   * removed any of the examples it trained on (checked here, in the publishing transaction, so no
   * run that read the examples before the deletion can publish a model of them): the caller removes
   * the head file. A published version replaces, and so removes, a current version that was trained
   * on deleted customer data. If more examples arrived while training, the status stays in training
   * until the next run; otherwise a callback, if the classifier has one, is put in the outbox in the
   * same transaction.
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
    /** What the run learned about each example, for GET …/examples (kept with the version). */
    review?: ReviewBody;
    now: string;
  }): Promise<PublishResult> {
    return this.db.write(async (trx) => {
      const notPublished = { published: false, removedHeadFiles: [] };
      const row = await trx
        .selectFrom('classifiers')
        .select(['generation', 'trained_generation', 'current_version_id'])
        .where('id', '=', input.classifierId)
        .executeTakeFirst();
      if (!row || input.generation <= row.trained_generation) return notPublished;
      if ((await countExisting(trx, input.classifierId, input.exampleIds)) < new Set(input.exampleIds).size)
        return notPublished;
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
      // The example changes this run trained on are the ones this version applied.
      await trx
        .updateTable('example_changes')
        .set({ version_id: versionId })
        .where('classifier_id', '=', input.classifierId)
        .where('version_id', 'is', null)
        .where('generation', '<=', input.generation)
        .execute();
      if (input.review) {
        await trx
          .insertInto('version_reviews')
          .values({ version_id: versionId, classifier_id: input.classifierId, body: JSON.stringify(input.review) })
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
      return { published: true, removedHeadFiles: await removeReplacedVersions(trx, input.classifierId, input.now) };
    });
  }

  /**
   * Marks a training run as failed unless newer examples arrived meanwhile (then the next run decides)
   * or another run trained the generation already.
   * The current version, if any, keeps serving, unless it was trained on deleted customer data: the
   * run that failed was to replace it, so it is removed and the classifier answers nothing until a
   * new run succeeds; `explainRemoval` then turns the run's explanation into the one recorded.
   */
  async markFailed(
    id: string,
    generation: number,
    explanation: string,
    now: string,
    explainRemoval: (explanation: string) => string = (e) => e,
  ): Promise<FailureResult> {
    return this.db.write(async (trx) => {
      const row = await trx
        .selectFrom('classifiers')
        .select(['generation', 'trained_generation', 'current_version_id'])
        .where('id', '=', id)
        .executeTakeFirst();
      // Already trained: another worker took the run up (this one was frozen or blocked past its lock).
      if (!row || row.generation !== generation || row.trained_generation >= generation)
        return { recorded: false, removedHeadFiles: [] };
      const removeCurrent = row.current_version_id !== null && (await isMarkedForRemoval(trx, row.current_version_id));
      await trx
        .updateTable('classifiers')
        .set({
          status: 'failed',
          explanation: removeCurrent ? explainRemoval(explanation) : explanation,
          ...(removeCurrent ? { current_version_id: null } : {}),
        })
        .where('id', '=', id)
        .execute();
      await recordTrainingEnd(trx, id, now);
      return { recorded: true, removedHeadFiles: await removeReplacedVersions(trx, id, now) };
    });
  }

  /**
   * Whether the classifier had this version and it was removed because customer data it was trained
   * on was deleted (not an unknown version, nor another classifier's).
   */
  async wasRemoved(classifierId: string, versionId: number): Promise<boolean> {
    return this.db.read((trx) => wasRemovedIn(trx, classifierId, versionId));
  }

  /**
   * The versions whose heads were forgotten (removed, pruned, or of a deleted classifier) after the
   * log entry `afterId`, and the last entry: what an API process drops from its memory. Without
   * `afterId` (a process that has not looked yet, so holds nothing older) only the last entry.
   */
  async forgottenSince(afterId: number | undefined): Promise<{ last: number; versionIds: number[] }> {
    if (afterId === undefined) {
      const row = await this.db.kysely
        .selectFrom('forgotten_heads')
        .select((eb) => eb.fn.max('id').as('last'))
        .executeTakeFirst();
      return { last: Number(row?.last ?? 0), versionIds: [] };
    }
    const rows = await this.db.kysely
      .selectFrom('forgotten_heads')
      .select(['id', 'version_id'])
      .where('id', '>', afterId)
      .orderBy('id')
      .execute();
    return { last: rows.length > 0 ? rows[rows.length - 1].id : afterId, versionIds: rows.map((r) => r.version_id) };
  }

  findVersion(id: number): Promise<VersionRecord | undefined> {
    return findVersionIn(this.db.kysely, id);
  }

  async listVersions(classifierId: string): Promise<VersionRecord[]> {
    const ids = await this.db.kysely
      .selectFrom('versions')
      .select('id')
      .where('classifier_id', '=', classifierId)
      .orderBy('id')
      .execute();
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
    return rows.map((r) => ({
      versionId: r.version_id,
      previousVersionId: r.previous_version_id,
      cause: r.cause,
      created: r.created,
    }));
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
  async activateVersion(input: {
    classifierId: string;
    versionId: number;
    discardPending: boolean;
    now: string;
  }): Promise<ActivationResult> {
    return this.db.write(async (trx): Promise<ActivationResult> => {
      const c = await findClassifierIn(trx, input.classifierId);
      if (!c) return { outcome: 'no-classifier' };
      const version = await findVersionIn(trx, input.versionId);
      if (!version || version.classifierId !== c.id) {
        return (await wasRemovedIn(trx, c.id, input.versionId)) ? { outcome: 'removed' } : { outcome: 'no-version' };
      }
      if (version.pruned) return { outcome: 'pruned' };
      // Made current again, it would serve the deleted data for good.
      if (await isMarkedForRemoval(trx, version.id)) return { outcome: 'being-removed' };
      if (version.id === c.currentVersionId && !input.discardPending) {
        return { outcome: 'unchanged', classifier: c, pendingExamples: 0, removedHeadFiles: [] };
      }
      const membersOf = (versionId: number) =>
        trx.selectFrom('version_examples').select('example_id').where('version_id', '=', versionId);
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
          trx
            .selectFrom('examples')
            .select(['id', 'classifier_id'])
            .where('classifier_id', '=', c.id)
            .where('id', 'not in', membersOf(version.id)),
        )
        .onConflict((oc) => oc.doNothing())
        .execute();
      await trx.deleteFrom('retired_examples').where('example_id', 'in', membersOf(version.id)).execute();
      for (const ids of chunks(
        pending.map((e) => e.id),
        500,
      )) {
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
      const removedHeadFiles = await removeReplacedVersions(trx, c.id, input.now);
      return {
        outcome: 'activated',
        classifier: (await findClassifierIn(trx, c.id))!,
        pendingExamples: pending.length,
        removedHeadFiles,
      };
    });
  }

  /**
   * Retention: marks all but the `keep` newest versions `pruned`, never the current one nor one in
   * `leased` (held by a classify request in flight, see VersionLeases), and returns their head files
   * for the caller to delete. A pruned version stays listed but can no longer be pinned or activated.
   * Retired examples no kept version uses any more are deleted; their image hashes are returned
   * too (for the image store's garbage collection).
   */
  async pruneVersions(
    classifierId: string,
    keep: number,
    now: string,
    leased: ReadonlySet<number>,
  ): Promise<{ pruned: Array<{ versionId: number; headFile: string }>; imageHashes: string[] }> {
    return this.db.write(async (trx) => {
      const current = await trx
        .selectFrom('classifiers')
        .select('current_version_id')
        .where('id', '=', classifierId)
        .executeTakeFirst();
      if (!current) return { pruned: [], imageHashes: [] };
      const live = await trx
        .selectFrom('versions as v')
        .select(['v.id', 'v.head_file'])
        .where('v.classifier_id', '=', classifierId)
        .where(
          'v.id',
          'not in',
          trx.selectFrom('pruned_versions').select('version_id').where('classifier_id', '=', classifierId),
        )
        .orderBy('v.id', 'desc')
        .execute();
      const doomed = live.slice(keep).filter((v) => v.id !== current.current_version_id && !leased.has(v.id));
      for (const v of doomed) {
        await trx
          .insertInto('pruned_versions')
          .values({ version_id: v.id, classifier_id: classifierId, pruned: now })
          .execute();
        await trx.deleteFrom('version_examples').where('version_id', '=', v.id).execute();
      }
      await logForgottenHeads(
        trx,
        classifierId,
        doomed.map((v) => v.id),
        now,
      );
      return {
        pruned: doomed.map((v) => ({ versionId: v.id, headFile: v.head_file })),
        imageHashes: await deleteUnusedRetiredExamples(trx, classifierId),
      };
    });
  }

  /**
   * Resolves the versions a classify request uses (each classifier's current one, or the pinned
   * one), on one snapshot, reading only: the request holds them with VersionLeases, not here.
   */
  async resolve(ownerId: string, requests: VersionRequest[]): Promise<ResolvedVersion[]> {
    if (requests.length === 0) return [];
    return this.db.read((trx) => resolveVersions(trx, ownerId, requests));
  }

  /**
   * Of the head files given, those a version still needs: one not pruned, or a pruned one in
   * `leased` (a request in flight still uses it; retention left its file for a later sweep).
   */
  async headFilesInUse(files: string[], leased: ReadonlySet<number>): Promise<Set<string>> {
    const inUse = new Set<string>();
    for (const chunk of chunks(files, 500)) {
      const rows = await this.db.kysely
        .selectFrom('versions as v')
        .leftJoin('pruned_versions as p', 'p.version_id', 'v.id')
        .select(['v.id', 'v.head_file', 'p.version_id as pruned'])
        .where('v.head_file', 'in', chunk)
        .execute();
      for (const r of rows) if (r.pruned === null || leased.has(r.id)) inUse.add(r.head_file);
    }
    return inUse;
  }
}

async function resolveVersions(q: Queries, ownerId: string, requests: VersionRequest[]): Promise<ResolvedVersion[]> {
  const resolved: ResolvedVersion[] = [];
  for (const r of requests) {
    const found = await findClassifierIn(q, r.classifierId);
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
    else resolved.push({ outcome: 'ok', classifier, version });
  }
  return resolved;
}

/** How many of `exampleIds` are still examples of the classifier. */
async function countExisting(trx: Queries, classifierId: string, exampleIds: number[]): Promise<number> {
  let found = 0;
  for (const ids of chunks([...new Set(exampleIds)], 500)) {
    const row = await trx
      .selectFrom('examples')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('classifier_id', '=', classifierId)
      .where('id', 'in', ids)
      .executeTakeFirstOrThrow();
    found += Number(row.n);
  }
  return found;
}

async function wasRemovedIn(trx: Queries, classifierId: string, versionId: number): Promise<boolean> {
  const logged = await trx
    .selectFrom('forgotten_heads')
    .select('id')
    .where('version_id', '=', versionId)
    .where('classifier_id', '=', classifierId)
    .executeTakeFirst();
  return logged !== undefined && (await findVersionIn(trx, versionId)) === undefined;
}

async function recordEvent(
  trx: Queries,
  classifierId: string,
  versionId: number,
  previous: number | null,
  cause: VersionEvent['cause'],
  now: string,
) {
  await trx
    .insertInto('version_events')
    .values({ classifier_id: classifierId, version_id: versionId, previous_version_id: previous, cause, created: now })
    .execute();
}
