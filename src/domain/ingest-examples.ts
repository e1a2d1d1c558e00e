import crypto from 'node:crypto';
import { badRequest } from '../errors';
import type { NewExample } from '../data-access/db/classifier-repository';
import type { NewPendingZip } from '../data-access/db/pending-zip-repository';
import { readZipImageEntries, ZipInputError, type ZipImageEntry } from '../data-access/zip/zip-images';
import type { ServiceContext } from './service-context';
import type { ExampleUpload } from './training-form';

/** An entry of a zip that will not train, and why. */
export interface UnusedEntry {
  entry: string;
  reason: string;
}

/**
 * What became of one uploaded zip (an extension of the create/update answer). `accepted` images
 * are the ones recorded as examples: passing the upload checks, counted once, and (for
 * negative_examples) not the same picture as an image of a class in the same request. `decodable`
 * counts the images that passed the checks at upload; once training has decoded them (see
 * UploadSummary.decoded) those that failed to decode are taken off and listed in `not_used`.
 */
export interface ZipUploadReport {
  file: string;
  /** Entries in the archive, folders and skipped files included. */
  entries: number;
  /** Entries that are pictures by their content (usable or not). */
  images: number;
  decodable: number;
  /** Images that passed the checks (or decoded) counted once however often they appear. */
  distinct: number;
  accepted: number;
  /** Up to MAX_LISTED entries that will not train, with the reason. */
  not_used: UnusedEntry[];
  not_used_count: number;
}

/** Entries named in a refusal or a report; the count says how many more there are. */
export const MAX_LISTED = 5;
/**
 * Images checked together: enough to keep libuv's pool busy reading headers, few enough to bound
 * memory (with CHECK_BATCH_BYTES).
 */
const CHECK_BATCH_IMAGES = 128;
const CHECK_BATCH_BYTES = 64 * 1024 * 1024;

interface ZipResult {
  upload: ExampleUpload;
  entries: number;
  images: number;
  decodable: number;
  distinct: number;
  /** Accepted images by hash: the first entry name they appeared under. */
  kept: Map<string, string>;
  unused: UnusedEntry[];
  /** Images left out of negative_examples because a class holds the same picture. */
  sharedWithClass: number;
  /** The bytes of each image kept: the room its extraction will take. */
  keptSizes: number[];
}

const sha256 = (bytes: Buffer) => crypto.createHash('sha256').update(bytes).digest('hex');
const plural = (count: number, one: string, many = `${one}s`) => `${count} ${count === 1 ? one : many}`;

/**
 * Reads every uploaded zip, checks each image in it without decoding its pixels where that suffices
 * (format, header, the pixel limit, structure: Embedder.checkImage, which decodes in full only the
 * images the checks flag, so those get the decoder's own reason) and records the distinct ones that
 * pass as examples via `record`. The images are not written one by one: each zip is kept whole as one
 * durable file (PendingZipStore: its data flushed while the checks run, then renamed into the store
 * and the folder flushed) and passed to `record` with its checked entry table, which it must record
 * in the transaction that records the examples; the worker extracts the images into the image store
 * before it decodes and embeds them (extractPendingZips), and reports the ones that then fail. So
 * an answered create loses nothing on power loss, and one that fails leaves nothing: a kept zip no
 * row names is removed here, or by the sweep once its process is gone. Each zip must keep at least
 * `minImagesPerZip` and at most `maxImagesPerZip` images; otherwise, or if any zip cannot be read,
 * nothing is recorded and an ApiError 400 names the zip, its counts and up to five entries with reasons.
 */
export async function ingestExamples<T>(
  ctx: ServiceContext,
  uploads: ExampleUpload[],
  record: (examples: NewExample[], reports: ZipUploadReport[], pendingZips: NewPendingZip[]) => Promise<T>,
): Promise<{ result: T; reports: ZipUploadReport[] }> {
  // The uploads' data goes to disk on libuv's pool while the event loop checks their images.
  const flushed = Promise.all(uploads.map((u) => ctx.pendingFiles.flush(u.path)));
  flushed.catch(() => undefined); // awaited below; a refusal before then must not leave it unhandled
  const kept: string[] = [];
  try {
    const results: ZipResult[] = [];
    const known: KnownImages = new Map();
    for (const upload of uploads) results.push(await readUpload(ctx, upload, known));
    leaveOutNegativesSharedWithClasses(results);
    for (const r of results) {
      if (r.kept.size < ctx.config.limits.minImagesPerZip)
        throw badRequest(tooFewMessage(r, ctx.config.limits.minImagesPerZip));
    }
    const examples = results.flatMap((r) =>
      [...r.kept].map(([imageHash, entryName]) => ({ className: r.upload.className, imageHash, entryName })),
    );
    const reports = results.map(report);
    // A create that fits as zips but not once extracted is refused now (507), not failed later by the worker.
    await ctx.pendingFiles.checkRoomFor(results.flatMap((r) => r.keptSizes));
    await flushed;
    const pendingZips: NewPendingZip[] = [];
    for (const r of results) {
      const file = await ctx.pendingFiles.keep(r.upload.path);
      kept.push(file);
      pendingZips.push({ file, entries: [...r.kept] });
    }
    await ctx.pendingFiles.syncFolder();
    const result = await record(examples, reports, pendingZips);
    ctx.pendingFiles.settle(kept);
    return { result, reports };
  } catch (error) {
    await ctx.pendingFiles.remove(kept).catch((err) => ctx.logger.warn({ err }, 'could not remove a refused zip'));
    ctx.pendingFiles.settle(kept);
    if (error instanceof ZipInputError) throw badRequest(error.message);
    throw error;
  }
}

/**
 * Images this request has already checked, by hash: why one cannot be used, or null once it passed.
 * The same picture in several zips (a thousand classes sharing ten images) is checked once.
 */
type KnownImages = Map<string, string | null>;

async function readUpload(ctx: ServiceContext, upload: ExampleUpload, known: KnownImages): Promise<ZipResult> {
  const { limits } = ctx.config;
  const r: ZipResult = {
    upload,
    entries: 0,
    images: 0,
    decodable: 0,
    distinct: 0,
    kept: new Map(),
    unused: [],
    sharedWithClass: 0,
    keptSizes: [],
  };
  /** Each picture's first entry, and once checked whether it can be used. */
  const firstSeen = new Map<string, { entryName: string; failure?: string }>();
  let batch: ZipImageEntry[] = [];
  let batchBytes = 0;

  const checkBatch = async () => {
    const items = batch.map((image) => ({ ...image, hash: sha256(image.bytes) }));
    batch = [];
    batchBytes = 0;
    const fresh = items.filter((item) => {
      if (firstSeen.has(item.hash)) return false;
      firstSeen.set(item.hash, { entryName: item.entryName });
      return true;
    });
    const failures = await checkImages(
      ctx,
      fresh.filter((item) => !known.has(item.hash)),
    );
    for (const item of items) {
      const first = firstSeen.get(item.hash)!;
      const isFirst = fresh.includes(item);
      if (isFirst) first.failure = known.get(item.hash) ?? failures.get(item.hash);
      if (first.failure !== undefined) {
        known.set(item.hash, first.failure);
        r.unused.push({ entry: item.entryName, reason: first.failure });
        continue;
      }
      r.decodable += 1;
      if (!isFirst) {
        r.unused.push({
          entry: item.entryName,
          reason: `the same picture as '${first.entryName}' (a duplicate counts once)`,
        });
        continue;
      }
      const { hash } = item;
      known.set(hash, null);
      r.kept.set(hash, item.entryName);
      r.keptSizes.push(item.bytes.length);
      r.distinct += 1;
      if (r.distinct > limits.maxImagesPerZip) {
        throw badRequest(
          `The zip file for '${upload.fieldName}' contains more than ${plural(limits.maxImagesPerZip, 'distinct image')}; at most ${limits.maxImagesPerZip} are allowed per zip. Split the images over several requests.`,
        );
      }
    }
  };

  const { entries } = await readZipImageEntries(upload.path, upload.fieldName, zipLimits(ctx), async (image) => {
    r.images += 1;
    batch.push(image);
    batchBytes += image.bytes.length;
    if (batch.length >= CHECK_BATCH_IMAGES || batchBytes >= CHECK_BATCH_BYTES) await checkBatch();
  });
  await checkBatch();
  r.entries = entries;
  return r;
}

/** The reason each image that fails the upload checks cannot be used, by hash (see Embedder.checkImage). */
async function checkImages(
  ctx: ServiceContext,
  images: Array<ZipImageEntry & { hash: string }>,
): Promise<Map<string, string>> {
  const failures = new Map<string, string>();
  const verdicts = await Promise.all(
    images.map((image) => ctx.embedder.checkImage({ name: image.entryName, bytes: image.bytes })),
  );
  verdicts.forEach((failure, k) => {
    if (failure) failures.set(images[k].hash, failure.reason);
  });
  return failures;
}

/**
 * A picture cannot be an example of a class and a negative example at once (training would count it
 * as the class's, leaving the negatives short): such images are left out of negative_examples, and reported.
 */
function leaveOutNegativesSharedWithClasses(results: ZipResult[]): void {
  const classImages = new Map<string, { entryName: string; fieldName: string }>();
  for (const r of results) {
    if (r.upload.className === null) continue;
    for (const [hash, entryName] of r.kept)
      if (!classImages.has(hash)) classImages.set(hash, { entryName, fieldName: r.upload.fieldName });
  }
  for (const r of results) {
    if (r.upload.className !== null) continue;
    for (const [hash, entryName] of r.kept) {
      const inClass = classImages.get(hash);
      if (!inClass) continue;
      r.kept.delete(hash);
      r.sharedWithClass += 1;
      r.unused.push({
        entry: entryName,
        reason: `the same picture as '${inClass.entryName}' in '${inClass.fieldName}'; an image of a class cannot also be a negative example`,
      });
    }
  }
}

function listUnused(unused: UnusedEntry[]): string {
  if (unused.length === 0) return '';
  const listed = unused.slice(0, MAX_LISTED).map((u) => `'${u.entry}': ${u.reason}`);
  const more = unused.length > MAX_LISTED ? `; and ${unused.length - MAX_LISTED} more` : '';
  return ` Not used: ${listed.join('; ')}${more}.`;
}

function tooFewMessage(r: ZipResult, min: number): string {
  const accepted = r.kept.size;
  const counts =
    `Of its ${plural(r.entries, 'entry', 'entries')}, ${r.images} ${r.images === 1 ? 'is an image' : 'are images'}, ` +
    `${r.decodable} can be decoded and ${r.distinct} ${r.distinct === 1 ? 'is' : 'are'} distinct` +
    (r.sharedWithClass > 0
      ? `, of which ${r.sharedWithClass} ${r.sharedWithClass === 1 ? 'is' : 'are'} also in a class zip`
      : '') +
    '.';
  return (
    `The zip file for '${r.upload.fieldName}' contains ${plural(accepted, 'usable image')}; at least ${min} ${min === 1 ? 'is' : 'are'} required. ` +
    `${counts}${listUnused(r.unused)} Add more distinct JPEG or PNG images (hidden files, __MACOSX entries and non-images are skipped).`
  );
}

function report(r: ZipResult): ZipUploadReport {
  return {
    file: r.upload.fieldName,
    entries: r.entries,
    images: r.images,
    decodable: r.decodable,
    distinct: r.distinct,
    accepted: r.kept.size,
    not_used: r.unused.slice(0, MAX_LISTED),
    not_used_count: r.unused.length,
  };
}

function zipLimits(ctx: ServiceContext) {
  const l = ctx.config.limits;
  return {
    minImages: l.minImagesPerZip,
    maxImages: l.maxImagesPerZip,
    maxZipBytes: l.maxZipBytes,
    // A single example image can be as large as a classify image; the whole zip bounds the rest.
    maxEntryBytes: l.maxClassifyImageBytes * 5,
    maxTotalUncompressedBytes: l.maxZipBytes * 4,
  };
}

/**
 * Removes the image files among `hashes` that no example references and no upload in flight (in
 * any process) has claimed. Returns how many were removed.
 */
export async function removeUnreferencedImages(ctx: ServiceContext, hashes: string[]): Promise<number> {
  return (await ctx.imageClaims.removeUnreferenced(hashes, (doomed) => ctx.images.remove(doomed))).length;
}

/**
 * At start and now and then: removes images (files and cached embeddings) a crash left behind
 * between storing them and recording their examples, or between deleting examples and their images.
 */
export async function removeOrphanImages(ctx: ServiceContext): Promise<number> {
  return removeUnreferencedImages(ctx, [
    ...new Set([...(await ctx.images.listHashes()), ...(await ctx.embeddings.listHashes())]),
  ]);
}

/**
 * Head files no version needs, older than `minAgeMs`: a training run killed between writing its head
 * and publishing it (a run in progress publishes within moments of writing), or a pruned version's
 * that retention left to a request holding it (removed once no request holds it). Returns how many
 * were removed.
 * @throws when the version leases cannot be read (Redis away): nothing is removed then
 */
export async function removeOrphanHeads(ctx: ServiceContext, minAgeMs: number): Promise<number> {
  const candidates = await ctx.heads.listOlderThan(minAgeMs);
  if (candidates.length === 0) return 0;
  const inUse = await ctx.versions.headFilesInUse(candidates, await ctx.leases.held());
  const orphans = candidates.filter((file) => !inUse.has(file));
  for (const file of orphans) await ctx.heads.remove(file);
  return orphans.length;
}
