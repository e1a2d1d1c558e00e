import { Queue } from 'bullmq';

export const CALLBACK_QUEUE_NAME = 'callbacks';

/** One training-end callback to deliver; the body is signed at each try with the owner's current secret. */
export interface CallbackJobData {
  deliveryId: string;
  classifierId: string;
  ownerId: string;
  url: string;
  body: string;
}

/**
 * The BullMQ queue of callback deliveries: retried with exponential backoff (`backoffMs`, then
 * doubling). The job id is the delivery id, so queueing the same delivery twice keeps one job.
 */
export class CallbackQueue {
  readonly queue: Queue<CallbackJobData>;

  constructor(
    redisUrl: string,
    prefix: string,
    private readonly attempts: number,
    private readonly backoffMs: number,
  ) {
    this.queue = new Queue<CallbackJobData>(CALLBACK_QUEUE_NAME, {
      connection: { url: redisUrl, maxRetriesPerRequest: 3 },
      prefix,
    });
  }

  async enqueue(data: CallbackJobData): Promise<void> {
    await this.queue.add('deliver', data, {
      jobId: data.deliveryId,
      attempts: this.attempts,
      backoff: { type: 'exponential', delay: this.backoffMs },
      removeOnComplete: { count: 1000 },
      removeOnFail: { count: 1000 },
    });
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
