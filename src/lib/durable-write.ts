import fs from 'node:fs/promises';

/**
 * Writes `bytes` to `file` so that no reader, in any process or on any machine sharing the
 * directory, ever sees a short file under that name: written to `temp` (created new, in the same
 * directory), flushed to disk, then renamed into place. On failure (a full disk) the temp file is
 * removed, so it keeps no space. Errors are the file system's.
 */
export async function writeFileDurably(temp: string, file: string, bytes: Buffer): Promise<void> {
  try {
    const handle = await fs.open(temp, 'wx');
    try {
      await handle.writeFile(bytes);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await fs.rename(temp, file);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
}
