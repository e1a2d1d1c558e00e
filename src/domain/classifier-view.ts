import type { ClassifierRecord, VersionRecord } from '../data-access/db/classifier-repository';
import type { BriefClassifierView, ClassifierView, HeadEvaluationView } from './api-schemas';
import type { ServiceContext } from './service-context';
import { latestUploadSummary, type UploadSummary } from './upload-report';

export type { ClassifierView };

/** The Watson Classifier object (shape: classifierSchema); training_progress and evaluation are extensions. */
export function classifierView(
  c: ClassifierRecord,
  extras: { progress?: number; version?: VersionRecord; upload?: UploadSummary } = {},
): ClassifierView {
  const view: ClassifierView = {
    classifier_id: c.id,
    name: c.name,
    owner: c.ownerId,
    status: c.status,
    // Every trained version can be exported (GET …/core_ml_model).
    core_ml_enabled: c.currentVersionId !== null,
    created: c.created,
    updated: c.updated,
    classes: c.classes.map((name) => ({ class: name })),
  };
  if (c.status === 'failed' && c.explanation) view.explanation = c.explanation;
  if (c.retrained) view.retrained = c.retrained;
  if (c.callbackUrl) view.callback_url = c.callbackUrl;
  if ((c.status === 'training' || c.status === 'retraining') && extras.progress !== undefined) {
    view.training_progress = extras.progress;
  }
  if (extras.version) {
    view.evaluation = {
      version_id: extras.version.id,
      created: extras.version.created,
      ...(extras.version.evaluation as HeadEvaluationView),
    };
  }
  if (extras.upload) view.upload = extras.upload;
  return view;
}

/**
 * The full view of a stored classifier: with its training progress while it trains, its current
 * version's evaluation, and its latest upload's report (as answered, or once training decoded it).
 */
export async function detailedView(ctx: ServiceContext, c: ClassifierRecord): Promise<ClassifierView> {
  const inTraining = c.status === 'training' || c.status === 'retraining';
  const progress = inTraining ? await ctx.queue.progress(c.id).catch(() => undefined) : undefined;
  const version = c.currentVersionId !== null ? await ctx.versions.findVersion(c.currentVersionId) : undefined;
  const upload = await latestUploadSummary(ctx.classifiers, c.id);
  return classifierView(c, { progress, version, upload });
}

/** The brief entry of an unverbose list. */
export function briefClassifierView(c: ClassifierRecord): BriefClassifierView {
  return {
    classifier_id: c.id,
    name: c.name,
    status: c.status,
    ...(c.status === 'failed' && c.explanation ? { explanation: c.explanation } : {}),
  };
}
