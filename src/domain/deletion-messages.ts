/**
 * What the service says about data that DELETE /v3/user_data (or an example removal) removed: the answers for a removed version and the
 * explanations of a classifier the deletion left unable to train. Shared by the use cases that meet them.
 */
import { ApiError } from '../errors';
import type { TrainingSetProblem } from '../data-access/db/classifier-repository';

const REMOVED_REASON =
  'because customer data it was trained on was deleted (DELETE /v3/user_data), or its owner removed an example it was trained on (POST …/examples/changes)';

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
export function untrainableExplanation(failure: {
  classifierId: string;
  problem: TrainingSetProblem;
  currentRemoved: boolean;
}): string {
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
    (failure.currentRemoved
      ? 'Its versions trained on the deleted images were removed, so it answers nothing for now. '
      : '') +
    `${todo} with POST /v3/classifiers/${failure.classifierId} to train it again.`
  );
}

/** The explanation of a failed retraining that was to replace a version trained on deleted customer data (removed with the failure). */
export function failedReplacementExplanation(reason: string): string {
  return (
    `Its current version was trained on example images deleted since (DELETE /v3/user_data, or removed with POST …/examples/changes), and the retraining without them failed, ` +
    `so that version was removed and the classifier answers nothing until a retraining succeeds. Why the retraining failed: ${reason}`
  );
}
