import { ApiError, badRequest } from '../errors';
import { classifierNameSchema, parseRequest, type Warning } from './api-schemas';
import { newClassifierId } from './classifier-id';
import { briefClassifierView, classifierView, detailedView, type ClassifierView } from './classifier-view';
import { parseCallbackUrl } from './callbacks';
import { ingestExamples, removeUnreferencedImages, type ZipUploadReport } from './ingest-examples';
import { checkedUploadRecord, type UploadSummary } from './upload-report';
import { classifierNotFound, ownedOrNotFound } from './lookups';
import type { ServiceContext } from './service-context';
import { caseOnlyClassWarnings, parseExampleUploads, type ExampleUpload, type UploadedFile } from './training-form';

/** Extension of the create and update answers: what the caller may not have meant, when there is anything. */
function withWarnings(classes: string[], uploads: ExampleUpload[]): { warnings?: Warning[] } {
  const sent = uploads.flatMap((u) => (u.className === null ? [] : [u.className]));
  const warnings = caseOnlyClassWarnings(classes, sent);
  return warnings.length > 0 ? { warnings } : {};
}

export async function queueTraining(
  ctx: ServiceContext,
  classifierId: string,
  onFailure: () => Promise<void>,
): Promise<void> {
  try {
    await ctx.queue.enqueue(classifierId);
  } catch (error) {
    ctx.logger.error({ err: error, classifierId }, 'could not queue training');
    await onFailure();
    throw new ApiError(
      503,
      'The training queue is not available right now, so nothing was changed. Try again in a minute.',
    );
  }
}

/**
 * POST /v3/classifiers: checks the example zips' images (see ingestExamples: no pixels are decoded
 * unless a check flags an image) and keeps the zips whole, creates the classifier with its upload
 * report and kept zips and queues its first training, which extracts, decodes and embeds the images
 * in the worker. Answers `training` at once.
 */
export async function createClassifier(
  ctx: ServiceContext,
  input: { ownerId: string; name: unknown; files: UploadedFile[]; customerId: string | null; callbackUrl?: unknown },
): Promise<ClassifierView & { upload: UploadSummary; warnings?: Warning[] }> {
  // multer turns a repeated field into an array (and 'name[x]' into an object): the schema says so, rather than call the name missing.
  const name = parseRequest(classifierNameSchema, input.name);
  const uploads = parseExampleUploads(input.files);
  const callbackUrl = (await parseCallbackUrl(input.callbackUrl, ctx.config.allowPrivateUrls)) ?? null;
  const positives = uploads.filter((u) => u.className !== null).length;
  if (positives === 0 || uploads.length < 2) {
    throw badRequest(
      'At least two example sets are required: two <class>_positive_examples zips, or one <class>_positive_examples zip and a negative_examples zip.',
    );
  }
  const classNames = uploads.map((u) => u.className);
  const { result: created, reports } = await ingestExamples(ctx, uploads, async (examples, files, pendingZips) => {
    let id = newClassifierId(name);
    while (await ctx.classifiers.wasIssued(id)) id = newClassifierId(name);
    return ctx.classifiers.create({
      id,
      ownerId: input.ownerId,
      name,
      examples,
      customerId: input.customerId,
      callbackUrl,
      uploadReport: checkedUploadRecord(files, classNames),
      pendingZips,
      now: ctx.now(),
    });
  });
  await queueTraining(ctx, created.id, () => deleteClassifierData(ctx, created.id));
  return {
    ...classifierView(created),
    upload: await uploadSummary(ctx, created.id, reports),
    ...withWarnings(created.classes, uploads),
  };
}

/** Extension of the create/update answer: what each zip contributed, and how many images the next version trains on. */
async function uploadSummary(
  ctx: ServiceContext,
  classifierId: string,
  files: ZipUploadReport[],
): Promise<UploadSummary> {
  return { training_examples: await ctx.classifiers.distinctImageCount(classifierId), decoded: false, files };
}

/**
 * POST /v3/classifiers/{id}: adds examples (new classes or more images), checked and kept as a
 * create's are, and queues a retraining (the current version serves until it publishes).
 * Extension: `callback_url` sets (or, sent empty, removes) the training-end callback; sent
 * without any example file it changes only that, without retraining.
 */
export async function updateClassifier(
  ctx: ServiceContext,
  input: {
    ownerId: string;
    classifierId: string;
    files: UploadedFile[];
    customerId: string | null;
    callbackUrl?: unknown;
  },
): Promise<ClassifierView & { upload?: UploadSummary; warnings?: Warning[] }> {
  await ownedOrNotFound(ctx, input.classifierId, input.ownerId);
  const uploads = parseExampleUploads(input.files);
  const callbackUrl = await parseCallbackUrl(input.callbackUrl, ctx.config.allowPrivateUrls);
  if (uploads.length === 0 && callbackUrl !== undefined) {
    const changed = await ctx.classifiers.setCallbackUrl(input.classifierId, callbackUrl, ctx.now());
    if (!changed) throw classifierNotFound(input.classifierId);
    return detailedView(ctx, changed);
  }
  if (uploads.length === 0) {
    throw badRequest(
      'No example files were sent. Send at least one <class>_positive_examples zip or a negative_examples zip to retrain.',
    );
  }
  const classNames = uploads.map((u) => u.className);
  const { result: updated, reports } = await ingestExamples(ctx, uploads, async (examples, files, pendingZips) => {
    const added = await ctx.classifiers.addExamples({
      id: input.classifierId,
      examples,
      customerId: input.customerId,
      callbackUrl,
      uploadReport: checkedUploadRecord(files, classNames),
      pendingZips,
      now: ctx.now(),
    });
    if (!added) await ctx.pendingFiles.remove(pendingZips.map((z) => z.file));
    return added;
  });
  if (!updated) throw classifierNotFound(input.classifierId); // deleted while the zips were being read
  // If queueing fails the examples stay accepted; the worker's start-up check queues the classifier again.
  await queueTraining(ctx, updated.id, async () => undefined);
  return {
    ...classifierView(updated),
    upload: await uploadSummary(ctx, updated.id, reports),
    ...withWarnings(updated.classes, uploads),
  };
}

export async function getClassifier(
  ctx: ServiceContext,
  input: { ownerId: string; classifierId: string },
): Promise<ClassifierView> {
  return detailedView(ctx, await ownedOrNotFound(ctx, input.classifierId, input.ownerId));
}

export async function listClassifiers(ctx: ServiceContext, input: { ownerId: string; verbose: boolean }) {
  const all = await ctx.classifiers.listByOwner(input.ownerId);
  return {
    classifiers: input.verbose ? await Promise.all(all.map((c) => detailedView(ctx, c))) : all.map(briefClassifierView),
  };
}

async function deleteClassifierData(ctx: ServiceContext, classifierId: string): Promise<void> {
  const { imageHashes, pendingFiles } = await ctx.classifiers.delete(classifierId, ctx.now());
  await ctx.pendingFiles.remove(pendingFiles);
  await ctx.queue
    .cancel(classifierId)
    .catch((err) => ctx.logger.warn({ err, classifierId }, 'could not cancel training'));
  await ctx.heads.removeClassifier(classifierId);
  await removeUnreferencedImages(ctx, imageHashes);
}

/** DELETE /v3/classifiers/{id}: the classifier, its versions, examples and queued training are gone. */
export async function deleteClassifier(
  ctx: ServiceContext,
  input: { ownerId: string; classifierId: string },
): Promise<void> {
  await ownedOrNotFound(ctx, input.classifierId, input.ownerId);
  await deleteClassifierData(ctx, input.classifierId);
}
