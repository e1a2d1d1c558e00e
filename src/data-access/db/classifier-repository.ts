import type { Database, Queries } from './database';
import { chunks, classesOf, findClassifierIn, retiredIds, toRecord, type ClassifierRecord } from './records';

export type { ClassifierRecord, ClassifierStatus, VersionRecord } from './records';

export interface NewExample {
  className: string | null; // null: a negative example
  imageHash: string;
  /** The entry's path in the uploaded zip, for messages (absent: unnamed). */
  entryName?: string;
}

export interface TrainingSnapshot {
  classifier: ClassifierRecord;
  /** The classifier's training set: every example not retired by an activation. */
  /** entryName: the entry's path in its zip; null for examples stored before names were kept. */
  examples: Array<{ id: number; className: string | null; imageHash: string; entryName: string | null }>;
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
      return findClassifierIn(trx, input.id);
    });
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

async function deleteIn(trx: Queries, id: string): Promise<{ deleted: boolean; imageHashes: string[] }> {
  const hashes = (await trx.selectFrom('examples').select('image_hash').distinct().where('classifier_id', '=', id).execute()).map((r) => r.image_hash);
  const result = await trx.deleteFrom('classifiers').where('id', '=', id).executeTakeFirst();
  return { deleted: Number(result.numDeletedRows) > 0, imageHashes: hashes };
}
