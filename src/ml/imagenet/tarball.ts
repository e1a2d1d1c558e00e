import { readdir } from 'node:fs/promises';
import { isAbsolute, join, relative } from 'node:path';
import * as tar from 'tar';
import { ModelPackError } from './model-pack-error';

/** Entry types a model tarball may hold; links could point outside the extraction directory. */
const ALLOWED_ENTRY_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory']);

/**
 * Extracts a (gzipped) tarball into `destination`, an empty directory. The whole archive is listed
 * and checked first: any absolute path, `..` segment, link or special file, an unreadable archive
 * or more than `maxBytes` of content rejects it before anything is written.
 */
export async function extractTarball(
  archive: string,
  destination: string,
  maxBytes: number,
  source: string,
): Promise<void> {
  const entries: Array<{ path: string; type: string; size: number }> = [];
  try {
    // Only collect here: an exception thrown inside onReadEntry escapes tar's promise.
    await tar.t({
      file: archive,
      strict: true,
      onReadEntry: (e) => void entries.push({ path: e.path, type: e.type, size: e.size ?? 0 }),
    });
  } catch (error) {
    throw new ModelPackError(
      source,
      `not a readable tar.gz archive (${(error as Error).message}); check IMAGENET_PACK_URL`,
    );
  }
  let totalBytes = 0;
  for (const entry of entries) {
    checkEntryPath(entry.path, source);
    if (!ALLOWED_ENTRY_TYPES.has(entry.type)) {
      throw new ModelPackError(
        source,
        `the archive entry '${entry.path}' is a ${entry.type}; only files and directories are accepted`,
      );
    }
    totalBytes += entry.size;
    if (totalBytes > maxBytes)
      throw new ModelPackError(source, `the archive unpacks to more than ${maxBytes} bytes; refusing it`);
  }
  try {
    await tar.x({ file: archive, cwd: destination, strict: true });
  } catch (error) {
    throw new ModelPackError(source, `cannot unpack the archive (${(error as Error).message})`);
  }
}

function checkEntryPath(path: string, source: string): void {
  const segments = path.split(/[\\/]/);
  if (isAbsolute(path) || /^[a-zA-Z]:/.test(path) || path.startsWith('\\') || segments.includes('..')) {
    throw new ModelPackError(
      source,
      `the archive entry '${path}' would be written outside the extraction directory; refusing the archive`,
    );
  }
}

/** Every file under `dir` whose name ends with `extension`, as paths relative to `dir`. */
export async function findFiles(dir: string, extension: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name.toLowerCase().endsWith(extension))
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}
