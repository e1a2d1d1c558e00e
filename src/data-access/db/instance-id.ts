import type { Database } from './database';

/**
 * An instance of the service is its database: the identity is a UUID made with the database
 * (see the `instance` table) and never changes, so every process on the same database, on any
 * machine, is the same instance, and two databases are two instances.
 */
export async function readInstanceId(db: Database): Promise<string> {
  const row = await db.kysely.selectFrom('instance').select('id').where('singleton', '=', 1).executeTakeFirstOrThrow();
  return row.id;
}

/**
 * The Redis namespace (BullMQ prefix) of an instance's queues: `<QUEUE_PREFIX>:<instance id>`.
 * Derived from the identity, so two instances on one Redis never take each other's jobs
 * whatever QUEUE_PREFIX says.
 */
export function queueNamespace(queuePrefix: string, instanceId: string): string {
  return `${queuePrefix}:${instanceId}`;
}
