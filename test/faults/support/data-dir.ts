import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { dataLayout } from '../../../src/data-access/files/data-layout';

export { tmpEntries } from '../../support/upload-files';

const IMAGE_HASH = /^[0-9a-f]{64}$/;

/** Every file under DATA_DIR/images: image files by hash, anything else (temp files) by path. */
export function storedImageFiles(dataDir: string): { hashes: string[]; others: string[] } {
  const root = dataLayout(dataDir).images;
  const hashes: string[] = [];
  const others: string[] = [];
  for (const dir of fs.existsSync(root) ? fs.readdirSync(root) : []) {
    const sub = path.join(root, dir);
    if (!fs.statSync(sub).isDirectory()) {
      others.push(sub);
      continue;
    }
    for (const name of fs.readdirSync(sub)) {
      if (IMAGE_HASH.test(name) && dir === name.slice(0, 2)) hashes.push(name);
      else others.push(path.join(sub, name));
    }
  }
  return { hashes, others };
}

/** Runs `read` on DATA_DIR/service.sqlite opened read-only beside the running service. */
export function readDatabase<T>(dataDir: string, read: (db: BetterSqlite3.Database) => T): T {
  const db = new BetterSqlite3(dataLayout(dataDir).database, { readonly: true, fileMustExist: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

export function referencedImageHashes(dataDir: string): Set<string> {
  return readDatabase(
    dataDir,
    (db) =>
      new Set(
        (db.prepare('SELECT DISTINCT image_hash FROM examples').all() as Array<{ image_hash: string }>).map(
          (r) => r.image_hash,
        ),
      ),
  );
}

/** Image files no example references, plus any other file (a temp file left mid-write). */
export function unreferencedImageFiles(dataDir: string): string[] {
  const referenced = referencedImageHashes(dataDir);
  const { hashes, others } = storedImageFiles(dataDir);
  return [...hashes.filter((h) => !referenced.has(h)), ...others];
}

export function integrityCheck(dataDir: string): string {
  return readDatabase(dataDir, (db) => db.pragma('integrity_check', { simple: true }) as string);
}

export function versionRowsOf(
  dataDir: string,
  classifierId: string,
): Array<{ id: number; generation: number; head_file: string }> {
  return readDatabase(
    dataDir,
    (db) =>
      db.prepare('SELECT id, generation, head_file FROM versions WHERE classifier_id = ?').all(classifierId) as Array<{
        id: number;
        generation: number;
        head_file: string;
      }>,
  );
}

/** Files under DATA_DIR/heads that no version row points to (temp files included). */
export function unreferencedHeadFiles(dataDir: string): string[] {
  const root = dataLayout(dataDir).heads;
  const referenced = readDatabase(
    dataDir,
    (db) =>
      new Set(
        (db.prepare('SELECT head_file FROM versions').all() as Array<{ head_file: string }>).map((r) =>
          path.normalize(r.head_file),
        ),
      ),
  );
  const files: string[] = [];
  for (const dir of fs.existsSync(root) ? fs.readdirSync(root) : []) {
    for (const name of fs.readdirSync(path.join(root, dir))) files.push(path.join(dir, name));
  }
  return files.filter((f) => !referenced.has(f));
}

/** Files under DATA_DIR/pending: zips a create or update kept whole until the worker extracts them. */
export function pendingZipFiles(dataDir: string): string[] {
  const root = dataLayout(dataDir).pending;
  return fs.existsSync(root) ? fs.readdirSync(root).sort() : [];
}

/** The kept zips the database records: file, classifier and the image hashes of their entry tables. */
export function recordedPendingZips(dataDir: string): Array<{ file: string; classifierId: string; hashes: string[] }> {
  return readDatabase(dataDir, (db) =>
    (
      db.prepare('SELECT file, classifier_id, entries FROM pending_zips ORDER BY file').all() as Array<{
        file: string;
        classifier_id: string;
        entries: string;
      }>
    ).map((r) => ({
      file: r.file,
      classifierId: r.classifier_id,
      hashes: (JSON.parse(r.entries) as Array<[string, string]>).map(([hash]) => hash),
    })),
  );
}

/** Kept zip files no row names (left by a create cut off between keeping and recording them). */
export function unrecordedPendingZips(dataDir: string): string[] {
  const recorded = new Set(recordedPendingZips(dataDir).map((z) => z.file));
  return pendingZipFiles(dataDir).filter((f) => !recorded.has(f));
}

/** Every image the data directory holds: in the image store, or in a recorded kept zip. */
export function heldImageHashes(dataDir: string): string[] {
  const held = new Set(storedImageFiles(dataDir).hashes);
  for (const zip of recordedPendingZips(dataDir)) zip.hashes.forEach((h) => held.add(h));
  return [...held].sort();
}
