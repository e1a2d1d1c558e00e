import { badRequest } from '../errors';
import type { ChangeOutcome, ExampleMove } from '../data-access/db/example-repository';
import {
  exampleChangesSchema,
  exampleMoveSchema,
  MAX_EXAMPLE_CHANGES,
  parseRequest,
  type ChangedClassifierView,
} from './api-schemas';
import { detailedView } from './classifier-view';
import { removeUnreferencedImages } from './ingest-examples';
import { classifierNotFound, ownedOrNotFound } from './lookups';
import { exampleIdOf, exampleNotFound, exampleRowId } from './review-examples';
import type { ServiceContext } from './service-context';

const label = (className: string | null) => (className === null ? 'the negatives' : `class '${className}'`);

/** The 400 or 404 of a change the repository refused; nothing was changed. */
function refusal(classifierId: string, result: Exclude<ChangeOutcome, { outcome: 'changed' }>, minimumSetting: string) {
  switch (result.outcome) {
    case 'no-classifier':
      return classifierNotFound(classifierId);
    case 'no-example':
      return exampleNotFound(classifierId, exampleIdOf(result.exampleId));
    case 'no-class':
      return badRequest(
        `Cannot move ${exampleIdOf(result.exampleId)} to class '${result.className.slice(0, 100)}': classifier '${classifierId}' has no such class (names are case-sensitive). ` +
          `Move it to one of its classes (GET /v3/classifiers/${classifierId}), or to the negatives with "negative": true. Nothing was changed.`,
      );
    case 'same-class':
      return badRequest(
        `${exampleIdOf(result.exampleId)} is already in ${label(result.className)}. Name another class, or leave it out. Nothing was changed.`,
      );
    case 'already-there':
      return badRequest(
        `Cannot move ${exampleIdOf(result.exampleId)} to ${label(result.className)}: the same picture is already there as ${exampleIdOf(result.existingId)}. ` +
          `Remove ${exampleIdOf(result.exampleId)} instead. Nothing was changed.`,
      );
    case 'below-minimum': {
      const what =
        result.className === null ? 'the negatives of this one-class classifier' : `class '${result.className}'`;
      return badRequest(
        `These changes would leave ${what} with ${result.remaining} example${result.remaining === 1 ? '' : 's'}; at least ${result.needed} are needed (${minimumSetting}). ` +
          (result.before > result.needed
            ? `It has ${result.before} now, so take away at most ${result.before - result.needed}, or first add images with POST /v3/classifiers/${classifierId}. Nothing was changed.`
            : `It has ${result.before} now, so none can be taken away: first add images with POST /v3/classifiers/${classifierId}. Nothing was changed.`),
      );
    }
  }
}

/**
 * Extension, POST /v3/classifiers/{id}/examples/changes: removes and moves examples, all or nothing,
 * as the next version. In one transaction (ExampleRepository.applyChanges): a removed example is
 * forgotten (no later version trains on it; every version trained on it is removed once the
 * retraining without it publishes), a moved one relabelled (its image and cached embedding stay, so
 * the retraining embeds nothing); then the images nothing references any more go with their cached
 * embeddings, and a retraining is queued (collapsed with any waiting one, see TrainingQueue). The
 * current version serves until then.
 * @returns the classifier (retraining, or training before its first version) with the counts
 * @throws ApiError 400 (malformed, empty or oversized body, an example named twice, a bad target,
 *   a class left below MIN_IMAGES_PER_ZIP), 404 (unknown classifier, or an example id that is not one
 *   of its current examples, another owner's included)
 */
export async function changeExamples(
  ctx: ServiceContext,
  input: { ownerId: string; classifierId: string; body: unknown },
): Promise<ChangedClassifierView> {
  await ownedOrNotFound(ctx, input.classifierId, input.ownerId);
  const body = parseRequest(exampleChangesSchema, input.body ?? {});
  const remove = body.remove ?? [];
  const move = body.move ?? [];
  const total = remove.length + move.length;
  if (total === 0) {
    throw badRequest(
      'Nothing to change: send {"remove": ["ex_…"]} and/or {"move": [{"example_id": "ex_…", "class": "<class>"}]} (or "negative": true).',
    );
  }
  if (total > MAX_EXAMPLE_CHANGES) {
    throw badRequest(
      `${total} changes were sent; one request may change at most ${MAX_EXAMPLE_CHANGES} examples. Send them in several requests (each one is a version).`,
    );
  }
  const named = [...remove, ...move.map((m) => m.example_id)];
  const twice = named.find((id, i) => named.indexOf(id) !== i);
  if (twice !== undefined) {
    throw badRequest(
      `The example '${twice.slice(0, 40)}' is named more than once. Name each example once: either removed or moved to one place. Nothing was changed.`,
    );
  }
  const rowOf = (id: string) => {
    const row = exampleRowId(id);
    if (row === undefined) throw exampleNotFound(input.classifierId, id);
    return row;
  };
  const removals = remove.map(rowOf);
  const moves: ExampleMove[] = move.map((m) => ({
    exampleId: rowOf(m.example_id),
    className: m.negative ? null : m.class!,
  }));

  const result = await ctx.examples.applyChanges({
    classifierId: input.classifierId,
    remove: removals,
    move: moves,
    minimum: ctx.config.limits.minImagesPerZip,
    now: ctx.now(),
  });
  if (result.outcome !== 'changed') throw refusal(input.classifierId, result, 'MIN_IMAGES_PER_ZIP');
  await removeUnreferencedImages(ctx, result.imageHashes);
  // If queueing fails now, the worker's periodic check queues the classifier (now retraining) again.
  await ctx.queue
    .enqueue(input.classifierId)
    .catch((err) => ctx.logger.error({ err, classifierId: input.classifierId }, 'could not queue retraining'));
  ctx.logger.info(
    { classifierId: input.classifierId, removed: result.removed, moved: result.moved },
    'examples changed',
  );
  const classifier = await ctx.classifiers.find(input.classifierId);
  if (!classifier) throw classifierNotFound(input.classifierId); // deleted just now
  return { ...(await detailedView(ctx, classifier)), changes: { removed: result.removed, moved: result.moved } };
}

/** Extension, DELETE /v3/classifiers/{id}/examples/{example_id}: changeExamples with one removal. */
export function removeExample(
  ctx: ServiceContext,
  input: { ownerId: string; classifierId: string; exampleId: string },
): Promise<ChangedClassifierView> {
  return changeExamples(ctx, {
    ownerId: input.ownerId,
    classifierId: input.classifierId,
    body: { remove: [input.exampleId] },
  });
}

/** Extension, POST /v3/classifiers/{id}/examples/{example_id}/move: changeExamples with one move. */
export async function moveExample(
  ctx: ServiceContext,
  input: { ownerId: string; classifierId: string; exampleId: string; body: unknown },
): Promise<ChangedClassifierView> {
  await ownedOrNotFound(ctx, input.classifierId, input.ownerId);
  const target = parseRequest(exampleMoveSchema, input.body ?? {});
  return changeExamples(ctx, {
    ownerId: input.ownerId,
    classifierId: input.classifierId,
    body: { move: [{ example_id: input.exampleId, ...target }] },
  });
}
