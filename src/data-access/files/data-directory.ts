import fsp from 'node:fs/promises';
import path from 'node:path';
import { StartupError } from '../../errors';
import type { Database } from '../db/database';
import { writeFileDurably } from '../../lib/durable-write';
import { claimTaggedName, releaseTaggedName } from '../../lib/process-tag';

/** The data directory holds another instance's images and heads than the database's. */
export class DataDirectoryInUseError extends StartupError {}

/** The data directory cannot be made or written: read-only, full, or not this user's. */
export class DataDirectoryUnwritableError extends StartupError {}

/**
 * Makes the data directory if needed and writes a file in it, so that a directory this process cannot write
 * (a volume mounted read-only or owned by another user, a full disk) stops the start with one message
 * saying which, before anything else is opened there.
 * @throws DataDirectoryUnwritableError
 */
export async function ensureWritableDataDirectory(dataDir: string): Promise<void> {
  const probe = claimTaggedName();
  try {
    await fsp.mkdir(dataDir, { recursive: true });
    await fsp.writeFile(path.join(dataDir, `.${probe}`), 'written at start to check that DATA_DIR is writable\n');
    await fsp.rm(path.join(dataDir, `.${probe}`));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'EROFS'
        ? 'is on a read-only file system (in a container: a volume mounted read-only)'
        : code === 'EACCES' || code === 'EPERM'
          ? `is not writable by this process's user (uid ${process.getuid?.()}; in a container the image's user node, uid 1000, must own the volume)`
          : code === 'ENOSPC' || code === 'EDQUOT'
            ? 'is on a full disk'
            : undefined;
    if (!why) throw error;
    throw new DataDirectoryUnwritableError(
      `The data directory ${dataDir} (DATA_DIR) ${why}: the service keeps its database, images, heads and models there. ` +
        `Give it a directory it can write, with free space (${(error as Error).message.split(',')[0]}).`,
    );
  } finally {
    releaseTaggedName(probe);
  }
}

/** The instance the data directory belongs to (DATA_DIR/instance-id), or undefined before its first start. */
export async function readDataDirectoryInstance(dataDir: string): Promise<string | undefined> {
  const text = await fsp.readFile(path.join(dataDir, 'instance-id'), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  return text?.trim() || undefined;
}

/**
 * Binds the data directory to the instance: the first start writes the instance id to
 * `<DATA_DIR>/instance-id`; later starts (any process, any host sharing the directory) must find
 * the same id. With PostgreSQL the database and the files live apart: pointing a second
 * instance's database at this directory would mix two instances' images and heads, and a database
 * that already has versions meeting a directory without an `instance-id` means the wrong (or an
 * unmounted) directory, whose missing head files would fail every classify.
 * @throws DataDirectoryInUseError naming both instances, or the missing files
 */
export async function bindDataDirectory(dataDir: string, instanceId: string, db: Database): Promise<void> {
  const owner = await readDataDirectoryInstance(dataDir);
  if (owner === undefined && db.dialect === 'postgres') {
    const version = await db.kysely.selectFrom('versions').select('head_file').limit(1).executeTakeFirst();
    if (version) {
      throw new DataDirectoryInUseError(
        `The database ${db.location} (instance ${instanceId}) has trained classifiers, but the data directory ${dataDir} has never been used by it ` +
          `(no instance-id; its images and heads are elsewhere). Set DATA_DIR to the instance's data directory, or mount the shared volume that holds it.`,
      );
    }
  }
  if (owner === undefined) {
    await fsp.mkdir(dataDir, { recursive: true });
    await writeInstanceIdOnce(dataDir, instanceId);
  }
  const bound = await readDataDirectoryInstance(dataDir);
  if (bound !== instanceId) {
    throw new DataDirectoryInUseError(
      `The data directory ${dataDir} belongs to instance ${bound}, but the database ${db.location} is instance ${instanceId}. ` +
        `Point DATA_DIR at this database's data directory, or DATABASE_URL at the database of instance ${bound}.`,
    );
  }
}

/**
 * Records in the data directory that the instance moved to PostgreSQL (npm run migrate): from then
 * on the SQLite file is refused (see Database.open), so no process starts on the stale copy, whose
 * orphan sweep would delete the images uploaded since. Also binds the directory to the instance,
 * if no start did yet.
 */
export async function recordMoveToPostgres(
  dataDir: string,
  instanceId: string,
  target: string,
  now = new Date(),
): Promise<void> {
  await writeInstanceIdOnce(dataDir, instanceId);
  // Whole or not at all, like instance-id: every start reads it.
  const tag = claimTaggedName();
  try {
    await writeFileDurably(
      path.join(dataDir, `.${tag}`),
      path.join(dataDir, 'moved-to-postgres'),
      Buffer.from(`${JSON.stringify({ instance: instanceId, to: target, moved: now.toISOString() })}\n`),
    );
  } finally {
    releaseTaggedName(tag);
  }
}

/**
 * Writes `<dataDir>/instance-id` unless it exists. It appears whole or not at all: written to a file of
 * this process's own, then hard-linked into place (a link, unlike a rename, fails if the name exists).
 * A process starting at the same moment thus never reads a created but not yet written file.
 */
async function writeInstanceIdOnce(dataDir: string, instanceId: string): Promise<void> {
  const tag = claimTaggedName();
  const temp = path.join(dataDir, `.${tag}`);
  try {
    await fsp.writeFile(temp, `${instanceId}\n`, { flag: 'wx' });
    await fsp.link(temp, path.join(dataDir, 'instance-id')).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  } finally {
    await fsp.rm(temp, { force: true });
    releaseTaggedName(tag);
  }
}
