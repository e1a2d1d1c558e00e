import crypto from 'node:crypto';
import type { Database } from './database';

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

interface ClassifierRow {
  id: string;
  owner_id: string;
  name: string;
  status: ClassifierStatus;
  explanation: string | null;
  created: string;
  updated: string;
  retrained: string | null;
  generation: number;
  trained_generation: number;
  current_version_id: number | null;
}

/**
 * Classifiers, their classes, examples and immutable versions, in SQLite. Every change is one
 * IMMEDIATE transaction: it takes the write lock before it reads, so when the API and the worker
 * write at once the later one waits (busy_timeout) instead of failing with SQLITE_BUSY_SNAPSHOT
 * on the upgrade from its read to its write.
 */
export class ClassifierRepository {
  constructor(private readonly db: Database) {}

  private classesOf(id: string): string[] {
    return (
      this.db.prepare('SELECT name FROM classes WHERE classifier_id = ? ORDER BY position').all(id) as Array<{
        name: string;
      }>
    ).map((r) => r.name);
  }

  private toRecord(row: ClassifierRow): ClassifierRecord {
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
      classes: this.classesOf(row.id),
      callbackUrl:
        (this.db.prepare('SELECT url FROM classifier_callbacks WHERE classifier_id = ?').get(row.id) as { url: string } | undefined)
          ?.url ?? null,
    };
  }

  find(id: string): ClassifierRecord | undefined {
    const row = this.db.prepare('SELECT * FROM classifiers WHERE id = ?').get(id) as ClassifierRow | undefined;
    return row && this.toRecord(row);
  }

  /** The classifier if it exists and belongs to the owner; another owner's classifier looks like a missing one. */
  findOwned(id: string, ownerId: string): ClassifierRecord | undefined {
    const found = this.find(id);
    return found && found.ownerId === ownerId ? found : undefined;
  }

  listByOwner(ownerId: string): ClassifierRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM classifiers WHERE owner_id = ? ORDER BY created, id')
      .all(ownerId) as ClassifierRow[];
    return rows.map((r) => this.toRecord(r));
  }

  listUnfinished(): ClassifierRecord[] {
    const rows = this.db
      .prepare("SELECT * FROM classifiers WHERE status IN ('training', 'retraining')")
      .all() as ClassifierRow[];
    return rows.map((r) => this.toRecord(r));
  }

  exists(id: string): boolean {
    return this.db.prepare('SELECT 1 FROM classifiers WHERE id = ?').get(id) !== undefined;
  }

  /**
   * True when this database ever issued the id, even if that classifier was deleted since: an id
   * is never given to a second classifier, so a stale job, head folder or cached head that names
   * it can only ever mean the first one.
   */
  wasIssued(id: string): boolean {
    return this.db.prepare('SELECT 1 FROM issued_classifier_ids WHERE id = ?').get(id) !== undefined;
  }

  private addClassesAndExamples(id: string, generation: number, examples: NewExample[], customerId: string | null, now: string) {
    const nextPosition =
      (this.db.prepare('SELECT MAX(position) AS p FROM classes WHERE classifier_id = ?').get(id) as { p: number | null })
        .p ?? -1;
    const insertClass = this.db.prepare(
      'INSERT OR IGNORE INTO classes (classifier_id, name, position) VALUES (?, ?, ?)',
    );
    let position = nextPosition + 1;
    for (const name of new Set(examples.map((e) => e.className).filter((c): c is string => c !== null))) {
      if (insertClass.run(id, name, position).changes > 0) position++;
    }
    const insertExample = this.db.prepare(
      `INSERT OR IGNORE INTO examples (classifier_id, class_name, image_hash, entry_name, generation, customer_id, created)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    // An example retired by an activation and sent again joins the training set again.
    const unretire = this.db.prepare(
      `DELETE FROM retired_examples WHERE example_id IN
         (SELECT id FROM examples WHERE classifier_id = ? AND IFNULL(class_name, '') = IFNULL(?, '') AND image_hash = ?)`,
    );
    for (const e of examples) {
      if (insertExample.run(id, e.className, e.imageHash, e.entryName ?? null, generation, customerId, now).changes === 0) {
        unretire.run(id, e.className, e.imageHash);
      }
    }
  }

  /** Sets (a URL) or removes (null) the classifier's callback URL; undefined leaves it as it is. */
  private writeCallbackUrl(id: string, url: string | null | undefined): void {
    if (url === undefined) return;
    if (url === null) this.db.prepare('DELETE FROM classifier_callbacks WHERE classifier_id = ?').run(id);
    else this.db.prepare('INSERT OR REPLACE INTO classifier_callbacks (classifier_id, url) VALUES (?, ?)').run(id, url);
  }

  /** Changes only the callback URL (an update that sends no examples). Returns undefined if the classifier is gone. */
  setCallbackUrl(id: string, url: string | null, now: string): ClassifierRecord | undefined {
    const done = this.db.transaction(() => {
      if (this.db.prepare('UPDATE classifiers SET updated = ? WHERE id = ?').run(now, id).changes === 0) return false;
      this.writeCallbackUrl(id, url);
      return true;
    }).immediate();
    return done ? this.find(id) : undefined;
  }

  create(input: {
    id: string;
    ownerId: string;
    name: string;
    examples: NewExample[];
    customerId: string | null;
    callbackUrl?: string | null;
    now: string;
  }): ClassifierRecord {
    this.db.transaction(() => {
      this.db
        .prepare('INSERT INTO issued_classifier_ids (id, owner_id, issued) VALUES (?, ?, ?)')
        .run(input.id, input.ownerId, input.now);
      this.db
        .prepare(
          `INSERT INTO classifiers (id, owner_id, name, status, created, updated, generation, customer_id)
           VALUES (?, ?, ?, 'training', ?, ?, 1, ?)`,
        )
        .run(input.id, input.ownerId, input.name, input.now, input.now, input.customerId);
      this.addClassesAndExamples(input.id, 1, input.examples, input.customerId, input.now);
      this.writeCallbackUrl(input.id, input.callbackUrl);
    }).immediate();
    return this.find(input.id)!;
  }

  /**
   * Accepts more examples for a retrain: bumps the generation and sets the status to
   * `retraining` (or `training` when no version exists yet). Returns undefined if the classifier is gone.
   */
  addExamples(input: {
    id: string;
    examples: NewExample[];
    customerId: string | null;
    /** Set (a URL) or removed (null) in the same transaction; undefined: unchanged. */
    callbackUrl?: string | null;
    now: string;
  }): ClassifierRecord | undefined {
    const done = this.db.transaction(() => {
      const row = this.db.prepare('SELECT generation, current_version_id FROM classifiers WHERE id = ?').get(input.id) as
        | { generation: number; current_version_id: number | null }
        | undefined;
      if (!row) return false;
      const generation = row.generation + 1;
      this.db
        .prepare(
          `UPDATE classifiers SET generation = ?, status = ?, explanation = NULL, updated = ? WHERE id = ?`,
        )
        .run(generation, row.current_version_id === null ? 'training' : 'retraining', input.now, input.id);
      this.addClassesAndExamples(input.id, generation, input.examples, input.customerId, input.now);
      this.writeCallbackUrl(input.id, input.callbackUrl);
      return true;
    }).immediate();
    return done ? this.find(input.id) : undefined;
  }

  /** Everything a training run needs, read in one transaction so examples and generation agree. */
  trainingSnapshot(id: string): TrainingSnapshot | undefined {
    return this.db.transaction(() => {
      const classifier = this.find(id);
      if (!classifier) return undefined;
      const examples = (
        this.db
          .prepare(
            `SELECT id, class_name, image_hash, entry_name FROM examples WHERE classifier_id = ?
               AND id NOT IN (SELECT example_id FROM retired_examples WHERE classifier_id = ?) ORDER BY id`,
          )
          .all(id, id) as Array<{ id: number; class_name: string | null; image_hash: string; entry_name: string | null }>
      ).map((r) => ({ id: r.id, className: r.class_name, imageHash: r.image_hash, entryName: r.entry_name }));
      return { classifier, examples };
    })();
  }

  /** How many distinct images the classifier's next version trains on (an image in two classes counts once; retired examples do not). */
  distinctImageCount(id: string): number {
    return (
      this.db
        .prepare(
          `SELECT COUNT(DISTINCT image_hash) AS n FROM examples WHERE classifier_id = ?
             AND id NOT IN (SELECT example_id FROM retired_examples WHERE classifier_id = ?)`,
        )
        .get(id, id) as { n: number }
    ).n;
  }

  /**
   * Records a finished training run and makes it the serving version, atomically, with the
   * examples it trained on (what an activation of it restores) and a `trained` event.
   * Returns false when the classifier was deleted meanwhile, or when its snapshot is older than
   * the current version's (a newer run or an activation came first): the caller removes the head file.
   * If more examples arrived while training, the status stays in training until the next run;
   * otherwise a callback, if the classifier has one, is put in the outbox in the same transaction.
   */
  publishVersion(input: {
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
  }): boolean {
    return this.db.transaction(() => {
      const row = this.db
        .prepare('SELECT generation, trained_generation, current_version_id FROM classifiers WHERE id = ?')
        .get(input.classifierId) as { generation: number; trained_generation: number; current_version_id: number | null } | undefined;
      if (!row || input.generation < row.trained_generation) return false;
      const versionId = Number(
        this.db
          .prepare(
            `INSERT INTO versions (classifier_id, generation, head_file, classes, pack_key, evaluation, examples, created)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(
            input.classifierId,
            input.generation,
            input.headFile,
            JSON.stringify(input.classes),
            input.packKey,
            JSON.stringify(input.evaluation),
            input.examples,
            input.now,
          ).lastInsertRowid,
      );
      // Only examples still there: a customer-data deletion may have removed some during the run.
      const member = this.db.prepare(
        `INSERT OR IGNORE INTO version_examples (classifier_id, version_id, example_id)
         SELECT classifier_id, ?, id FROM examples WHERE id = ? AND classifier_id = ?`,
      );
      for (const exampleId of input.exampleIds) member.run(versionId, exampleId, input.classifierId);
      const caughtUp = input.generation >= row.generation;
      const wasRetrain = row.current_version_id !== null;
      this.db
        .prepare(
          `UPDATE classifiers SET current_version_id = ?, trained_generation = ?,
             status = CASE WHEN ? THEN 'ready' ELSE status END,
             explanation = CASE WHEN ? THEN NULL ELSE explanation END,
             retrained = CASE WHEN ? THEN ? ELSE retrained END
           WHERE id = ?`,
        )
        .run(versionId, input.generation, caughtUp ? 1 : 0, caughtUp ? 1 : 0, wasRetrain ? 1 : 0, input.now, input.classifierId);
      this.recordEvent(input.classifierId, versionId, row.current_version_id, 'trained', input.now);
      if (caughtUp) this.recordTrainingEnd(input.classifierId, input.now);
      return true;
    }).immediate();
  }

  /**
   * Marks a training run as failed unless newer examples arrived meanwhile (then the next run decides).
   * The current version, if any, keeps serving. Returns whether the failure was recorded.
   */
  markFailed(id: string, generation: number, explanation: string, now: string): boolean {
    return this.db.transaction(() => {
      const changed =
        this.db
          .prepare(`UPDATE classifiers SET status = 'failed', explanation = ? WHERE id = ? AND generation = ?`)
          .run(explanation, id, generation).changes > 0;
      if (changed) this.recordTrainingEnd(id, now);
      return changed;
    }).immediate();
  }

  private recordEvent(classifierId: string, versionId: number, previous: number | null, cause: VersionEvent['cause'], now: string) {
    this.db
      .prepare(
        'INSERT INTO version_events (classifier_id, version_id, previous_version_id, cause, created) VALUES (?, ?, ?, ?, ?)',
      )
      .run(classifierId, versionId, previous, cause, now);
  }

  /** Puts the training-end callback in the outbox, if the classifier has a callback URL (inside the caller's transaction). */
  private recordTrainingEnd(classifierId: string, now: string): void {
    const row = this.db
      .prepare(
        `SELECT c.owner_id, c.status, c.explanation, c.retrained, c.current_version_id, cb.url
         FROM classifiers c JOIN classifier_callbacks cb ON cb.classifier_id = c.id WHERE c.id = ?`,
      )
      .get(classifierId) as
      | { owner_id: string; status: ClassifierStatus; explanation: string | null; retrained: string | null; current_version_id: number | null; url: string }
      | undefined;
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
    this.db
      .prepare('INSERT INTO callback_outbox (delivery_id, classifier_id, owner_id, url, body, created) VALUES (?, ?, ?, ?, ?, ?)')
      .run(payload.delivery_id, classifierId, row.owner_id, row.url, JSON.stringify(payload), now);
  }

  findVersion(id: number): VersionRecord | undefined {
    const row = this.db
      .prepare('SELECT v.*, p.pruned FROM versions v LEFT JOIN pruned_versions p ON p.version_id = v.id WHERE v.id = ?')
      .get(id) as
      | {
          id: number;
          classifier_id: string;
          generation: number;
          head_file: string;
          classes: string;
          pack_key: string;
          evaluation: string;
          examples: number;
          created: string;
          pruned: string | null;
        }
      | undefined;
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

  listVersions(classifierId: string): VersionRecord[] {
    const ids = this.db
      .prepare('SELECT id FROM versions WHERE classifier_id = ? ORDER BY id')
      .all(classifierId) as Array<{ id: number }>;
    return ids.map((r) => this.findVersion(r.id)!);
  }

  /** Every change of the current version, oldest first. */
  listVersionEvents(classifierId: string): VersionEvent[] {
    const rows = this.db
      .prepare('SELECT version_id, previous_version_id, cause, created FROM version_events WHERE classifier_id = ? ORDER BY id')
      .all(classifierId) as Array<{ version_id: number; previous_version_id: number | null; cause: VersionEvent['cause']; created: string }>;
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
  activateVersion(input: { classifierId: string; versionId: number; discardPending: boolean; now: string }): ActivationResult {
    return this.db.transaction((): ActivationResult => {
      const c = this.find(input.classifierId);
      if (!c) return { outcome: 'no-classifier' };
      const version = this.findVersion(input.versionId);
      if (!version || version.classifierId !== c.id) return { outcome: 'no-version' };
      if (version.pruned) return { outcome: 'pruned' };
      if (version.id === c.currentVersionId && !input.discardPending) {
        return { outcome: 'unchanged', classifier: c, pendingExamples: 0 };
      }
      const pending = input.discardPending
        ? []
        : (this.db
            .prepare(
              `SELECT id, class_name FROM examples WHERE classifier_id = ?
                 AND id NOT IN (SELECT example_id FROM retired_examples WHERE classifier_id = ?)
                 AND id NOT IN (SELECT example_id FROM version_examples WHERE version_id = ?) ORDER BY id`,
            )
            .all(c.id, c.id, c.currentVersionId ?? -1) as Array<{ id: number; class_name: string | null }>);

      this.db
        .prepare(
          `INSERT OR IGNORE INTO retired_examples (example_id, classifier_id)
           SELECT id, classifier_id FROM examples WHERE classifier_id = ?
             AND id NOT IN (SELECT example_id FROM version_examples WHERE version_id = ?)`,
        )
        .run(c.id, version.id);
      this.db
        .prepare('DELETE FROM retired_examples WHERE example_id IN (SELECT example_id FROM version_examples WHERE version_id = ?)')
        .run(version.id);
      const unretire = this.db.prepare('DELETE FROM retired_examples WHERE example_id = ?');
      for (const e of pending) unretire.run(e.id);

      // The classes: the version's, in its order, then those only pending examples have, in their old order.
      const classNames = [...version.classes];
      for (const name of c.classes) {
        if (!classNames.includes(name) && pending.some((e) => e.class_name === name)) classNames.push(name);
      }
      this.db.prepare('DELETE FROM classes WHERE classifier_id = ?').run(c.id);
      const insertClass = this.db.prepare('INSERT INTO classes (classifier_id, name, position) VALUES (?, ?, ?)');
      classNames.forEach((name, position) => insertClass.run(c.id, name, position));

      // Generation g+1 is "exactly this version's examples", which the version represents; the
      // pending examples, if any, come back as generation g+2, which the next run trains on.
      const trainedGeneration = c.generation + 1;
      const generation = pending.length > 0 ? trainedGeneration + 1 : trainedGeneration;
      this.db
        .prepare(
          `UPDATE classifiers SET current_version_id = ?, generation = ?, trained_generation = ?, status = ?,
             explanation = NULL, updated = ? WHERE id = ?`,
        )
        .run(version.id, generation, trainedGeneration, pending.length > 0 ? 'retraining' : 'ready', input.now, c.id);
      this.recordEvent(c.id, version.id, c.currentVersionId, 'activated', input.now);
      return { outcome: 'activated', classifier: this.find(c.id)!, pendingExamples: pending.length };
    }).immediate();
  }

  /**
   * Retention: deletes the head files of all but the `keep` newest versions, never the current
   * one nor one a request in flight holds a lease on. A pruned version stays listed (marked
   * `pruned`) but can no longer be pinned or activated. Retired examples no kept version uses
   * any more are deleted. Returns the head files to remove and the image hashes those examples
   * referenced (for the image store's garbage collection).
   */
  pruneVersions(classifierId: string, keep: number, now: string): { headFiles: string[]; imageHashes: string[] } {
    return this.db.transaction(() => {
      this.db.prepare('DELETE FROM version_leases WHERE expires <= ?').run(now);
      const current = (this.db.prepare('SELECT current_version_id FROM classifiers WHERE id = ?').get(classifierId) as
        | { current_version_id: number | null }
        | undefined)?.current_version_id;
      if (current === undefined) return { headFiles: [], imageHashes: [] };
      const live = this.db
        .prepare(
          `SELECT v.id, v.head_file,
             EXISTS (SELECT 1 FROM version_leases l WHERE l.version_id = v.id) AS leased
           FROM versions v WHERE v.classifier_id = ?
             AND v.id NOT IN (SELECT version_id FROM pruned_versions WHERE classifier_id = ?)
           ORDER BY v.id DESC`,
        )
        .all(classifierId, classifierId) as Array<{ id: number; head_file: string; leased: number }>;
      const doomed = live.slice(keep).filter((v) => v.id !== current && !v.leased);
      const markPruned = this.db.prepare('INSERT INTO pruned_versions (version_id, classifier_id, pruned) VALUES (?, ?, ?)');
      const forget = this.db.prepare('DELETE FROM version_examples WHERE version_id = ?');
      for (const v of doomed) {
        markPruned.run(v.id, classifierId, now);
        forget.run(v.id);
      }
      const orphans = this.db
        .prepare(
          `SELECT e.id, e.image_hash FROM examples e JOIN retired_examples r ON r.example_id = e.id
           WHERE r.classifier_id = ? AND NOT EXISTS (SELECT 1 FROM version_examples ve WHERE ve.example_id = e.id)`,
        )
        .all(classifierId) as Array<{ id: number; image_hash: string }>;
      const removeExample = this.db.prepare('DELETE FROM examples WHERE id = ?');
      const removeRetired = this.db.prepare('DELETE FROM retired_examples WHERE example_id = ?');
      for (const e of orphans) {
        removeExample.run(e.id);
        removeRetired.run(e.id);
      }
      return { headFiles: doomed.map((v) => v.head_file), imageHashes: [...new Set(orphans.map((e) => e.image_hash))] };
    }).immediate();
  }

  /**
   * Resolves the versions a classify request uses (each classifier's current one, or the pinned
   * one) and leases them until `expires`, in one transaction, so retention cannot delete a head
   * between this read and the end of the request. Returns the lease ids for releaseLeases.
   * When the lease cannot be written (a full disk, a locked database) the request still gets its
   * versions, unleased: classifying must keep working wherever reading does, and pruning, which
   * must write too, is then just as stuck.
   */
  resolveAndLease(
    ownerId: string,
    requests: VersionRequest[],
    expires: string,
  ): { resolved: ResolvedVersion[]; leaseIds: number[] } {
    if (requests.length === 0) return { resolved: [], leaseIds: [] };
    const lease = this.db.prepare('INSERT INTO version_leases (classifier_id, version_id, expires) VALUES (?, ?, ?)');
    try {
      return this.db
        .transaction(() => this.resolveVersions(ownerId, requests, (c, v) => Number(lease.run(c, v, expires).lastInsertRowid)))
        .immediate();
    } catch (error) {
      if (!isStorageUnavailable(error)) throw error;
      return this.db.transaction(() => this.resolveVersions(ownerId, requests))();
    }
  }

  private resolveVersions(
    ownerId: string,
    requests: VersionRequest[],
    lease?: (classifierId: string, versionId: number) => number,
  ): { resolved: ResolvedVersion[]; leaseIds: number[] } {
    const leaseIds: number[] = [];
    const resolved = requests.map((r): ResolvedVersion => {
      const classifier = this.findOwned(r.classifierId, ownerId);
      if (!classifier) return { outcome: 'no-classifier' };
      const versionId = r.versionId ?? classifier.currentVersionId;
      if (versionId === null) return { outcome: 'not-trained', classifier };
      const version = this.findVersion(versionId);
      if (!version || version.classifierId !== classifier.id) return { outcome: 'no-version', classifier };
      if (version.pruned) return { outcome: 'pruned', classifier };
      if (lease) leaseIds.push(lease(classifier.id, version.id));
      return { outcome: 'ok', classifier, version };
    });
    return { resolved, leaseIds };
  }

  /** Ends a request's leases. One that cannot be deleted now (a full disk) simply expires. */
  releaseLeases(leaseIds: number[]): void {
    if (leaseIds.length === 0) return;
    const release = this.db.prepare('DELETE FROM version_leases WHERE id = ?');
    try {
      this.db.transaction(() => leaseIds.forEach((id) => release.run(id)))();
    } catch (error) {
      if (!isStorageUnavailable(error)) throw error;
    }
  }

  /** Deletes the classifier with its classes, examples and versions. Returns the image hashes it referenced. */
  delete(id: string): { deleted: boolean; imageHashes: string[] } {
    return this.db.transaction(() => {
      const hashes = (
        this.db.prepare('SELECT DISTINCT image_hash FROM examples WHERE classifier_id = ?').all(id) as Array<{
          image_hash: string;
        }>
      ).map((r) => r.image_hash);
      const deleted = this.db.prepare('DELETE FROM classifiers WHERE id = ?').run(id).changes > 0;
      return { deleted, imageHashes: hashes };
    }).immediate();
  }

  /**
   * Removes what is labelled with a customer id among one owner's classifiers: classifiers created
   * with it entirely; elsewhere its examples, and classes left without examples. Classifiers that
   * lost examples move to (re)training, so no served version keeps learning from them for long.
   */
  deleteCustomerData(ownerId: string, customerId: string, now: string): {
    deletedClassifiers: string[];
    retrainClassifiers: string[];
    imageHashes: string[];
  } {
    return this.db.transaction(() => {
      const deletedClassifiers = (
        this.db.prepare('SELECT id FROM classifiers WHERE owner_id = ? AND customer_id = ?').all(ownerId, customerId) as Array<{ id: string }>
      ).map((r) => r.id);
      const hashes = new Set<string>();
      for (const id of deletedClassifiers) this.delete(id).imageHashes.forEach((h) => hashes.add(h));

      const labelled = this.db
        .prepare(
          `SELECT e.id, e.classifier_id, e.image_hash FROM examples e JOIN classifiers c ON c.id = e.classifier_id
           WHERE c.owner_id = ? AND e.customer_id = ?`,
        )
        .all(ownerId, customerId) as Array<{ id: number; classifier_id: string; image_hash: string }>;
      const removeExample = this.db.prepare('DELETE FROM examples WHERE id = ?');
      const removeMembership = this.db.prepare('DELETE FROM version_examples WHERE example_id = ?');
      const removeRetired = this.db.prepare('DELETE FROM retired_examples WHERE example_id = ?');
      for (const e of labelled) {
        removeExample.run(e.id);
        removeMembership.run(e.id);
        removeRetired.run(e.id);
        hashes.add(e.image_hash);
      }
      const retrainClassifiers = [...new Set(labelled.map((e) => e.classifier_id))];
      for (const id of retrainClassifiers) {
        this.db
          .prepare(
            `DELETE FROM classes WHERE classifier_id = ? AND name NOT IN
               (SELECT DISTINCT class_name FROM examples WHERE classifier_id = ? AND class_name IS NOT NULL)`,
          )
          .run(id, id);
        this.db
          .prepare(
            `UPDATE classifiers SET generation = generation + 1, updated = ?, explanation = NULL,
               status = CASE WHEN current_version_id IS NULL THEN 'training' ELSE 'retraining' END
             WHERE id = ?`,
          )
          .run(now, id);
      }
      return { deletedClassifiers, retrainClassifiers, imageHashes: [...hashes] };
    }).immediate();
  }

  /**
   * Ready classifiers whose serving version was embedded under another pack key than `packKey` move to
   * retraining (generation bumped, so a run retrains them from their stored examples); their current
   * version keeps serving until the new one is published. Returns their ids.
   */
  markStalePackForRetraining(packKey: string): string[] {
    return this.db.transaction(() => {
      const stale = (
        this.db
          .prepare(
            `SELECT c.id FROM classifiers c JOIN versions v ON v.id = c.current_version_id
             WHERE c.status = 'ready' AND v.pack_key != ?`,
          )
          .all(packKey) as Array<{ id: string }>
      ).map((r) => r.id);
      const bump = this.db.prepare(`UPDATE classifiers SET generation = generation + 1, status = 'retraining', explanation = NULL WHERE id = ?`);
      for (const id of stale) bump.run(id);
      return stale;
    })();
  }

  /** Of the given hashes, those no example references any more. */
  unreferencedImages(hashes: string[]): string[] {
    const stmt = this.db.prepare('SELECT 1 FROM examples WHERE image_hash = ? LIMIT 1');
    return hashes.filter((h) => stmt.get(h) === undefined);
  }
}

/** SQLite cannot write right now (full disk, I/O error, read-only, lock held past the busy timeout). */
function isStorageUnavailable(error: unknown): boolean {
  const code = String((error as { code?: unknown })?.code ?? '');
  return code === 'SQLITE_FULL' || code === 'SQLITE_BUSY' || code === 'SQLITE_READONLY' || code.startsWith('SQLITE_IOERR');
}
