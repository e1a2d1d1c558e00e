import { parseRequest, userDataQuerySchema } from './api-schemas';
import { untrainableExplanation } from './deletion-messages';
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
export async function deleteUserData(
  ctx: ServiceContext,
  input: { ownerId: string; customerId: unknown },
): Promise<void> {
  const { customer_id: customerId } = parseRequest(userDataQuerySchema, { customer_id: input.customerId });
  const done = await ctx.classifiers.deleteCustomerData({
    ownerId: input.ownerId,
    customerId,
    now: ctx.now(),
    explain: untrainableExplanation,
  });
  await ctx.pendingFiles.remove(done.pendingFiles);
  for (const file of done.removedHeadFiles) await ctx.heads.remove(file);
  for (const id of done.deletedClassifiers) {
    await ctx.queue.cancel(id).catch((err) => ctx.logger.warn({ err, classifierId: id }, 'could not cancel training'));
    await ctx.heads.removeClassifier(id);
  }
  await removeUnreferencedImages(ctx, done.imageHashes);
  for (const id of done.retrainClassifiers) {
    // If queueing fails now, the worker's periodic check queues the classifier (now in training) again.
    await ctx.queue
      .enqueue(id)
      .catch((err) => ctx.logger.error({ err, classifierId: id }, 'could not queue retraining'));
  }
  ctx.logger.info(
    {
      classifiers: done.deletedClassifiers.length,
      retraining: done.retrainClassifiers.length,
      versions: done.removedHeadFiles.length,
    },
    'customer data deleted',
  );
}
