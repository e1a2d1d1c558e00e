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
  async secretOf(ownerId: string, now: string): Promise<{ secret: string; created: string }> {
    await this.db.kysely
      .insertInto('callback_secrets')
      .values({ owner_id: ownerId, secret: crypto.randomBytes(32).toString('base64url'), created: now })
      .onConflict((oc) => oc.column('owner_id').doNothing())
      .execute();
    return this.db.kysely
      .selectFrom('callback_secrets')
      .select(['secret', 'created'])
      .where('owner_id', '=', ownerId)
      .executeTakeFirstOrThrow();
  }

  /** Replaces the owner's secret with a new one; deliveries from now on (retries too) are signed with it. */
  async rotateSecret(ownerId: string, now: string): Promise<{ secret: string; created: string }> {
    const secret = crypto.randomBytes(32).toString('base64url');
    await this.db.kysely
      .insertInto('callback_secrets')
      .values({ owner_id: ownerId, secret, created: now })
      .onConflict((oc) => oc.column('owner_id').doUpdateSet({ secret, created: now }))
      .execute();
    return { secret, created: now };
  }

  /** Callbacks recorded but not yet queued, oldest first. */
  async pendingOutbox(limit: number): Promise<OutboxEntry[]> {
    const rows = await this.db.kysely
      .selectFrom('callback_outbox')
      .select(['delivery_id', 'classifier_id', 'owner_id', 'url', 'body'])
      .orderBy('created')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ deliveryId: r.delivery_id, classifierId: r.classifier_id, ownerId: r.owner_id, url: r.url, body: r.body }));
  }

  async removeFromOutbox(deliveryId: string): Promise<void> {
    await this.db.kysely.deleteFrom('callback_outbox').where('delivery_id', '=', deliveryId).execute();
  }
}
