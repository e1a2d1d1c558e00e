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
}

export interface NewExample {
  className: string | null; // null: a negative example
  imageHash: string;
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
}

export interface TrainingSnapshot {
  classifier: ClassifierRecord;
  examples: Array<{ className: string | null; imageHash: string }>;
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

/** Classifiers, their classes, examples and immutable versions, in SQLite. Every change is one transaction. */
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
      `INSERT OR IGNORE INTO examples (classifier_id, class_name, image_hash, generation, customer_id, created)
       VALUES (?, ?, ?, ?, ?, ?)`,
    );
    for (const e of examples) insertExample.run(id, e.className, e.imageHash, generation, customerId, now);
  }

  create(input: {
    id: string;
    ownerId: string;
    name: string;
    examples: NewExample[];
    customerId: string | null;
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
    })();
    return this.find(input.id)!;
  }

  /**
   * Accepts more examples for a retrain: bumps the generation and sets the status to
   * `retraining` (or `training` when no version exists yet). Returns undefined if the classifier is gone.
   */
  addExamples(input: { id: string; examples: NewExample[]; customerId: string | null; now: string }): ClassifierRecord | undefined {
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
      return true;
    })();
    return done ? this.find(input.id) : undefined;
  }

  /** Everything a training run needs, read in one transaction so examples and generation agree. */
  trainingSnapshot(id: string): TrainingSnapshot | undefined {
    return this.db.transaction(() => {
      const classifier = this.find(id);
      if (!classifier) return undefined;
      const examples = (
        this.db
          .prepare('SELECT class_name, image_hash FROM examples WHERE classifier_id = ? ORDER BY id')
          .all(id) as Array<{ class_name: string | null; image_hash: string }>
      ).map((r) => ({ className: r.class_name, imageHash: r.image_hash }));
      return { classifier, examples };
    })();
  }

  /**
   * Records a finished training run and makes it the serving version, atomically.
   * Returns false when the classifier was deleted meanwhile (the caller removes the head file).
   * If more examples arrived while training, the status stays in training until the next run.
   */
  publishVersion(input: {
    classifierId: string;
    generation: number;
    headFile: string;
    classes: string[];
    packKey: string;
    evaluation: unknown;
    examples: number;
    now: string;
  }): boolean {
    return this.db.transaction(() => {
      const row = this.db
        .prepare('SELECT generation, trained_generation, current_version_id FROM classifiers WHERE id = ?')
        .get(input.classifierId) as { generation: number; trained_generation: number; current_version_id: number | null } | undefined;
      if (!row || input.generation < row.trained_generation) return false;
      const versionId = this.db
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
        ).lastInsertRowid as number;
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
      return true;
    })();
  }

  /**
   * Marks a training run as failed unless newer examples arrived meanwhile (then the next run decides).
   * The current version, if any, keeps serving.
   */
  markFailed(id: string, generation: number, explanation: string): void {
    this.db
      .prepare(`UPDATE classifiers SET status = 'failed', explanation = ? WHERE id = ? AND generation = ?`)
      .run(explanation, id, generation);
  }

  findVersion(id: number): VersionRecord | undefined {
    const row = this.db.prepare('SELECT * FROM versions WHERE id = ?').get(id) as
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
    };
  }

  listVersions(classifierId: string): VersionRecord[] {
    const ids = this.db
      .prepare('SELECT id FROM versions WHERE classifier_id = ? ORDER BY id')
      .all(classifierId) as Array<{ id: number }>;
    return ids.map((r) => this.findVersion(r.id)!);
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
    })();
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
      for (const e of labelled) {
        removeExample.run(e.id);
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
    })();
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
