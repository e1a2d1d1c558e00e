import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

/**
 * Schema migrations. Two parts:
 *
 * - `LEGACY_SQLITE_STEPS`: the SQLite-only steps of releases before PostgreSQL support, recorded
 *   in `PRAGMA user_version` (1–5). They only run to bring an older SQLite file up to step 5,
 *   which is exactly what `baseline` below creates; never edit them.
 * - `migrationProvider`: Kysely migrations (recorded in `kysely_migration`), written with Kysely's
 *   schema builder so the same steps build the same tables on SQLite and PostgreSQL. `baseline`
 *   does nothing on a database the legacy steps already built. Append new steps, never edit old ones.
 */
export const LEGACY_SQLITE_STEPS: string[] = [
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

/** `user_version` of a SQLite file whose schema Kysely's migrations manage (above every legacy step). */
export const KYSELY_MANAGED_USER_VERSION = LEGACY_SQLITE_STEPS.length + 1;

type Dialect = 'sqlite' | 'postgres';

async function tableExists(db: Kysely<any>, name: string): Promise<boolean> {
  const tables = await db.introspection.getTables({ withInternalKyselyTables: false });
  return tables.some((t) => t.name === name);
}

/** The schema of legacy step 5, built with the schema builder for either dialect. */
function baseline(dialect: Dialect): Migration {
  const binary = dialect === 'sqlite' ? 'blob' : 'bytea';
  // Ids held by caches, files, jobs and clients are never handed out again.
  const neverReusedId = (name: string) =>
    [
      name,
      'integer',
      (c: any) =>
        dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey().generatedByDefaultAsIdentity(),
    ] as const;
  const cascade = (c: any) => c.notNull().references('classifiers.id').onDelete('cascade');
  return {
    async up(db: Kysely<any>) {
      if (await tableExists(db, 'classifiers')) return;
      await db.schema
        .createTable('owners')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('created', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('api_keys')
        .addColumn(...neverReusedId('id'))
        .addColumn('owner_id', 'text', (c) => c.notNull().references('owners.id'))
        .addColumn('key_hash', 'text', (c) => c.notNull().unique())
        .addColumn('key_prefix', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull().check(sql`source IN ('env', 'generated', 'cli')`))
        .addColumn('created', 'text', (c) => c.notNull())
        .addColumn('revoked', 'text')
        .execute();
      await db.schema
        .createTable('classifiers')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('owner_id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) =>
          c.notNull().check(sql`status IN ('training', 'retraining', 'ready', 'failed')`),
        )
        .addColumn('explanation', 'text')
        .addColumn('created', 'text', (c) => c.notNull())
        .addColumn('updated', 'text', (c) => c.notNull())
        .addColumn('retrained', 'text')
        .addColumn('generation', 'integer', (c) => c.notNull())
        .addColumn('trained_generation', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('current_version_id', 'integer')
        .addColumn('customer_id', 'text')
        .execute();
      await db.schema.createIndex('classifiers_owner').on('classifiers').column('owner_id').execute();
      await db.schema
        .createTable('classes')
        .addColumn('classifier_id', 'text', cascade)
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('position', 'integer', (c) => c.notNull())
        .addPrimaryKeyConstraint('classes_pkey', ['classifier_id', 'name'])
        .execute();
      await db.schema
        .createTable('examples')
        .addColumn(...neverReusedId('id'))
        .addColumn('classifier_id', 'text', cascade)
        .addColumn('class_name', 'text')
        .addColumn('image_hash', 'text', (c) => c.notNull())
        .addColumn('generation', 'integer', (c) => c.notNull())
        .addColumn('customer_id', 'text')
        .addColumn('created', 'text', (c) => c.notNull())
        .addColumn('entry_name', 'text')
        .execute();
      await db.schema
        .createIndex('examples_unique')
        .on('examples')
        .unique()
        .expression(sql`classifier_id, COALESCE(class_name, ''), image_hash`)
        .execute();
      await db.schema.createIndex('examples_hash').on('examples').column('image_hash').execute();
      await db.schema
        .createTable('versions')
        .addColumn(...neverReusedId('id'))
        .addColumn('classifier_id', 'text', cascade)
        .addColumn('generation', 'integer', (c) => c.notNull())
        .addColumn('head_file', 'text', (c) => c.notNull())
        .addColumn('classes', 'text', (c) => c.notNull())
        .addColumn('pack_key', 'text', (c) => c.notNull())
        .addColumn('evaluation', 'text', (c) => c.notNull())
        .addColumn('examples', 'integer', (c) => c.notNull())
        .addColumn('created', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('versions_classifier').on('versions').column('classifier_id').execute();
      await db.schema
        .createTable('secrets')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', binary, (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('issued_classifier_ids')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('owner_id', 'text', (c) => c.notNull())
        .addColumn('issued', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('instance')
        .addColumn('singleton', 'integer', (c) => c.primaryKey().check(sql`singleton = 1`))
        .addColumn('id', 'text', (c) => c.notNull())
        .addColumn('created', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('version_examples')
        .addColumn('classifier_id', 'text', cascade)
        .addColumn('version_id', 'integer', (c) => c.notNull())
        .addColumn('example_id', 'integer', (c) => c.notNull())
        .addPrimaryKeyConstraint('version_examples_pkey', ['version_id', 'example_id'])
        .execute();
      await db.schema.createIndex('version_examples_example').on('version_examples').column('example_id').execute();
      await db.schema
        .createIndex('version_examples_classifier')
        .on('version_examples')
        .column('classifier_id')
        .execute();
      await db.schema
        .createTable('retired_examples')
        .addColumn('example_id', 'integer', (c) => c.primaryKey())
        .addColumn('classifier_id', 'text', cascade)
        .execute();
      await db.schema
        .createIndex('retired_examples_classifier')
        .on('retired_examples')
        .column('classifier_id')
        .execute();
      await db.schema
        .createTable('version_events')
        .addColumn(...neverReusedId('id'))
        .addColumn('classifier_id', 'text', cascade)
        .addColumn('version_id', 'integer', (c) => c.notNull())
        .addColumn('previous_version_id', 'integer')
        .addColumn('cause', 'text', (c) => c.notNull().check(sql`cause IN ('trained', 'activated')`))
        .addColumn('created', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('version_events_classifier').on('version_events').column('classifier_id').execute();
      await db.schema
        .createTable('pruned_versions')
        .addColumn('version_id', 'integer', (c) => c.primaryKey())
        .addColumn('classifier_id', 'text', cascade)
        .addColumn('pruned', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('pruned_versions_classifier').on('pruned_versions').column('classifier_id').execute();
      await db.schema
        .createTable('version_leases')
        .addColumn(...neverReusedId('id'))
        .addColumn('classifier_id', 'text', cascade)
        .addColumn('version_id', 'integer', (c) => c.notNull())
        .addColumn('expires', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('version_leases_version').on('version_leases').column('version_id').execute();
      await db.schema.createIndex('version_leases_classifier').on('version_leases').column('classifier_id').execute();
      await db.schema
        .createTable('classifier_callbacks')
        .addColumn('classifier_id', 'text', (c) => c.primaryKey().references('classifiers.id').onDelete('cascade'))
        .addColumn('url', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('callback_secrets')
        .addColumn('owner_id', 'text', (c) => c.primaryKey())
        .addColumn('secret', 'text', (c) => c.notNull())
        .addColumn('created', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('callback_outbox')
        .addColumn('delivery_id', 'text', (c) => c.primaryKey())
        .addColumn('classifier_id', 'text', cascade)
        .addColumn('owner_id', 'text', (c) => c.notNull())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('body', 'text', (c) => c.notNull())
        .addColumn('created', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('callback_outbox_classifier').on('callback_outbox').column('classifier_id').execute();
    },
  };
}

/**
 * What several processes on several machines share: the embedding cache (was a SQLite file of
 * its own next to the database) and the claims of uploads in flight on images (was a lock inside
 * the one API process).
 */
function sharedStore(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('embeddings')
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('pack_key', 'text', (c) => c.notNull())
        .addColumn('vector', dialect === 'sqlite' ? 'blob' : 'bytea', (c) => c.notNull())
        .addPrimaryKeyConstraint('embeddings_pkey', ['hash', 'pack_key'])
        .execute();
      await db.schema
        .createTable('image_claims')
        .addColumn('claim_id', 'text', (c) => c.notNull())
        .addColumn('image_hash', 'text', (c) => c.notNull())
        .addColumn('expires', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('image_claims_pkey', ['image_hash', 'claim_id'])
        .execute();
      await db.schema.createIndex('image_claims_claim').on('image_claims').column('claim_id').execute();
    },
  };
}

/**
 * What DELETE /v3/user_data needs to remove every version trained on a deleted example (issue 21):
 * `forgotten_heads` logs each version whose head no process may serve again (removed, pruned, or
 * of a deleted classifier), so every API process drops it from memory and an export or activation
 * of a removed version can say why it is gone; it holds ids only, and no foreign key, so it
 * outlives a deleted classifier. `versions_to_remove` marks a current version trained on deleted
 * examples: it serves until the classifier has a version without them, then goes.
 */
function forgetCustomerData(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('forgotten_heads')
        .addColumn('id', 'integer', (c) =>
          dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey().generatedByDefaultAsIdentity(),
        )
        .addColumn('version_id', 'integer', (c) => c.notNull())
        .addColumn('classifier_id', 'text', (c) => c.notNull())
        .addColumn('forgotten', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('forgotten_heads_version').on('forgotten_heads').column('version_id').execute();
      await db.schema
        .createTable('versions_to_remove')
        .addColumn('version_id', 'integer', (c) => c.primaryKey())
        .addColumn('classifier_id', 'text', (c) => c.notNull().references('classifiers.id').onDelete('cascade'))
        .addColumn('since', 'text', (c) => c.notNull())
        .execute();
    },
  };
}

/**
 * What reviewing a classifier's examples needs (issue 23): `version_reviews` keeps, per version, the
 * out-of-fold scores of each example it evaluated and the near-duplicate pictures labelled
 * differently (JSON, read whole for the serving version only); `example_changes` records each
 * accepted request that removed or moved examples, under the generation it started, and the version
 * that applied it once one publishes (null until then), so the version list can say what changed.
 */
function reviewExamples(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('version_reviews')
        .addColumn('version_id', 'integer', (c) => c.primaryKey())
        .addColumn('classifier_id', 'text', (c) => c.notNull().references('classifiers.id').onDelete('cascade'))
        .addColumn('body', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('version_reviews_classifier').on('version_reviews').column('classifier_id').execute();
      await db.schema
        .createTable('example_changes')
        .addColumn('id', 'integer', (c) =>
          dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey().generatedByDefaultAsIdentity(),
        )
        .addColumn('classifier_id', 'text', (c) => c.notNull().references('classifiers.id').onDelete('cascade'))
        .addColumn('generation', 'integer', (c) => c.notNull())
        .addColumn('removed', 'integer', (c) => c.notNull())
        .addColumn('moved', 'integer', (c) => c.notNull())
        .addColumn('created', 'text', (c) => c.notNull())
        .addColumn('version_id', 'integer')
        .execute();
      await db.schema.createIndex('example_changes_classifier').on('example_changes').column('classifier_id').execute();
    },
  };
}

/**
 * Issue 22: a create or update answers once the images are checked and stored, and training decodes
 * them in the background. `upload_reports` keeps each classifier's latest upload report: as answered
 * (`checked`), and as training found it once every image was decoded (`decoded`, NULL until then),
 * so GET /v3/classifiers/{id} can say which images failed to decode after the answer.
 */
function uploadReports(): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('upload_reports')
        .addColumn('classifier_id', 'text', (c) => c.primaryKey().references('classifiers.id').onDelete('cascade'))
        .addColumn('generation', 'integer', (c) => c.notNull())
        .addColumn('checked', 'text', (c) => c.notNull())
        .addColumn('decoded', 'text')
        .execute();
    },
  };
}

/**
 * Issue 22: a create or update keeps each received zip whole as one durable file (DATA_DIR/pending)
 * and answers; the worker extracts its images into the image store before decoding them.
 * `pending_zips` names each such file with the request's classifier and customer id and its checked
 * entry table (`entries`: JSON `[[sha256, entry name], …]`, the images the request accepted), so the
 * extraction, a thumbnail before it, and the deletion of the classifier or of the customer's data
 * all find it. Rows go with their classifier.
 */
function pendingZips(): Migration {
  return {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('pending_zips')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('classifier_id', 'text', (c) => c.notNull().references('classifiers.id').onDelete('cascade'))
        .addColumn('customer_id', 'text')
        .addColumn('file', 'text', (c) => c.notNull())
        .addColumn('entries', 'text', (c) => c.notNull())
        .addColumn('created', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('pending_zips_classifier').on('pending_zips').column('classifier_id').execute();
    },
  };
}

/** The Kysely migrations, by name (applied in name order). */
export function migrationProvider(dialect: Dialect): MigrationProvider & { names: string[] } {
  const migrations: Record<string, Migration> = {
    '0001_baseline': baseline(dialect),
    '0002_shared_store': sharedStore(dialect),
    '0003_forget_customer_data': forgetCustomerData(dialect),
    '0004_review_examples': reviewExamples(dialect),
    '0005_upload_reports_background_ingest': uploadReports(),
    '0006_pending_zips': pendingZips(),
  };
  return { names: Object.keys(migrations), getMigrations: async () => migrations };
}
