import crypto from 'node:crypto';
import type { Database } from './database';

export interface OutboxEntry {
  deliveryId: string;
  classifierId: string;
  ownerId: string;
  url: string;
  body: string;
}

/**
 * Callback secrets (one per owner) and the outbox: training-end callbacks recorded in the same
 * transaction as the run's result (see ClassifierRepository), moved to the delivery queue later,
 * so a crash between the two loses none.
 */
export class CallbackRepository {
  constructor(private readonly db: Database) {}

  /** The owner's signing secret, made on first use. */
  secretOf(ownerId: string, now: string): { secret: string; created: string } {
    this.db
      .prepare('INSERT OR IGNORE INTO callback_secrets (owner_id, secret, created) VALUES (?, ?, ?)')
      .run(ownerId, crypto.randomBytes(32).toString('base64url'), now);
    return this.db.prepare('SELECT secret, created FROM callback_secrets WHERE owner_id = ?').get(ownerId) as {
      secret: string;
      created: string;
    };
  }

  /** Replaces the owner's secret with a new one; deliveries from now on (retries too) are signed with it. */
  rotateSecret(ownerId: string, now: string): { secret: string; created: string } {
    const secret = crypto.randomBytes(32).toString('base64url');
    this.db.prepare('INSERT OR REPLACE INTO callback_secrets (owner_id, secret, created) VALUES (?, ?, ?)').run(ownerId, secret, now);
    return { secret, created: now };
  }

  /** Callbacks recorded but not yet queued, oldest first. */
  pendingOutbox(limit: number): OutboxEntry[] {
    const rows = this.db
      .prepare('SELECT delivery_id, classifier_id, owner_id, url, body FROM callback_outbox ORDER BY created LIMIT ?')
      .all(limit) as Array<{ delivery_id: string; classifier_id: string; owner_id: string; url: string; body: string }>;
    return rows.map((r) => ({ deliveryId: r.delivery_id, classifierId: r.classifier_id, ownerId: r.owner_id, url: r.url, body: r.body }));
  }

  removeFromOutbox(deliveryId: string): void {
    this.db.prepare('DELETE FROM callback_outbox WHERE delivery_id = ?').run(deliveryId);
  }
}
