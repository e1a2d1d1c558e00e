import crypto from 'node:crypto';
import { badRequest } from '../errors';
import type { NewExample } from '../data-access/db/classifier-repository';
import { readZipImageEntries, ZipInputError, type ZipImageEntry } from '../data-access/zip/zip-images';
import { ImageDecodeError } from '../ml';
import type { ServiceContext } from './service-context';
import type { ExampleUpload } from './training-form';

/** An entry of a zip that will not train, and why. */
export interface UnusedEntry {
  entry: string;
  reason: string;
}

/**
 * What became of one uploaded zip (an extension of the create/update answer). `accepted` images
 * are the ones recorded as examples: decodable, counted once, and (for negative_examples) not the
 * same picture as an image of a class in the same request.
 */
export interface ZipUploadReport {
  file: string;
  /** Entries in the archive, folders and skipped files included. */
  entries: number;
  /** Entries that are pictures by their content (decodable or not). */
  images: number;
  decodable: number;
  /** Decodable images counted once however often they appear. */
  distinct: number;
  accepted: number;
  /** Up to MAX_LISTED entries that will not train, with the reason. */
  not_used: UnusedEntry[];
  not_used_count: number;
}

/** Entries named in a refusal or a report; the count says how many more there are. */
const MAX_LISTED = 5;
/** Images decoded together: enough to keep the embedder's batches full, few enough to bound memory. */
const DECODE_BATCH_IMAGES = 32;
const DECODE_BATCH_BYTES = 64 * 1024 * 1024;
/**
 * Images per inference run while embedding an upload. The API's one inference thread also serves
 * classify, which would otherwise wait for a whole 16-image run (the soak test saw classify's p99
 * under load go from 2× to over 4× its idle p99 when uploads embedded in 16s).
 */
const UPLOAD_INFERENCE_BATCH = 4;

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
}

const sha256 = (bytes: Buffer) => crypto.createHash('sha256').update(bytes).digest('hex');
const plural = (count: number, one: string, many = `${one}s`) => `${count} ${count === 1 ? one : many}`;

/**
 * Reads every uploaded zip, decodes each image in it (the header-first pixel limit included) and
 * records the distinct decodable ones as examples via `record`. Each image is claimed in the
 * database before its file is written (see ImageClaims), so no process removing unreferenced
 * images, on any machine, deletes it before `record` references it. The embeddings computed while
 * decoding go into the embedding cache (claimed first too: the cache keeps only embeddings of
 * referenced or claimed images), so training does not decode them again. Each zip must keep
 * at least `minImagesPerZip` and at most `maxImagesPerZip` images; otherwise, or if any zip cannot
 * be read, nothing is recorded, the images this request added are removed again, and an ApiError
 * 400 names the zip, its counts and up to five entries with reasons.
 */
export async function ingestExamples<T>(
  ctx: ServiceContext,
  uploads: ExampleUpload[],
  record: (examples: NewExample[]) => Promise<T>,
): Promise<{ result: T; reports: ZipUploadReport[] }> {
  const claim = ctx.imageClaims.open(crypto.randomUUID());
  const added: string[] = [];
  const store = async (images: Array<{ hash: string; bytes: Buffer }>) => {
    if (images.length === 0) return;
    // Claimed before written: from here on no removal in any process deletes them.
    await claim.add(images.map((i) => i.hash));
    for (const image of images) {
      await ctx.images.put(image.bytes);
      added.push(image.hash);
    }
  };
  try {
    const results: ZipResult[] = [];
    const known: KnownImages = new Map();
    for (const upload of uploads)
      results.push(await readUpload(ctx, upload, known, store, (hashes) => claim.add(hashes)));
    leaveOutNegativesSharedWithClasses(results);
    for (const r of results) {
      if (r.kept.size < ctx.config.limits.minImagesPerZip)
        throw badRequest(tooFewMessage(r, ctx.config.limits.minImagesPerZip));
    }
    const examples = results.flatMap((r) =>
      [...r.kept].map(([imageHash, entryName]) => ({ className: r.upload.className, imageHash, entryName })),
    );
    const result = await record(examples);
    await claim.release();
    return { result, reports: results.map(report) };
  } catch (error) {
    await claim.release();
    await removeUnreferencedImages(ctx, added);
    if (error instanceof ZipInputError) throw badRequest(error.message);
    throw error;
  }
}

/**
 * Images this request has already decoded, by hash: why one cannot be used, or null once it is
 * decoded and stored. The same picture in several zips (a thousand classes sharing ten images) is
 * decoded and stored once.
 */
type KnownImages = Map<string, string | null>;

async function readUpload(
  ctx: ServiceContext,
  upload: ExampleUpload,
  known: KnownImages,
  store: (images: Array<{ hash: string; bytes: Buffer }>) => Promise<void>,
  claim: (hashes: string[]) => Promise<void>,
): Promise<ZipResult> {
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
  };
  /** Each picture's first entry, and once decoded whether it can be used. */
  const firstSeen = new Map<string, { entryName: string; failure?: string }>();
  let batch: ZipImageEntry[] = [];
  let batchBytes = 0;

  const decodeBatch = async () => {
    const items = batch.map((image) => ({ ...image, hash: sha256(image.bytes) }));
    batch = [];
    batchBytes = 0;
    const fresh = items.filter((item) => {
      if (firstSeen.has(item.hash)) return false;
      firstSeen.set(item.hash, { entryName: item.entryName });
      return true;
    });
    const toDecode = fresh.filter((item) => !known.has(item.hash));
    if (toDecode.length > 0) await claim(toDecode.map((item) => item.hash));
    const failures = await decodeAndEmbed(ctx, toDecode);
    const toStore: Array<{ hash: string; bytes: Buffer }> = [];
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
      if (!known.has(hash)) {
        toStore.push({ hash, bytes: item.bytes });
        known.set(hash, null);
      }
      r.kept.set(hash, item.entryName);
      r.distinct += 1;
      if (r.distinct > limits.maxImagesPerZip) {
        throw badRequest(
          `The zip file for '${upload.fieldName}' contains more than ${plural(limits.maxImagesPerZip, 'distinct image')}; at most ${limits.maxImagesPerZip} are allowed per zip. Split the images over several requests.`,
        );
      }
    }
    await store(toStore);
  };

  const { entries } = await readZipImageEntries(upload.path, upload.fieldName, zipLimits(ctx), async (image) => {
    r.images += 1;
    batch.push(image);
    batchBytes += image.bytes.length;
    if (batch.length >= DECODE_BATCH_IMAGES || batchBytes >= DECODE_BATCH_BYTES) await decodeBatch();
  });
  await decodeBatch();
  r.entries = entries;
  return r;
}

/**
 * Decodes and embeds the images whose embedding is not cached yet, caching the new ones; a cached
 * embedding proves the image decodes. Returns the reason for each image that cannot be decoded.
 */
async function decodeAndEmbed(
  ctx: ServiceContext,
  images: Array<ZipImageEntry & { hash: string }>,
): Promise<Map<string, string>> {
  const failures = new Map<string, string>();
  if (images.length === 0) return failures;
  const { packKey } = ctx.embedder;
  const cached = await ctx.embeddings.getMany(
    images.map((i) => i.hash),
    packKey,
  );
  const missing = images.filter((i) => !cached.has(i.hash));
  if (missing.length === 0) return failures;
  const results = await ctx.embedder.analyze(
    missing.map((i) => ({ name: i.entryName, bytes: i.bytes })),
    undefined,
    { batchSize: UPLOAD_INFERENCE_BATCH, priority: 'background' },
  );
  const fresh: Array<{ hash: string; embedding: Float32Array }> = [];
  results.forEach((result, k) => {
    if (result instanceof ImageDecodeError) failures.set(missing[k].hash, result.reason);
    else fresh.push({ hash: missing[k].hash, embedding: result.embedding });
  });
  await ctx.embeddings.putMany(fresh, packKey);
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
