import { UnrecoverableError, type Job } from 'bullmq';
import type { CallbackJobData } from '../../data-access/redis/callback-queue';
import { CallbackDeliveryError } from '../../data-access/outbound/callback-sender';
import { deliverCallback, type CallbackDeliveryContext } from '../../domain/callbacks';

/**
 * One try of one training-end callback: one deliverCallback. A refusal no retry can change (a
 * permanent CallbackDeliveryError) fails as UnrecoverableError; any other failure is tried again.
 */
export async function handleCallbackJob(
  ctx: CallbackDeliveryContext,
  job: Job<CallbackJobData>,
): Promise<'delivered' | 'classifier-gone'> {
  try {
    const outcome = await deliverCallback(ctx, job.data);
    ctx.logger.info(
      { deliveryId: job.data.deliveryId, classifierId: job.data.classifierId, outcome },
      'callback handled',
    );
    return outcome;
  } catch (error) {
    ctx.logger.warn(
      { deliveryId: job.data.deliveryId, err: error, attempt: job.attemptsMade + 1 },
      'callback not delivered',
    );
    if (error instanceof CallbackDeliveryError && error.permanent) throw new UnrecoverableError(error.message);
    throw error;
  }
}
