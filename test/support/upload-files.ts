import fs from 'node:fs';
import path from 'node:path';
import { dataLayout } from '../../src/data-access/files/data-layout';

/**
 * Files under DATA_DIR/tmp, relative to it: uploads in flight, each in its API process's own
 * folder (`<host>@<pid>-…`, which stays while the process runs).
 */
export function tmpEntries(dataDir: string): string[] {
  const tmp = dataLayout(dataDir).tmp;
  if (!fs.existsSync(tmp)) return [];
  return (fs.readdirSync(tmp, { recursive: true, withFileTypes: true }) as fs.Dirent[])
    .filter((entry) => !entry.isDirectory())
    .map((entry) => path.relative(tmp, path.join(entry.parentPath, entry.name)));
}
