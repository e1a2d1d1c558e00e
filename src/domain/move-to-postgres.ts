import fs from 'node:fs';
import path from 'node:path';
import { dataLayout } from '../data-access/files/data-layout';
import { Database, redact } from '../data-access/db/database';
import {
  CopyRefusedError,
  SqliteSource,
  assertEmptyTarget,
  copyInstance,
  removeCopiedSchema,
  type CopiedTable,
  type CopyResult,
} from '../data-access/db/instance-copy';
import { queueNamespace } from '../data-access/db/instance-id';
import { recordMoveToPostgres } from '../data-access/files/data-directory';
import { CLAIM_WATCH_MS, MigrationClaim, instanceActivity } from '../data-access/redis/running-instance';

/** The move cannot or did not happen; the message says why and what to do. Nothing changed. */
export class MoveError extends Error {}

export interface MoveOptions {
  /** The instance's data directory: its SQLite file is the source. */
  dataDir: string;
  /** postgres:// URL of an empty database. */
  targetUrl: string;
  /** The Redis the service uses (REDIS_URL, else the one on 127.0.0.1:6379), to see whether it runs. */
  redisUrl: string;
  queuePrefix: string;
  /** Progress lines for a person. */
  log: (line: string) => void;
  onTable?: (copied: CopiedTable) => void;
}

export interface MoveReport extends CopyResult {
  instanceId: string;
  source: string;
  /** The target URL without its password. */
  target: string;
  seconds: number;
  /** Why the running-service check could not be made (Redis unreachable), if so. */
  unchecked?: string;
}

/**
 * Moves an instance from its embedded SQLite file to an empty PostgreSQL database (npm run
 * migrate): refuses while a process of the instance runs (as far as Redis tells) and refuses a
 * target that is not empty; makes the schema with this release's migrations (Database.open); copies
 * and verifies every table in one transaction (copyInstance); on failure removes what it made, so
 * the target is empty again. The SQLite file is only read. Images and heads stay in the data
 * directory, whose `instance-id` still matches, since the identity moves along.
 * @throws MoveError with a message for a person
 */
export async function moveToPostgres(options: MoveOptions): Promise<MoveReport> {
  const started = Date.now();
  const target = checkTargetUrl(options.targetUrl);
  const layout = dataLayout(options.dataDir);
  const source = refusal(() => SqliteSource.open(layout.database));
  let claim: MigrationClaim | undefined;
  try {
    checkDataDirectory(options.dataDir, source.instanceId);
    const activity = await instanceActivity(options.redisUrl, source.instanceId, (key) =>
      options.log(
        `A claim of this instance is in Redis (${key}); watching it for up to ${CLAIM_WATCH_MS / 1000} s to see whether a process still runs…`,
      ),
    );
    if (activity.state === 'running') {
      throw new MoveError(
        `The instance ${source.instanceId} is running (${activity.holder} refreshed ${activity.key} in Redis just now). ` +
          `Stop every API and worker process of the instance, then run the migration again; the copy must see the database at rest.`,
      );
    }
    if (activity.state === 'unknown') {
      options.log(
        `Warning: Redis at ${redact(options.redisUrl)} does not answer (${activity.reason}), so whether the service still runs cannot be checked. ` +
          `Make sure every API and worker process of the instance is stopped (one with a private redis-server is invisible here).`,
      );
    }
    const namespace = queueNamespace(options.queuePrefix, source.instanceId);
    claim = await MigrationClaim.hold(options.redisUrl, namespace, source.instanceId, `npm run migrate (to ${target})`);
    await refusalAsync(() => assertEmptyTarget(options.targetUrl, target, source.instanceId));
    options.log(`Copying instance ${source.instanceId} from ${source.file} to ${target}`);
    const db = await Database.open({ databaseUrl: options.targetUrl, sqliteFile: layout.database }).catch(
      async (error: unknown) => {
        await removeCopiedSchema(
          options.targetUrl,
          source.tables.map((t) => t.name),
        ).catch(() => undefined);
        throw new MoveError(
          `Could not make the schema in ${target}: ${error instanceof Error ? error.message : String(error)}`,
        );
      },
    );
    let result: CopyResult;
    try {
      result = await copyInstance(source, db, options.onTable);
    } catch (error) {
      await db.close();
      await removeCopiedSchema(
        options.targetUrl,
        source.tables.map((t) => t.name),
      ).catch(() => undefined);
      throw new MoveError(
        `${error instanceof Error ? error.message : String(error)} Everything was rolled back; ${target} is empty again and the SQLite file is unchanged.`,
      );
    }
    await db.close();
    await recordMoveToPostgres(options.dataDir, source.instanceId, target);
    return {
      ...result,
      instanceId: source.instanceId,
      source: source.file,
      target,
      seconds: (Date.now() - started) / 1000,
      unchecked: activity.state === 'unknown' ? activity.reason : undefined,
    };
  } finally {
    await claim?.release();
    source.close();
  }
}

function checkTargetUrl(url: string): string {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    // reported below
  }
  if (
    !parsed ||
    !['postgres:', 'postgresql:'].includes(parsed.protocol) ||
    !parsed.hostname ||
    parsed.pathname.length <= 1
  ) {
    throw new MoveError(
      `--to must be the URL of an empty PostgreSQL database, postgres://user:password@host:5432/database (got ${parsed ? `'${redact(url)}'` : 'something that is not a URL'}).`,
    );
  }
  return redact(url);
}

/** The data directory must be this instance's (as the service checks at start), since it keeps serving its images and heads. */
function checkDataDirectory(dataDir: string, instanceId: string): void {
  const file = path.join(dataDir, 'instance-id');
  if (!fs.existsSync(file)) return;
  const owner = fs.readFileSync(file, 'utf8').trim();
  if (owner !== instanceId) {
    throw new MoveError(
      `The data directory ${dataDir} belongs to instance ${owner}, but its service.sqlite is instance ${instanceId}: the service would not start on them either. ` +
        `Set DATA_DIR to the directory the service runs with.`,
    );
  }
}

function refusal<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof CopyRefusedError) throw new MoveError(error.message);
    throw error;
  }
}

async function refusalAsync<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof CopyRefusedError) throw new MoveError(error.message);
    throw error;
  }
}
