import crypto from 'node:crypto';
import type { Database, Queries } from './database';

export interface OutboxEntry {
  deliveryId: string;
  classifierId: string;
  ownerId: string;
  url: string;
  body: string;
}

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

/**
 * Callback secrets (one per owner) and the outbox: training-end callbacks recorded in the same
 * transaction as the run's result (recordTrainingEnd, called by VersionRepository), moved to the delivery queue later,
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
    return rows.map((r) => ({
      deliveryId: r.delivery_id,
      classifierId: r.classifier_id,
      ownerId: r.owner_id,
      url: r.url,
      body: r.body,
    }));
  }

  async removeFromOutbox(deliveryId: string): Promise<void> {
    await this.db.kysely.deleteFrom('callback_outbox').where('delivery_id', '=', deliveryId).execute();
  }
}

/** Puts the training-end callback in the outbox, if the classifier has a callback URL (inside the caller's transaction). */
export async function recordTrainingEnd(trx: Queries, classifierId: string, now: string): Promise<void> {
  const row = await trx
    .selectFrom('classifiers as c')
    .innerJoin('classifier_callbacks as cb', 'cb.classifier_id', 'c.id')
    .select(['c.owner_id', 'c.status', 'c.explanation', 'c.retrained', 'c.current_version_id', 'cb.url'])
    .where('c.id', '=', classifierId)
    .executeTakeFirst();
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
  await trx
    .insertInto('callback_outbox')
    .values({
      delivery_id: payload.delivery_id,
      classifier_id: classifierId,
      owner_id: row.owner_id,
      url: row.url,
      body: JSON.stringify(payload),
      created: now,
    })
    .execute();
}
