import { UnrecoverableError, type Job } from 'bullmq';
import type { TrainingJobData } from '../../data-access/redis/training-queue';
import {
  ForeignJobError,
  TrainingDataError,
  trainClassifier,
  type TrainingContext,
  type TrainingOutcome,
} from '../../domain/train-classifier';
import { secondsSince } from '../../lib/elapsed';
import type { WorkerMetrics } from '../../lib/metrics';

export interface TrainingJobContext {
  training: TrainingContext;
  /** The instance this worker serves: a job another instance queued is refused. */
  instanceId: string;
  /** Runs by outcome and duration, when the worker keeps metrics; published at once so a scrape sees the run. */
  metrics?: WorkerMetrics;
  publisher?: { publishNow(): Promise<void> };
}

/**
 * One training job: one trainClassifier run. What no retry can fix (a job of another instance,
 * bad training data) fails as UnrecoverableError, so BullMQ does not try it again.
 */
export async function handleTrainingJob(ctx: TrainingJobContext, job: Job<TrainingJobData>): Promise<TrainingOutcome> {
  const { logger } = ctx.training;
  const { classifierId } = job.data;
  const finalAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
  const start = process.hrtime.bigint();
  try {
    if (job.data.instanceId !== ctx.instanceId) {
      throw new ForeignJobError(
        `The training job for '${classifierId}' was queued by instance ${job.data.instanceId}, not by this one (${ctx.instanceId}).`,
      );
    }
    const outcome = await trainClassifier(ctx.training, classifierId, {
      finalAttempt,
      onProgress: (f) => job.updateProgress(Math.round(f * 100)),
    });
    logger.info({ classifierId, outcome }, 'training run finished');
    recordRun(ctx, outcome, start);
    return outcome;
  } catch (error) {
    if (error instanceof ForeignJobError) {
      // Never silent: the job stays in the failed set with this reason for the operator to see.
      logger.error(
        { classifierId, err: error, instanceId: ctx.instanceId },
        'refusing a training job of another instance',
      );
      throw new UnrecoverableError(error.message);
    }
    logger.warn({ classifierId, err: error, finalAttempt }, 'training run failed');
    const unrecoverable = error instanceof TrainingDataError;
    recordRun(ctx, unrecoverable || finalAttempt ? 'failed' : 'retry', start);
    if (unrecoverable) throw new UnrecoverableError(error.message);
    throw error;
  }
}

function recordRun(ctx: TrainingJobContext, outcome: string, start: bigint): void {
  ctx.metrics?.trainingRuns.inc({ outcome });
  ctx.metrics?.trainingDuration.observe({ outcome }, secondsSince(start));
  void ctx.publisher?.publishNow();
}
