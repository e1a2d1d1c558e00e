import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';

export type Database = BetterSqlite3.Database;

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
    for (let step = applied; step < migrations.length; step++) db.exec(migrations[step]);
    if (applied < migrations.length) db.pragma(`user_version = ${migrations.length}`);
  }).immediate();
}
