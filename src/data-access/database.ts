import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';

export type Database = BetterSqlite3.Database;

/** The database was written by a newer release: starting would half-understand it. */
export class DatabaseSchemaError extends Error {}

/**
 * Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
 * Append new steps, never edit old ones.
 */
const migrations: string[] = [
  `
  CREATE TABLE owners (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL
  );
  CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES owners(id),
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('env', 'generated', 'cli')),
    created TEXT NOT NULL,
    revoked TEXT
  );
  CREATE TABLE classifiers (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('training', 'retraining', 'ready', 'failed')),
    explanation TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    retrained TEXT,
    generation INTEGER NOT NULL,
    trained_generation INTEGER NOT NULL DEFAULT 0,
    current_version_id INTEGER,
    customer_id TEXT
  );
  CREATE INDEX classifiers_owner ON classifiers(owner_id);
  CREATE TABLE classes (
    classifier_id TEXT NOT NULL REFERENCES classifiers(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (classifier_id, name)
  );
  CREATE TABLE examples (
    id INTEGER PRIMARY KEY,
    classifier_id TEXT NOT NULL REFERENCES classifiers(id) ON DELETE CASCADE,
    class_name TEXT,
    image_hash TEXT NOT NULL,
    generation INTEGER NOT NULL,
    customer_id TEXT,
    created TEXT NOT NULL
  );
  CREATE UNIQUE INDEX examples_unique ON examples(classifier_id, IFNULL(class_name, ''), image_hash);
  CREATE INDEX examples_hash ON examples(image_hash);
  CREATE TABLE versions (
    id INTEGER PRIMARY KEY,
    classifier_id TEXT NOT NULL REFERENCES classifiers(id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    head_file TEXT NOT NULL,
    classes TEXT NOT NULL,
    pack_key TEXT NOT NULL,
    evaluation TEXT NOT NULL,
    examples INTEGER NOT NULL,
    created TEXT NOT NULL
  );
  CREATE INDEX versions_classifier ON versions(classifier_id);
  `,
  `
  CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
  );
  `,
  // Ids that caches, files, jobs, tokens and clients hold must never name something else later:
  // a plain INTEGER PRIMARY KEY hands the largest id out again once its row is deleted, so these
  // tables are rebuilt with AUTOINCREMENT, and every classifier id ever issued is kept.
  `
  CREATE TABLE versions_autoincrement (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    classifier_id TEXT NOT NULL REFERENCES classifiers(id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    head_file TEXT NOT NULL,
    classes TEXT NOT NULL,
    pack_key TEXT NOT NULL,
    evaluation TEXT NOT NULL,
    examples INTEGER NOT NULL,
    created TEXT NOT NULL
  );
  INSERT INTO versions_autoincrement SELECT id, classifier_id, generation, head_file, classes, pack_key, evaluation, examples, created FROM versions;
  DROP TABLE versions;
  ALTER TABLE versions_autoincrement RENAME TO versions;
  CREATE INDEX versions_classifier ON versions(classifier_id);

  CREATE TABLE examples_autoincrement (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    classifier_id TEXT NOT NULL REFERENCES classifiers(id) ON DELETE CASCADE,
    class_name TEXT,
    image_hash TEXT NOT NULL,
    generation INTEGER NOT NULL,
    customer_id TEXT,
    created TEXT NOT NULL
  );
  INSERT INTO examples_autoincrement SELECT id, classifier_id, class_name, image_hash, generation, customer_id, created FROM examples;
  DROP TABLE examples;
  ALTER TABLE examples_autoincrement RENAME TO examples;
  CREATE UNIQUE INDEX examples_unique ON examples(classifier_id, IFNULL(class_name, ''), image_hash);
  CREATE INDEX examples_hash ON examples(image_hash);

  CREATE TABLE api_keys_autoincrement (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id TEXT NOT NULL REFERENCES owners(id),
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('env', 'generated', 'cli')),
    created TEXT NOT NULL,
    revoked TEXT
  );
  INSERT INTO api_keys_autoincrement SELECT id, owner_id, key_hash, key_prefix, source, created, revoked FROM api_keys;
  DROP TABLE api_keys;
  ALTER TABLE api_keys_autoincrement RENAME TO api_keys;

  CREATE TABLE issued_classifier_ids (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    issued TEXT NOT NULL
  );
  INSERT INTO issued_classifier_ids SELECT id, owner_id, created FROM classifiers;

  CREATE TABLE instance (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    id TEXT NOT NULL,
    created TEXT NOT NULL
  );
  `,
  // Versions you can use, and training-end callbacks. Side tables only (each cascades from its
  // classifier), so the versions and examples tables keep their shape whatever rebuilds them.
  `
  CREATE TABLE version_examples (
    classifier_id TEXT NOT NULL REFERENCES classifiers(id) ON DELETE CASCADE,
    version_id INTEGER NOT NULL,
    example_id INTEGER NOT NULL,
    PRIMARY KEY (version_id, example_id)
  ) WITHOUT ROWID;
  CREATE INDEX version_examples_example ON version_examples(example_id);
  CREATE INDEX version_examples_classifier ON version_examples(classifier_id);
  CREATE TABLE retired_examples (
    example_id INTEGER PRIMARY KEY,
    classifier_id TEXT NOT NULL REFERENCES classifiers(id) ON DELETE CASCADE
  );
  CREATE INDEX retired_examples_classifier ON retired_examples(classifier_id);
  CREATE TABLE version_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    classifier_id TEXT NOT NULL REFERENCES classifiers(id) ON DELETE CASCADE,
    version_id INTEGER NOT NULL,
    previous_version_id INTEGER,
    cause TEXT NOT NULL CHECK (cause IN ('trained', 'activated')),
    created TEXT NOT NULL
  );
  CREATE INDEX version_events_classifier ON version_events(classifier_id);
  CREATE TABLE pruned_versions (
    version_id INTEGER PRIMARY KEY,
    classifier_id TEXT NOT NULL REFERENCES classifiers(id) ON DELETE CASCADE,
    pruned TEXT NOT NULL
  );
  CREATE INDEX pruned_versions_classifier ON pruned_versions(classifier_id);
  CREATE TABLE version_leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    classifier_id TEXT NOT NULL REFERENCES classifiers(id) ON DELETE CASCADE,
    version_id INTEGER NOT NULL,
    expires TEXT NOT NULL
  );
  CREATE INDEX version_leases_version ON version_leases(version_id);
  CREATE INDEX version_leases_classifier ON version_leases(classifier_id);
  CREATE TABLE classifier_callbacks (
    classifier_id TEXT PRIMARY KEY REFERENCES classifiers(id) ON DELETE CASCADE,
    url TEXT NOT NULL
  );
  CREATE TABLE callback_secrets (
    owner_id TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    created TEXT NOT NULL
  );
  CREATE TABLE callback_outbox (
    delivery_id TEXT PRIMARY KEY,
    classifier_id TEXT NOT NULL REFERENCES classifiers(id) ON DELETE CASCADE,
    owner_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    created TEXT NOT NULL
  );
  CREATE INDEX callback_outbox_classifier ON callback_outbox(classifier_id);
  -- Until now every published version became current and trained on every example of its
  -- generation or earlier: record that, so existing versions can be activated and listed.
  INSERT INTO version_examples (classifier_id, version_id, example_id)
    SELECT v.classifier_id, v.id, e.id FROM versions v JOIN examples e
      ON e.classifier_id = v.classifier_id AND e.generation <= v.generation;
  INSERT INTO version_events (classifier_id, version_id, previous_version_id, cause, created)
    SELECT v.classifier_id, v.id,
      (SELECT MAX(p.id) FROM versions p WHERE p.classifier_id = v.classifier_id AND p.id < v.id), 'trained', v.created
    FROM versions v ORDER BY v.id;
  `,
  // The entry's name in the uploaded zip, so a training failure can name the file (NULL for older rows).
  `
  ALTER TABLE examples ADD COLUMN entry_name TEXT;
  `,
];

export function openDatabase(file: string): Database {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = new BetterSqlite3(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  // API and worker are separate processes writing the same file: wait for the lock instead of failing.
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

function migrate(db: Database): void {
  // IMMEDIATE takes the write lock before reading the version, so two processes starting together migrate once.
  db.transaction(() => {
    const applied = db.pragma('user_version', { simple: true }) as number;
    if (applied > migrations.length) {
      throw new DatabaseSchemaError(
        `The database has schema version ${applied}, newer than this release knows (${migrations.length}). Run the release that wrote it, or a newer one.`,
      );
    }
    for (let step = applied; step < migrations.length; step++) db.exec(migrations[step]);
    if (applied < migrations.length) db.pragma(`user_version = ${migrations.length}`);
    // The instance's identity is made with its database and never changes (see instance-identity.ts).
    db.prepare('INSERT OR IGNORE INTO instance (singleton, id, created) VALUES (1, ?, ?)').run(
      crypto.randomUUID(),
      new Date().toISOString(),
    );
  }).immediate();
}
