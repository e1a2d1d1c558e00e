import fsp from 'node:fs/promises';
import path from 'node:path';
import { StartupError } from '../../errors';
import type { Database } from '../db/database';

/** The data directory holds another instance's images and heads than the database's. */
export class DataDirectoryInUseError extends StartupError {}

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
    await fsp.writeFile(path.join(dataDir, 'instance-id'), `${instanceId}\n`, { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
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
export async function recordMoveToPostgres(dataDir: string, instanceId: string, target: string, now = new Date()): Promise<void> {
  await fsp.writeFile(path.join(dataDir, 'instance-id'), `${instanceId}\n`, { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  await fsp.writeFile(path.join(dataDir, 'moved-to-postgres'), `${JSON.stringify({ instance: instanceId, to: target, moved: now.toISOString() })}\n`);
}
