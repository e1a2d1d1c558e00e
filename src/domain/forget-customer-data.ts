import { ApiError } from '../errors';
import type { TrainingSetProblem } from '../data-access/db/classifier-repository';
import { parseRequest, userDataQuerySchema } from './api-schemas';
import { removeUnreferencedImages } from './ingest-examples';
import type { ServiceContext } from './service-context';

/**
 * DELETE /v3/user_data (Watson's promise: once the deletion has taken effect, nothing derived from
 * the customer's images answers, exports or stays on disk). In one database transaction: every
 * classifier of the caller created with the customer id, and elsewhere every example labelled with
 * it, every class left without examples and every version trained on any of them (a current one
 * serves until the retrain without them replaces it; where what is left cannot train, at once and
 * the classifier fails saying what to upload). Then, before the 202: the removed versions' head
 * files, the deleted classifiers' head folders and queued runs, and every image file and cached
 * embedding no remaining example (of any owner) references. A crash in between leaves only files
 * that the orphan sweeps remove at the next start.
 */
export async function deleteUserData(ctx: ServiceContext, input: { ownerId: string; customerId: unknown }): Promise<void> {
  const { customer_id: customerId } = parseRequest(userDataQuerySchema, { customer_id: input.customerId });
  const done = await ctx.classifiers.deleteCustomerData({ ownerId: input.ownerId, customerId, now: ctx.now(), explain: untrainableExplanation });
  for (const file of done.removedHeadFiles) await ctx.heads.remove(file);
  for (const id of done.deletedClassifiers) {
    await ctx.queue.cancel(id).catch((err) => ctx.logger.warn({ err, classifierId: id }, 'could not cancel training'));
    await ctx.heads.removeClassifier(id);
  }
  await removeUnreferencedImages(ctx, done.imageHashes);
  for (const id of done.retrainClassifiers) {
    // If queueing fails now, the worker's periodic check queues the classifier (now in training) again.
    await ctx.queue.enqueue(id).catch((err) => ctx.logger.error({ err, classifierId: id }, 'could not queue retraining'));
  }
  ctx.logger.info(
    { classifiers: done.deletedClassifiers.length, retraining: done.retrainClassifiers.length, versions: done.removedHeadFiles.length },
    'customer data deleted',
  );
}

const REMOVED_REASON = 'because customer data it was trained on was deleted (DELETE /v3/user_data)';

/** An export or activation of a version the deletion removed: 410, and why. */
export function removedVersion(classifierId: string, versionId: number): ApiError {
  return new ApiError(
    410,
    `Version ${versionId} of classifier '${classifierId}' was removed ${REMOVED_REASON}, so it can no longer be exported, activated or pinned. ` +
      `Use a version that GET /v3/classifiers/${classifierId}/versions lists.`,
  );
}

/** An activation of the current version while it serves only until its replacement (trained without the deleted data) is ready. */
export function versionBeingRemoved(classifierId: string, versionId: number): ApiError {
  return new ApiError(
    410,
    `Version ${versionId} of classifier '${classifierId}' is being removed ${REMOVED_REASON}: it serves only until the retraining without that data ` +
      `finishes, so it cannot be activated. Activate another version that GET /v3/classifiers/${classifierId}/versions lists, or wait for the retraining.`,
  );
}

/** Why a classifier the deletion left with nothing that can train is failed, and what to upload. */
export function untrainableExplanation(failure: { classifierId: string; problem: TrainingSetProblem; currentRemoved: boolean }): string {
  const what =
    failure.problem.kind === 'no-classes'
      ? 'no class has an example image left'
      : `every image left is an image of '${failure.problem.className}', so that class has no negative examples`;
  const todo =
    failure.problem.kind === 'no-classes'
      ? 'Send at least one <class>_positive_examples zip'
      : `Add a negative_examples zip of other subjects, or a <class>_positive_examples zip of another class,`;
  return (
    `DELETE /v3/user_data deleted example images of this classifier, and what is left cannot train a version: ${what}. ` +
    (failure.currentRemoved ? 'Its versions trained on the deleted images were removed, so it answers nothing for now. ' : '') +
    `${todo} with POST /v3/classifiers/${failure.classifierId} to train it again.`
  );
}

/** The explanation of a failed retraining that was to replace a version trained on deleted customer data (removed with the failure). */
export function failedReplacementExplanation(reason: string): string {
  return (
    `Its current version was trained on customer data deleted with DELETE /v3/user_data, and the retraining without that data failed, ` +
    `so that version was removed and the classifier answers nothing until a retraining succeeds. Why the retraining failed: ${reason}`
  );
}
