import type { ClassifierRepository, TrainingSnapshot } from '../data-access/db/classifier-repository';
import type { PublishResult, VersionRepository } from '../data-access/db/version-repository';
import type { HeadStore } from '../data-access/files/head-store';
import type { ImageClaims } from '../data-access/db/image-claims';
import type { ImageStore } from '../data-access/files/image-store';
import type { PendingZipRepository } from '../data-access/db/pending-zip-repository';
import type { PendingZipStore } from '../data-access/files/pending-zip-store';
import type { EmbeddingCache } from '../data-access/db/embedding-cache';
import type { VersionLeaseReader } from '../data-access/redis/version-leases';
import { HeadTrainingError, ImageDecodeError, serializeHead, trainHead, type Embedder, type NegativeBank } from '../ml';
import type { Logger } from '../logger';
import { applyRetention } from './apply-retention';
import { failedReplacementExplanation } from './deletion-messages';
import { buildReview } from './example-review';
import { extractPendingZips } from './pending-zips';
import { decodedUpload, uploadClassNames, type DecodeFailure } from './upload-report';

export interface TrainingContext {
  classifiers: ClassifierRepository;
  versions: VersionRepository;
  images: ImageStore;
  /** Zips accepted and not yet extracted into `images` (rows, files): each run extracts them first. */
  pendingZips: PendingZipRepository;
  pendingFiles: PendingZipStore;
  /** Coordinates removing image files with uploads in flight in other processes. */
  imageClaims: ImageClaims;
  heads: HeadStore;
  /** The versions classify requests hold (retention spares them). */
  leases: VersionLeaseReader;
  embedder: Embedder;
  cache: EmbeddingCache;
  /** Generic photos every class learns as negatives (open-set scores); absent for a pack it was not built for. */
  negativeBank?: NegativeBank;
  threads: number;
  /** Retention: how many of the newest versions keep their head files (KEEP_VERSIONS). */
  keepVersions: number;
  /** Usable images each zip of an upload must keep once decoded (MIN_IMAGES_PER_ZIP, as the upload checked). */
  minImagesPerZip: number;
  logger: Logger;
  now: () => string;
}

/** Bad training data: retrying cannot help, the user must change the examples. */
export class TrainingDataError extends Error {}

/**
 * A job names a classifier this instance's database never issued: it was queued by another
 * instance (or by hand). Retrying here cannot help, and dropping it silently would hide the fault.
 */
export class ForeignJobError extends Error {}

export type TrainingOutcome = 'trained' | 'up-to-date' | 'gone';

const EMBED_CHUNK = 64;
const EMBEDDING_SHARE_OF_PROGRESS = 0.8;

/**
 * One training run: decodes and embeds the examples not in the cache (an upload only checks its
 * images, so this is where they are first decoded; the cache keeps what a killed run embedded), records
 * the latest upload's report as decoded (images that failed named in it), trains a head on everything
 * usable, writes the version file and makes it the serving version in one transaction. Fails with
 * TrainingDataError, naming the entries, when a class has no readable image or a zip of the latest
 * upload keeps fewer than `minImagesPerZip` images once decoded. Guards against stale work: a
 * classifier deleted or already trained on this data is left alone.
 */
export async function trainClassifier(
  ctx: TrainingContext,
  classifierId: string,
  options: { finalAttempt: boolean; onProgress?: (fraction: number) => Promise<void> | void },
): Promise<TrainingOutcome> {
  const snapshot = await ctx.classifiers.trainingSnapshot(classifierId);
  if (!snapshot) {
    if (await ctx.classifiers.wasIssued(classifierId)) return 'gone';
    throw new ForeignJobError(
      `The classifier '${classifierId}' was never created in this instance's database, so this job belongs to another instance.`,
    );
  }
  const { classifier } = snapshot;
  if (classifier.trainedGeneration >= classifier.generation) return 'up-to-date';
  try {
    return await trainSnapshot(ctx, snapshot, options.onProgress ?? (() => undefined));
  } catch (error) {
    // Bad data fails at once; a fault (disk, runtime) fails the classifier only when no retry is left.
    let explanation: string | undefined;
    if (error instanceof TrainingDataError) {
      explanation = error.message;
    } else if (options.finalAttempt) {
      const reason = error instanceof Error ? error.message : String(error);
      explanation = `Training failed after several attempts (${reason}). The previous version, if any, keeps serving; send the update again to retry.`;
    }
    if (explanation !== undefined) {
      const { removedHeadFiles } = await ctx.versions.markFailed(
        classifierId,
        classifier.generation,
        explanation,
        ctx.now(),
        failedReplacementExplanation,
      );
      for (const file of removedHeadFiles) await ctx.heads.remove(file);
    }
    throw error;
  }
}

async function trainSnapshot(
  ctx: TrainingContext,
  snapshot: TrainingSnapshot,
  onProgress: (fraction: number) => Promise<void> | void,
): Promise<TrainingOutcome> {
  const { classifier, examples } = snapshot;
  const classifierId = classifier.id;

  // After the snapshot: every zip holding one of its examples was recorded with it, so is listed now.
  await extractPendingZips(ctx, classifierId);
  const hashes = [...new Set(examples.map((e) => e.imageHash))];
  const { embeddings, failures } = await embedAll(ctx, hashes, (f) => onProgress(f * EMBEDDING_SHARE_OF_PROGRESS));

  const classes = classifier.classes;
  const classIndex = new Map(classes.map((c, i) => [c, i]));
  const positivesByHash = new Map<string, number[]>();
  for (const e of examples) {
    if (!embeddings.has(e.imageHash)) continue;
    const list = positivesByHash.get(e.imageHash) ?? [];
    if (e.className !== null) list.push(classIndex.get(e.className)!);
    positivesByHash.set(e.imageHash, list);
  }
  const usable = [...positivesByHash.keys()];
  const shortZips = await recordDecodedUpload(ctx, classifier, failures, usable.length);
  for (const [i, name] of classes.entries()) {
    if (!usable.some((h) => positivesByHash.get(h)!.includes(i))) {
      const unreadable = examples
        .filter((e) => e.className === name)
        .map((e) => `${entryLabel(e)}: ${failures.get(e.imageHash) ?? 'it could not be read'}`);
      throw new TrainingDataError(
        unreadable.length === 0
          ? `The class '${name}' has no example images. Send a zip of images of '${name}' as ${name}_positive_examples with POST /v3/classifiers/${classifierId}.`
          : `The class '${name}' has no image that could be read (${listed(unreadable)}). Send images of '${name}' that open in an image viewer, in a zip, with POST /v3/classifiers/${classifierId}.`,
      );
    }
    if (usable.every((h) => positivesByHash.get(h)!.includes(i)))
      throw new TrainingDataError(noNegativesMessage(classifierId, name, examples));
  }
  if (shortZips) throw new TrainingDataError(shortZips);

  let head;
  try {
    head = await trainHead(
      {
        classes,
        embeddings: usable.map((h) => embeddings.get(h)!),
        positives: usable.map((h) => positivesByHash.get(h)!),
        implicitNegatives: ctx.negativeBank?.embeddings,
      },
      {
        packKey: ctx.embedder.packKey,
        seed: 1,
        threads: ctx.threads,
        onProgress: (f) => void onProgress(EMBEDDING_SHARE_OF_PROGRESS + f * (1 - EMBEDDING_SHARE_OF_PROGRESS)),
      },
    );
  } catch (error) {
    if (error instanceof HeadTrainingError) throw new TrainingDataError(error.message);
    throw error;
  }

  const headFile = await ctx.heads.write(classifierId, classifier.generation, serializeHead(head));
  let published: PublishResult;
  try {
    published = await ctx.versions.publishVersion({
      classifierId,
      generation: classifier.generation,
      headFile,
      classes,
      packKey: head.packKey,
      evaluation: head.evaluation,
      examples: usable.length,
      exampleIds: examples.map((e) => e.id),
      review: buildReview({
        classes,
        examples,
        images: usable,
        embeddings: usable.map((h) => embeddings.get(h)!),
        outOfFold: head.outOfFoldScores,
      }),
      now: ctx.now(),
    });
  } catch (error) {
    // No version row will ever point to it: a retry writes its own.
    await ctx.heads.remove(headFile);
    throw error;
  }
  if (!published.published) {
    // Deleted meanwhile: the write above made its folder again, so the whole folder goes; a stale run drops only its file.
    if (await ctx.classifiers.exists(classifierId)) await ctx.heads.remove(headFile);
    else await ctx.heads.removeClassifier(classifierId);
    return 'gone';
  }
  for (const file of published.removedHeadFiles) await ctx.heads.remove(file);
  await pruneOldVersions(ctx, classifierId);
  await onProgress(1);
  return 'trained';
}

type SnapshotExample = TrainingSnapshot['examples'][number];

/**
 * Records the latest upload's report as decoded, when it is the upload of the generation this run
 * trains (a later upload has its own run), with the upload's accepted images that failed to decode.
 * Returns why the run must fail when a zip of that upload keeps fewer than `minImagesPerZip` images
 * once decoded (an upload that would have been refused had its images been decoded at once), naming
 * the zip and the entries that failed; undefined otherwise.
 */
async function recordDecodedUpload(
  ctx: TrainingContext,
  classifier: TrainingSnapshot['classifier'],
  failures: Map<string, string>,
  trainingExamples: number,
): Promise<string | undefined> {
  const stored = await ctx.classifiers.latestUploadReport(classifier.id);
  if (!stored || stored.generation !== classifier.generation) return undefined;
  const failed: DecodeFailure[] = [];
  if (failures.size > 0) {
    for (const e of await ctx.classifiers.examplesOfGeneration(classifier.id, stored.generation)) {
      const reason = failures.get(e.imageHash);
      const entryName = e.entryName ?? `an image (SHA-256 ${e.imageHash.slice(0, 12)}…)`;
      if (reason !== undefined) failed.push({ className: e.className, entryName, reason });
    }
  }
  const decoded = decodedUpload(stored, failed, trainingExamples);
  await ctx.classifiers.recordDecodedUpload(classifier.id, stored.generation, decoded);
  const classOf = uploadClassNames(stored);
  const short = decoded.files.filter((f) => f.accepted < ctx.minImagesPerZip);
  if (short.length === 0) return undefined;
  const min = ctx.minImagesPerZip;
  const parts = short.map((f) => {
    const ofZip = failed.filter((x) => x.className === classOf.get(f.file)).map((x) => `'${x.entryName}': ${x.reason}`);
    return (
      `the zip file for '${f.file}' keeps ${f.accepted} usable ${f.accepted === 1 ? 'image' : 'images'} once decoded, and at least ${min} ${min === 1 ? 'is' : 'are'} required ` +
      `(${ofZip.length} could not be decoded: ${listed(ofZip)})`
    );
  });
  const sentence = parts.join('; ');
  return (
    `${sentence[0].toUpperCase()}${sentence.slice(1)}. ` +
    `Send ${short.length === 1 ? 'that zip' : 'those zips'} again with images that open in an image viewer, with POST /v3/classifiers/${classifier.id}.`
  );
}

const MAX_LISTED = 5;

function entryLabel(e: SnapshotExample): string {
  return e.entryName === null ? `an image (SHA-256 ${e.imageHash.slice(0, 12)}…)` : `'${e.entryName}'`;
}

/** Up to MAX_LISTED items joined with '; ', then how many more. */
function listed(items: string[]): string {
  const more = items.length > MAX_LISTED ? `; and ${items.length - MAX_LISTED} more` : '';
  return items.slice(0, MAX_LISTED).join('; ') + more;
}

/** Every readable example is an image of the class: say which negatives turned out to be its own pictures. */
function noNegativesMessage(classifierId: string, name: string, examples: SnapshotExample[]): string {
  const ofClass = new Set(examples.filter((e) => e.className === name).map((e) => e.imageHash));
  const shared = examples.filter((e) => e.className === null && ofClass.has(e.imageHash)).map(entryLabel);
  const why =
    shared.length > 0
      ? ` The negative examples ${listed(shared)} are the same pictures as images of '${name}', so they count as '${name}'.`
      : '';
  return (
    `The class '${name}' has no negative examples: every readable example of this classifier is an image of '${name}'.${why} ` +
    `Add a negative_examples zip of other subjects, or another class, with POST /v3/classifiers/${classifierId}.`
  );
}

/** Applies the retention setting after a new version (see applyRetention). */
async function pruneOldVersions(ctx: TrainingContext, classifierId: string): Promise<void> {
  // The new version is published: a failure here must not fail the run, only be logged.
  try {
    const pruned = await applyRetention(ctx, classifierId, ctx.keepVersions);
    if (pruned > 0) ctx.logger.info({ classifierId, pruned }, 'pruned old versions');
  } catch (err) {
    ctx.logger.warn({ err, classifierId }, 'could not prune old versions');
  }
}

/**
 * Embeddings by image hash, from the cache where present (uploads embed their images there);
 * images that cannot be decoded are left out, with the reason by hash.
 */
async function embedAll(
  ctx: TrainingContext,
  hashes: string[],
  onProgress: (fraction: number) => Promise<void> | void,
): Promise<{ embeddings: Map<string, Float32Array>; failures: Map<string, string> }> {
  const failures = new Map<string, string>();
  const packKey = ctx.embedder.packKey;
  const found = await ctx.cache.getMany(hashes, packKey);
  const missing = hashes.filter((h) => !found.has(h));
  for (let start = 0; start < missing.length; start += EMBED_CHUNK) {
    const chunk = missing.slice(start, start + EMBED_CHUNK);
    const inputs = await Promise.all(
      chunk.map(async (hash) => ({ name: hash, bytes: await ctx.images.read(hash).catch(() => undefined) })),
    );
    for (const input of inputs)
      if (!input.bytes) failures.set(input.name, 'the stored copy of the image is missing; upload it again');
    const stored = inputs.filter((input): input is { name: string; bytes: Buffer } => input.bytes !== undefined);
    const results = await ctx.embedder.analyze(stored, undefined, { priority: 'background' });
    const fresh: Array<{ hash: string; embedding: Float32Array }> = [];
    results.forEach((r, i) => {
      const hash = stored[i].name;
      if (r instanceof ImageDecodeError) {
        ctx.logger.warn({ image: hash, reason: r.reason }, 'skipping an example image that cannot be decoded');
        failures.set(hash, r.reason);
      } else {
        fresh.push({ hash, embedding: r.embedding });
        found.set(hash, r.embedding);
      }
    });
    await ctx.cache.putMany(fresh, packKey);
    await onProgress(Math.min(1, (start + chunk.length) / missing.length));
  }
  return { embeddings: found, failures };
}
