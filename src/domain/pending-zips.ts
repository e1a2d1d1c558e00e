import crypto from 'node:crypto';
import type { ImageClaims } from '../data-access/db/image-claims';
import type { PendingZip, PendingZipRepository } from '../data-access/db/pending-zip-repository';
import { MissingImageError, type ImageStore } from '../data-access/files/image-store';
import type { PendingZipStore } from '../data-access/files/pending-zip-store';
import { ZipFormatError } from '../data-access/zip/zip-archive';
import { readNamedZipEntries, type ZipImageEntry } from '../data-access/zip/zip-images';
import type { Logger } from '../logger';

/** What reading and extracting kept zips needs (the API process and the worker both have it). */
export interface PendingZipContext {
  images: ImageStore;
  imageClaims: ImageClaims;
  /** The kept zips' rows: classifier, customer, checked entry table. */
  pendingZips: PendingZipRepository;
  /** The kept zips' files. */
  pendingFiles: PendingZipStore;
  logger: Logger;
}

/**
 * Images written at once while extracting: each write ends with an fsync, which on most disks costs
 * more waiting than work, so several in flight keep the extraction of 1,000 images near a second.
 */
const STORE_CONCURRENCY = 8;

const sha256 = (bytes: Buffer) => crypto.createHash('sha256').update(bytes).digest('hex');

/**
 * Reads the zip's entries named in `names` (see readNamedZipEntries); false when its file is gone (its
 * classifier or customer data deleted meanwhile). A damaged archive is logged and read no further:
 * what it held stays missing, and training names those entries ("the stored copy … is missing").
 */
async function readKept(
  ctx: PendingZipContext,
  zip: PendingZip,
  names: Set<string>,
  onEntry: (entry: ZipImageEntry) => Promise<void> | void,
): Promise<boolean> {
  let failed: { error: unknown } | undefined;
  try {
    await readNamedZipEntries(ctx.pendingFiles.path(zip.file), names, (entry) =>
      Promise.resolve(onEntry(entry)).catch((error: unknown) => {
        failed = { error }; // the caller's (writing an image), not the zip's
        throw error;
      }),
    );
    return true;
  } catch (error) {
    if (failed) throw failed.error;
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    if (!(error instanceof ZipFormatError)) throw error;
    ctx.logger.warn({ classifierId: zip.classifierId, zip: zip.file, err: error }, 'a kept zip is damaged');
    return true;
  }
}

/**
 * Extracts the images of the classifier's kept zips (those a create or update accepted) into the image
 * store, then drops each zip: written durably (each file flushed, then their folders), then its row
 * deleted, then its file. A run killed midway leaves the row, and the next run extracts again (writing
 * an image already stored is skipped: ImageStore.put is idempotent). Only images an example references
 * are written; those whose examples are deleted while the zip is extracted are removed again once it
 * is dropped. Entries are matched by name and verified
 * by hash; an image that cannot be found this way stays missing and training reports it.
 * Returns how many images were written.
 * @throws the file system's errors (a full disk): the zip stays, for the next attempt
 */
export async function extractPendingZips(ctx: PendingZipContext, classifierId: string): Promise<number> {
  let written = 0;
  for (const zip of await ctx.pendingZips.ofClassifier(classifierId)) {
    // Only what an example still references: the examples of a deleted customer's request go, its zip may stay.
    const referenced = await ctx.pendingZips.referenced(zip.entries.map(([hash]) => hash));
    const wanted = new Map<string, string>();
    for (const [hash, entryName] of zip.entries)
      if (referenced.has(hash) && !(await ctx.images.has(hash))) wanted.set(hash, entryName);
    if (wanted.size > 0) {
      const stored: string[] = [];
      let batch: Buffer[] = [];
      const flush = async () => {
        const images = batch;
        batch = [];
        let next = 0;
        // Every writer settles before an error goes on: nothing may still write once the run has failed.
        const outcomes = await Promise.allSettled(
          Array.from({ length: Math.min(STORE_CONCURRENCY, images.length) }, async () => {
            while (next < images.length) stored.push((await ctx.images.put(images[next++])).hash);
          }),
        );
        const rejected = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
        if (rejected) throw rejected.reason;
      };
      const found = await readKept(ctx, zip, new Set(wanted.values()), async (entry) => {
        const hash = sha256(entry.bytes);
        if (!wanted.delete(hash)) return; // another entry of the same name, or one stored already
        batch.push(entry.bytes);
        if (batch.length >= 4 * STORE_CONCURRENCY) await flush();
      });
      await flush();
      await ctx.images.syncFolders(stored);
      written += stored.length;
      if (wanted.size > 0)
        ctx.logger.warn(
          { classifierId, zip: zip.file, missing: wanted.size, found },
          'a kept zip is gone or no longer holds some of its accepted images',
        );
    }
    await ctx.pendingZips.remove(zip.id);
    await ctx.pendingFiles.remove([zip.file]);
    // Examples deleted while the zip waited leave images nothing references.
    await ctx.imageClaims.removeUnreferenced(
      zip.entries.map(([hash]) => hash),
      (doomed) => ctx.images.remove(doomed),
    );
  }
  return written;
}

/**
 * An example image's bytes: from the image store, or, before the worker has extracted it, from the
 * classifier's kept zip that holds it.
 * @throws MissingImageError when neither has it (a damaged store)
 */
export async function readExampleImage(ctx: PendingZipContext, classifierId: string, hash: string): Promise<Buffer> {
  try {
    return await ctx.images.read(hash);
  } catch (error) {
    if (!(error instanceof MissingImageError)) throw error;
    for (const zip of await ctx.pendingZips.ofClassifier(classifierId)) {
      const entry = zip.entries.find(([h]) => h === hash);
      if (!entry) continue;
      let found: Buffer | undefined;
      await readKept(ctx, zip, new Set([entry[1]]), (e) => {
        if (!found && sha256(e.bytes) === hash) found = e.bytes;
      });
      if (found) return found;
    }
    // Extracted between the two reads?
    if (await ctx.images.has(hash)) return ctx.images.read(hash);
    throw error;
  }
}

/**
 * At start and now and then: removes kept zips no row names whose process is gone (a create that
 * died between keeping its zips and recording them). Returns how many were removed.
 */
export async function removeOrphanPendingZips(ctx: PendingZipContext): Promise<number> {
  return ctx.pendingFiles.sweep((files) => ctx.pendingZips.recorded(files));
}
