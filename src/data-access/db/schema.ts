import type { ColumnType, Generated } from 'kysely';

/**
 * The tables, as Kysely sees them; the same on SQLite and PostgreSQL (see migrations.ts).
 * Times are ISO-8601 UTC strings (TEXT on both, so they compare as text alike); JSON is kept as TEXT.
 * `Generated` ids are never reused (AUTOINCREMENT on SQLite, an identity column on PostgreSQL).
 */
export interface Schema {
  owners: { id: string; created: string };
  api_keys: {
    id: Generated<number>;
    owner_id: string;
    key_hash: string;
    key_prefix: string;
    source: 'env' | 'generated' | 'cli';
    created: string;
    revoked: string | null;
  };
  classifiers: {
    id: string;
    owner_id: string;
    name: string;
    status: 'training' | 'retraining' | 'ready' | 'failed';
    explanation: string | null;
    created: string;
    updated: string;
    retrained: string | null;
    generation: number;
    trained_generation: ColumnType<number, number | undefined, number>;
    current_version_id: number | null;
    customer_id: string | null;
  };
  classes: { classifier_id: string; name: string; position: number };
  examples: {
    id: Generated<number>;
    classifier_id: string;
    class_name: string | null;
    image_hash: string;
    generation: number;
    customer_id: string | null;
    created: string;
    entry_name: string | null;
  };
  versions: {
    id: Generated<number>;
    classifier_id: string;
    generation: number;
    head_file: string;
    /** JSON array of class names, in the head's order. */
    classes: string;
    pack_key: string;
    /** JSON of the held-out evaluation. */
    evaluation: string;
    examples: number;
    created: string;
  };
  secrets: { name: string; value: Buffer };
  issued_classifier_ids: { id: string; owner_id: string; issued: string };
  instance: { singleton: number; id: string; created: string };
  version_examples: { classifier_id: string; version_id: number; example_id: number };
  retired_examples: { example_id: number; classifier_id: string };
  version_events: {
    id: Generated<number>;
    classifier_id: string;
    version_id: number;
    previous_version_id: number | null;
    cause: 'trained' | 'activated';
    created: string;
  };
  pruned_versions: { version_id: number; classifier_id: string; pruned: string };
  /**
   * No longer written or read: classify requests hold their versions in Redis (VersionLeases). Left
   * in place (no migration drops it) so a process of an earlier release still running against this
   * database during an upgrade keeps answering.
   */
  version_leases: { id: Generated<number>; classifier_id: string; version_id: number; expires: string };
  classifier_callbacks: { classifier_id: string; url: string };
  callback_secrets: { owner_id: string; secret: string; created: string };
  callback_outbox: {
    delivery_id: string;
    classifier_id: string;
    owner_id: string;
    url: string;
    body: string;
    created: string;
  };
  /** Embeddings by (SHA-256 of the image bytes, pack key): float32 little-endian bytes. */
  embeddings: { hash: string; pack_key: string; vector: Buffer };
  /**
   * Images an upload in flight has stored or is about to store, not yet referenced by an example:
   * removal of unreferenced images skips them until `expires` (a crashed upload's claims lapse).
   */
  image_claims: { claim_id: string; image_hash: string; expires: string };
  /** Versions whose head no process may serve again (removed, pruned, or of a deleted classifier): ids only. */
  forgotten_heads: { id: Generated<number>; version_id: number; classifier_id: string; forgotten: string };
  /** Current versions trained on deleted customer data: removed once the classifier has a version without it. */
  versions_to_remove: { version_id: number; classifier_id: string; since: string };
  /** Per version: the out-of-fold scores of its examples and its cross-class near-duplicates (JSON, see ReviewBody). */
  version_reviews: { version_id: number; classifier_id: string; body: string };
  /** Each accepted request that removed or moved examples, under the generation it started (issue 23). */
  example_changes: {
    id: Generated<number>;
    classifier_id: string;
    generation: number;
    removed: number;
    moved: number;
    created: string;
    /** The version that applied it: the first published on its generation or a later one; null until then. */
    version_id: ColumnType<number | null, number | null | undefined, number | null>;
  };
  /**
   * Each classifier's latest upload report (JSON of UploadReportRecord): as the create/update answered
   * it, and as training left it once it had decoded every image (NULL until then).
   */
  upload_reports: { classifier_id: string; generation: number; checked: string; decoded: string | null };
  /**
   * Zips a create or update accepted whose images are not yet extracted into the image store: the file
   * under DATA_DIR/pending, and the accepted images as JSON `[[sha256, entry name], …]`.
   */
  pending_zips: {
    id: string;
    classifier_id: string;
    customer_id: string | null;
    file: string;
    entries: string;
    created: string;
  };
}
