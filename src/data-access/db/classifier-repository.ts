import type { Database, Queries } from './database';
import {
  chunks,
  classesOf,
  findClassifierIn,
  retiredIds,
  toRecord,
  versionsListingExamples,
  type ClassifierRecord,
} from './records';
import { deleteUnusedRetiredExamples, logForgottenHeads, removeVersions } from './version-removal';
import {
  deleteCustomerPendingZips,
  insertPendingZips,
  pendingFilesOf,
  type NewPendingZip,
} from './pending-zip-repository';

export type { ClassifierRecord, ClassifierStatus, VersionRecord } from './records';

export interface NewExample {
  className: string | null; // null: a negative example
  imageHash: string;
  /** The entry's path in the uploaded zip, for messages (absent: unnamed). */
  entryName?: string;
}

/** A classifier's latest upload report, as JSON values the domain shapes (see manage-classifiers.ts). */
export interface StoredUploadReport {
  /** The generation the upload's examples were recorded with. */
  generation: number;
  /** As the create or update answered it. */
  checked: unknown;
  /** As training left it once it had decoded every image; null until then. */
  decoded: unknown;
}

export interface TrainingSnapshot {
  classifier: ClassifierRecord;
  /** The classifier's training set: every example not retired by an activation. */
  /** entryName: the entry's path in its zip; null for examples stored before names were kept. */
  examples: Array<{ id: number; className: string | null; imageHash: string; entryName: string | null }>;
}

/**
 * Why what is left of a classifier's training set cannot train a version: the trainer's own
 * refusals that can be known without reading an image.
 */
export type TrainingSetProblem = { kind: 'no-classes' } | { kind: 'no-negatives'; className: string };

/** What DELETE /v3/user_data changed, for the caller to finish outside the transaction. */
export interface CustomerDataDeletion {
  /** Classifiers created with the customer id: deleted whole (cancel their runs, remove their head folders). */
  deletedClassifiers: string[];
  /** Classifiers that lost examples and must train again without them (queue a run for each). */
  retrainClassifiers: string[];
  /** Head files of the versions removed (delete them). */
  removedHeadFiles: string[];
  /** Images the deleted examples referenced (remove those nothing references any more). */
  imageHashes: string[];
  /** Kept zips of the customer's requests and of the deleted classifiers, their rows deleted (remove the files). */
  pendingFiles: string[];
}

/**
 * Classifiers, their classes and examples, in the service's database (SQLite
 * or PostgreSQL, see database.ts). Every change is one write transaction holding the write lock
 * from its first read, so when API processes and workers write at once the later one waits
 * instead of acting on what it read before the other's change.
 */
export class ClassifierRepository {
  constructor(private readonly db: Database) {}

  find(id: string): Promise<ClassifierRecord | undefined> {
    return findClassifierIn(this.db.kysely, id);
  }

  /** The classifier if it exists and belongs to the owner; another owner's classifier looks like a missing one. */
  async findOwned(id: string, ownerId: string): Promise<ClassifierRecord | undefined> {
    const found = await this.find(id);
    return found && found.ownerId === ownerId ? found : undefined;
  }

  async listByOwner(ownerId: string): Promise<ClassifierRecord[]> {
    const rows = await this.db.kysely
      .selectFrom('classifiers')
      .selectAll()
      .where('owner_id', '=', ownerId)
      .orderBy('created')
      .orderBy('id')
      .execute();
    return Promise.all(rows.map((r) => toRecord(this.db.kysely, r)));
  }

  async listUnfinished(): Promise<ClassifierRecord[]> {
    const rows = await this.db.kysely
      .selectFrom('classifiers')
      .selectAll()
      .where('status', 'in', ['training', 'retraining'])
      .execute();
    return Promise.all(rows.map((r) => toRecord(this.db.kysely, r)));
  }

  async exists(id: string): Promise<boolean> {
    return (
      (await this.db.kysely.selectFrom('classifiers').select('id').where('id', '=', id).executeTakeFirst()) !==
      undefined
    );
  }

  /**
   * True when this database ever issued the id, even if that classifier was deleted since: an id
   * is never given to a second classifier, so a stale job, head folder or cached head that names
   * it can only ever mean the first one.
   */
  async wasIssued(id: string): Promise<boolean> {
    return (
      (await this.db.kysely
        .selectFrom('issued_classifier_ids')
        .select('id')
        .where('id', '=', id)
        .executeTakeFirst()) !== undefined
    );
  }

  private async addClassesAndExamples(
    trx: Queries,
    id: string,
    generation: number,
    examples: NewExample[],
    customerId: string | null,
    now: string,
  ) {
    const last = await trx
      .selectFrom('classes')
      .select((eb) => eb.fn.max('position').as('p'))
      .where('classifier_id', '=', id)
      .executeTakeFirst();
    const known = new Set(await classesOf(trx, id));
    let position = (last?.p ?? -1) + 1;
    const newClasses = [
      ...new Set(examples.map((e) => e.className).filter((c): c is string => c !== null && !known.has(c))),
    ];
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
        .where(
          'image_hash',
          'in',
          resent.map((e) => e.imageHash),
        )
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
      const updated = await trx
        .updateTable('classifiers')
        .set({ updated: now })
        .where('id', '=', id)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) === 0) return undefined;
      await this.writeCallbackUrl(trx, id, url);
      return findClassifierIn(trx, id);
    });
  }

  async create(input: {
    id: string;
    ownerId: string;
    name: string;
    examples: NewExample[];
    customerId: string | null;
    callbackUrl?: string | null;
    /** The upload's report (JSON-serialisable), kept as the classifier's latest in the same transaction. */
    uploadReport?: unknown;
    /** The request's zips, kept whole with the images of `examples` until the worker extracts them. */
    pendingZips?: NewPendingZip[];
    now: string;
  }): Promise<ClassifierRecord> {
    return this.db.write(async (trx) => {
      await trx
        .insertInto('issued_classifier_ids')
        .values({ id: input.id, owner_id: input.ownerId, issued: input.now })
        .execute();
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
      await insertPendingZips(trx, input.id, input.customerId, input.pendingZips ?? [], input.now);
      await this.writeCallbackUrl(trx, input.id, input.callbackUrl);
      await writeUploadReport(trx, input.id, 1, input.uploadReport);
      return (await findClassifierIn(trx, input.id))!;
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
    /** The upload's report (JSON-serialisable): replaces the classifier's latest, in the same transaction. */
    uploadReport?: unknown;
    /** The request's zips, kept whole with the images of `examples` until the worker extracts them. */
    pendingZips?: NewPendingZip[];
    now: string;
  }): Promise<ClassifierRecord | undefined> {
    return this.db.write(async (trx) => {
      const row = await trx
        .selectFrom('classifiers')
        .select(['generation', 'current_version_id'])
        .where('id', '=', input.id)
        .executeTakeFirst();
      if (!row) return undefined;
      const generation = row.generation + 1;
      await trx
        .updateTable('classifiers')
        .set({
          generation,
          status: row.current_version_id === null ? 'training' : 'retraining',
          explanation: null,
          updated: input.now,
        })
        .where('id', '=', input.id)
        .execute();
      await this.addClassesAndExamples(trx, input.id, generation, input.examples, input.customerId, input.now);
      await insertPendingZips(trx, input.id, input.customerId, input.pendingZips ?? [], input.now);
      await this.writeCallbackUrl(trx, input.id, input.callbackUrl);
      await writeUploadReport(trx, input.id, generation, input.uploadReport);
      return findClassifierIn(trx, input.id);
    });
  }

  /** The classifier's latest upload report, if any upload recorded one. */
  async latestUploadReport(id: string): Promise<StoredUploadReport | undefined> {
    const row = await this.db.kysely
      .selectFrom('upload_reports')
      .select(['generation', 'checked', 'decoded'])
      .where('classifier_id', '=', id)
      .executeTakeFirst();
    if (!row) return undefined;
    return {
      generation: row.generation,
      checked: JSON.parse(row.checked) as unknown,
      decoded: row.decoded === null ? null : (JSON.parse(row.decoded) as unknown),
    };
  }

  /**
   * Records the report as training found it after decoding, if the latest upload is still the one of
   * `generation` (a later upload replaced it otherwise: its own run reports it). Idempotent.
   */
  async recordDecodedUpload(id: string, generation: number, decoded: unknown): Promise<void> {
    await this.db.write((trx) =>
      trx
        .updateTable('upload_reports')
        .set({ decoded: JSON.stringify(decoded) })
        .where('classifier_id', '=', id)
        .where('generation', '=', generation)
        .execute(),
    );
  }

  /** The examples recorded with `generation` (one upload's), retired or not: class, image and entry name. */
  async examplesOfGeneration(
    id: string,
    generation: number,
  ): Promise<Array<{ className: string | null; imageHash: string; entryName: string | null }>> {
    const rows = await this.db.kysely
      .selectFrom('examples')
      .select(['class_name', 'image_hash', 'entry_name'])
      .where('classifier_id', '=', id)
      .where('generation', '=', generation)
      .orderBy('id')
      .execute();
    return rows.map((r) => ({ className: r.class_name, imageHash: r.image_hash, entryName: r.entry_name }));
  }

  /** Everything a training run needs, read in one transaction so examples and generation agree. */
  async trainingSnapshot(id: string): Promise<TrainingSnapshot | undefined> {
    return this.db.read(async (trx) => {
      const classifier = await findClassifierIn(trx, id);
      if (!classifier) return undefined;
      const rows = await trx
        .selectFrom('examples')
        .select(['id', 'class_name', 'image_hash', 'entry_name'])
        .where('classifier_id', '=', id)
        .where('id', 'not in', retiredIds(trx, id))
        .orderBy('id')
        .execute();
      const examples = rows.map((r) => ({
        id: r.id,
        className: r.class_name,
        imageHash: r.image_hash,
        entryName: r.entry_name,
      }));
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
   * Deletes the classifier with its classes, examples, versions and kept zips. Returns the image hashes
   * it referenced and its kept zips' files (remove them).
   */
  async delete(id: string, now: string): Promise<{ deleted: boolean; imageHashes: string[]; pendingFiles: string[] }> {
    return this.db.write((trx) => deleteIn(trx, id, now));
  }

  /**
   * DELETE /v3/user_data in one transaction: among one owner's classifiers, those created with the
   * customer id go entirely; elsewhere its examples go, with the classes left without examples and
   * every version trained on any of them. A classifier's current version trained on them serves
   * on (marked in versions_to_remove) until the retrain without them replaces it; where what is left
   * cannot train (`TrainingSetProblem`), it goes at once and the classifier is failed with
   * `explain`'s explanation. A classifier whose current version never saw the deleted examples and
   * has nothing else pending is ready at once, without a retrain.
   */
  async deleteCustomerData(input: {
    ownerId: string;
    customerId: string;
    now: string;
    /** The failed classifier's explanation; `currentRemoved`: its current version was removed too, so it answers nothing. */
    explain: (failure: { classifierId: string; problem: TrainingSetProblem; currentRemoved: boolean }) => string;
  }): Promise<CustomerDataDeletion> {
    const { ownerId, customerId, now } = input;
    return this.db.write(async (trx) => {
      const deletedClassifiers = (
        await trx
          .selectFrom('classifiers')
          .select('id')
          .where('owner_id', '=', ownerId)
          .where('customer_id', '=', customerId)
          .execute()
      ).map((r) => r.id);
      const hashes = new Set<string>();
      const pendingFiles: string[] = [];
      for (const id of deletedClassifiers) {
        const deleted = await deleteIn(trx, id, now);
        deleted.imageHashes.forEach((h) => hashes.add(h));
        pendingFiles.push(...deleted.pendingFiles);
      }
      pendingFiles.push(...(await deleteCustomerPendingZips(trx, ownerId, customerId)));

      const labelled = await trx
        .selectFrom('examples as e')
        .innerJoin('classifiers as c', 'c.id', 'e.classifier_id')
        .select(['e.id', 'e.classifier_id', 'e.image_hash', 'e.generation'])
        .where('c.owner_id', '=', ownerId)
        .where('e.customer_id', '=', customerId)
        .execute();
      labelled.forEach((e) => hashes.add(e.image_hash));
      const byClassifier = new Map<string, typeof labelled>();
      for (const e of labelled) byClassifier.set(e.classifier_id, [...(byClassifier.get(e.classifier_id) ?? []), e]);

      const retrainClassifiers: string[] = [];
      const removedHeadFiles: string[] = [];
      for (const [id, deleted] of byClassifier) {
        const deletedIds = deleted.map((e) => e.id);
        // The latest upload's report names entries, the deleted ones among them.
        await trx.deleteFrom('upload_reports').where('classifier_id', '=', id).execute();
        const tainted = await versionsTrainedOn(trx, id, deletedIds, Math.min(...deleted.map((e) => e.generation)));
        for (const ids of chunks(deletedIds, 500)) {
          await trx.deleteFrom('examples').where('id', 'in', ids).execute();
          await trx.deleteFrom('version_examples').where('example_id', 'in', ids).execute();
          await trx.deleteFrom('retired_examples').where('example_id', 'in', ids).execute();
        }
        await trx
          .deleteFrom('classes')
          .where('classifier_id', '=', id)
          .where(
            'name',
            'not in',
            trx
              .selectFrom('examples')
              .select('class_name')
              .distinct()
              .where('classifier_id', '=', id)
              .where('class_name', 'is not', null)
              .where('id', 'not in', retiredIds(trx, id))
              .$narrowType<{ class_name: string }>(),
          )
          .execute();

        const row = await trx
          .selectFrom('classifiers')
          .select(['generation', 'current_version_id'])
          .where('id', '=', id)
          .executeTakeFirstOrThrow();
        const problem = await trainingSetProblem(trx, id);
        const currentTainted = row.current_version_id !== null && tainted.includes(row.current_version_id);
        // Serves on until the retrain replaces it, if one can; otherwise it goes now with the rest.
        const markedCurrent = currentTainted && problem === undefined ? row.current_version_id : null;
        removedHeadFiles.push(
          ...(await removeVersions(
            trx,
            id,
            tainted.filter((v) => v !== markedCurrent),
            now,
          )),
        );
        (await deleteUnusedRetiredExamples(trx, id)).forEach((h) => hashes.add(h));
        if (markedCurrent !== null)
          await trx
            .insertInto('versions_to_remove')
            .values({ version_id: markedCurrent, classifier_id: id, since: now })
            .execute();

        const current = currentTainted && markedCurrent === null ? null : row.current_version_id;
        const generation = row.generation + 1;
        const common = { generation, updated: now, current_version_id: current };
        if (current !== null && !currentTainted && !(await hasPendingExamples(trx, id, current))) {
          // What is left is exactly what the current version trained on: nothing to train.
          await trx
            .updateTable('classifiers')
            .set({ ...common, trained_generation: generation, status: 'ready', explanation: null })
            .where('id', '=', id)
            .execute();
        } else if (problem !== undefined) {
          const explanation = input.explain({
            classifierId: id,
            problem,
            currentRemoved: current === null && row.current_version_id !== null,
          });
          await trx
            .updateTable('classifiers')
            .set({ ...common, trained_generation: generation, status: 'failed', explanation })
            .where('id', '=', id)
            .execute();
        } else {
          await trx
            .updateTable('classifiers')
            .set({ ...common, status: current === null ? 'training' : 'retraining', explanation: null })
            .where('id', '=', id)
            .execute();
          retrainClassifiers.push(id);
        }
      }
      return { deletedClassifiers, retrainClassifiers, removedHeadFiles, imageHashes: [...hashes], pendingFiles };
    });
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

async function writeUploadReport(trx: Queries, id: string, generation: number, report: unknown): Promise<void> {
  if (report === undefined) return;
  const checked = JSON.stringify(report);
  await trx
    .insertInto('upload_reports')
    .values({ classifier_id: id, generation, checked, decoded: null })
    .onConflict((oc) => oc.column('classifier_id').doUpdateSet({ generation, checked, decoded: null }))
    .execute();
}

async function deleteIn(
  trx: Queries,
  id: string,
  now: string,
): Promise<{ deleted: boolean; imageHashes: string[]; pendingFiles: string[] }> {
  const pendingFiles = await pendingFilesOf(trx, id);
  const hashes = (
    await trx.selectFrom('examples').select('image_hash').distinct().where('classifier_id', '=', id).execute()
  ).map((r) => r.image_hash);
  const served = await trx
    .selectFrom('versions')
    .select('id')
    .where('classifier_id', '=', id)
    .where('id', 'not in', trx.selectFrom('pruned_versions').select('version_id').where('classifier_id', '=', id))
    .execute();
  await logForgottenHeads(
    trx,
    id,
    served.map((v) => v.id),
    now,
  );
  const result = await trx.deleteFrom('classifiers').where('id', '=', id).executeTakeFirst();
  return { deleted: Number(result.numDeletedRows) > 0, imageHashes: hashes, pendingFiles };
}

/**
 * The classifier's versions trained on any of `exampleIds`: from the examples each version
 * recorded, and, for pruned versions (whose lists are gone), every one made at or after
 * `fromGeneration`, the oldest generation among those examples (when the first of them arrived).
 */
async function versionsTrainedOn(
  trx: Queries,
  classifierId: string,
  exampleIds: number[],
  fromGeneration: number,
): Promise<number[]> {
  const found = await versionsListingExamples(trx, exampleIds);
  const pruned = await trx
    .selectFrom('versions as v')
    .innerJoin('pruned_versions as p', 'p.version_id', 'v.id')
    .select('v.id')
    .where('v.classifier_id', '=', classifierId)
    .where('v.generation', '>=', fromGeneration)
    .execute();
  pruned.forEach((r) => found.add(r.id));
  return [...found];
}

/** Whether the training set holds an example the version did not train on. */
async function hasPendingExamples(trx: Queries, classifierId: string, versionId: number): Promise<boolean> {
  const pending = await trx
    .selectFrom('examples')
    .select('id')
    .where('classifier_id', '=', classifierId)
    .where('id', 'not in', retiredIds(trx, classifierId))
    .where('id', 'not in', trx.selectFrom('version_examples').select('example_id').where('version_id', '=', versionId))
    .limit(1)
    .executeTakeFirst();
  return pending !== undefined;
}

/** The training set's TrainingSetProblem, if it has one (the same judgement as the trainer, over image hashes). */
async function trainingSetProblem(trx: Queries, classifierId: string): Promise<TrainingSetProblem | undefined> {
  const classes = await classesOf(trx, classifierId);
  if (classes.length === 0) return { kind: 'no-classes' };
  const rows = await trx
    .selectFrom('examples')
    .select(['class_name', 'image_hash'])
    .where('classifier_id', '=', classifierId)
    .where('id', 'not in', retiredIds(trx, classifierId))
    .execute();
  const labelsOf = new Map<string, Set<string | null>>();
  for (const r of rows) labelsOf.set(r.image_hash, (labelsOf.get(r.image_hash) ?? new Set()).add(r.class_name));
  for (const className of classes) {
    if ([...labelsOf.values()].every((labels) => labels.has(className))) return { kind: 'no-negatives', className };
  }
  return undefined;
}
