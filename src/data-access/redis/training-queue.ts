import { Queue, type ConnectionOptions } from 'bullmq';

export const TRAINING_QUEUE_NAME = 'training';

export interface TrainingJobData {
  classifierId: string;
  /** The instance that queued the run: a worker of another instance refuses it loudly. */
  instanceId: string;
}

export function redisConnection(url: string): ConnectionOptions {
  // BullMQ workers need maxRetriesPerRequest: null so blocking commands survive reconnects.
  return { url, maxRetriesPerRequest: null };
}

/**
 * The BullMQ queue of training runs. One deduplication id per classifier: at most one run is
 * active and one waits; the waiting one reads everything accepted so far when it starts.
 */
export class TrainingQueue {
  readonly queue: Queue<TrainingJobData>;

  /**
   * @param namespace the instance's Redis namespace (see queueNamespace)
   * @param instanceId recorded in each job so a worker can tell whose it is
   */
  constructor(
    redisUrl: string,
    namespace: string,
    private readonly instanceId: string,
    private readonly attempts: number,
  ) {
    this.queue = new Queue<TrainingJobData>(TRAINING_QUEUE_NAME, {
      connection: { url: redisUrl, maxRetriesPerRequest: 3 },
      prefix: namespace,
    });
  }

  async enqueue(classifierId: string): Promise<void> {
    await this.queue.add(
      'train',
      { classifierId, instanceId: this.instanceId },
      {
        deduplication: { id: classifierId, keepLastIfActive: true },
        attempts: this.attempts,
        backoff: { type: 'exponential', delay: 2000 },
        removeOnComplete: { count: 100 },
        removeOnFail: { count: 500 },
      },
    );
  }

  private async currentJob(classifierId: string) {
    const jobId = await this.queue.getDeduplicationJobId(classifierId);
    return jobId ? this.queue.getJob(jobId) : undefined;
  }

  /** True when a run for the classifier is waiting, delayed (retry backoff) or active. */
  async hasPendingJob(classifierId: string): Promise<boolean> {
    const job = await this.currentJob(classifierId);
    if (!job) return false;
    const state = await job.getState();
    return (
      state === 'waiting' ||
      state === 'delayed' ||
      state === 'active' ||
      state === 'prioritized' ||
      state === 'waiting-children'
    );
  }

  /** Progress (0-100) of the classifier's run, if one is known. */
  async progress(classifierId: string): Promise<number | undefined> {
    const job = await this.currentJob(classifierId);
    return job && typeof job.progress === 'number' ? job.progress : undefined;
  }

  /** Drops a run that has not started; a running one finishes and finds its classifier gone. */
  async cancel(classifierId: string): Promise<void> {
    const job = await this.currentJob(classifierId);
    if (job && !(await job.isActive())) {
      await job.remove().catch(() => undefined); // it may have started meanwhile: the stale-work guard covers that
      await this.queue.removeDeduplicationKey(classifierId);
    }
  }

  /** Jobs by state, for metrics. */
  async counts(): Promise<Record<'waiting' | 'active' | 'delayed' | 'failed', number>> {
    const counts = await this.queue.getJobCounts('waiting', 'active', 'delayed', 'failed');
    return {
      waiting: counts.waiting ?? 0,
      active: counts.active ?? 0,
      delayed: counts.delayed ?? 0,
      failed: counts.failed ?? 0,
    };
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
