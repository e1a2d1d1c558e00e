import { badRequest } from '../errors';
import { applyRetention } from './apply-retention';
import { detailedView, type ClassifierView } from './classifier-view';
import { classifierNotFound, noSuchVersion, ownedOrNotFound, prunedVersion, versionIdFrom } from './lookups';
import type { ServiceContext } from './service-context';
import { activateQuerySchema, parseRequest, type VersionListView } from './api-schemas';
import { removedVersion, versionBeingRemoved } from './deletion-messages';

/**
 * Extension, GET /v3/classifiers/{id}/versions: every version with its evaluation (oldest first),
 * when each was made current by an activation, and the whole history of current-version changes.
 */
export async function listVersions(
  ctx: ServiceContext,
  input: { ownerId: string; classifierId: string },
): Promise<VersionListView> {
  const c = await ownedOrNotFound(ctx, input.classifierId, input.ownerId);
  const events = await ctx.versions.listVersionEvents(c.id);
  const versions = await ctx.versions.listVersions(c.id);
  const changes = await ctx.examples.changesByVersion(c.id);
  return {
    classifier_id: c.id,
    current_version_id: c.currentVersionId,
    versions: versions.map((v) => ({
      version_id: v.id,
      created: v.created,
      classes: v.classes.map((name) => ({ class: name })),
      examples: v.examples,
      pack: v.packKey,
      evaluation: v.evaluation as VersionListView['versions'][number]['evaluation'],
      activated: events.filter((e) => e.versionId === v.id && e.cause === 'activated').map((e) => e.created),
      ...(v.pruned ? { pruned: v.pruned } : {}),
      ...(changes.has(v.id) ? { changes: changes.get(v.id) } : {}),
    })),
    history: events.map((e) => ({
      version_id: e.versionId,
      previous_version_id: e.previousVersionId,
      event: e.cause,
      created: e.created,
    })),
  };
}

/**
 * Extension, POST /v3/classifiers/{id}/versions/{version_id}/activate: makes that version current
 * (a rollback, or a roll forward), recorded in the version history. From then on the training set
 * is that version's examples plus the pending ones (accepted, but in no run that reached the
 * current version), unless `discard_pending=true`; pending examples start a retraining at once.
 * Afterwards the retention setting applies.
 * @throws ApiError 400 (bad version id), 404 (unknown classifier or version), 410 (pruned version, or one
 *   trained on deleted customer data).
 */
export async function activateVersion(
  ctx: ServiceContext,
  input: { ownerId: string; classifierId: string; versionId: unknown; discardPending: unknown },
): Promise<ClassifierView> {
  await ownedOrNotFound(ctx, input.classifierId, input.ownerId);
  const versionId = typeof input.versionId === 'string' ? versionIdFrom(input.versionId.trim()) : undefined;
  if (versionId === undefined) {
    throw badRequest(
      `The version id '${String(input.versionId).slice(0, 40)}' in the path is not valid: version ids are positive integers (GET /v3/classifiers/{classifier_id}/versions lists them).`,
    );
  }
  const { discard_pending: discardPending } = parseRequest(activateQuerySchema, {
    discard_pending: input.discardPending,
  });
  const result = await ctx.versions.activateVersion({
    classifierId: input.classifierId,
    versionId,
    discardPending,
    now: ctx.now(),
  });
  if (result.outcome === 'no-classifier') throw classifierNotFound(input.classifierId);
  if (result.outcome === 'no-version') throw noSuchVersion(input.classifierId, versionId);
  if (result.outcome === 'pruned') throw prunedVersion(input.classifierId, versionId, 410);
  if (result.outcome === 'removed') throw removedVersion(input.classifierId, versionId);
  if (result.outcome === 'being-removed') throw versionBeingRemoved(input.classifierId, versionId);
  if (result.outcome === 'activated') {
    for (const file of result.removedHeadFiles) await ctx.heads.remove(file);
    ctx.logger.info(
      { classifierId: input.classifierId, versionId, pending: result.pendingExamples },
      'version activated',
    );
    if (result.pendingExamples > 0) {
      // If queueing fails, the worker's periodic check queues the classifier (now retraining) again.
      await ctx.queue
        .enqueue(input.classifierId)
        .catch((err) => ctx.logger.error({ err, classifierId: input.classifierId }, 'could not queue retraining'));
    }
    await applyRetention(ctx, input.classifierId, ctx.config.keepVersions);
  }
  return detailedView(ctx, (await ctx.classifiers.find(input.classifierId)) ?? result.classifier);
}
