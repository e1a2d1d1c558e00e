/**
 * What the use cases share for finding a classifier and one of its versions: the lookups, the
 * version-id grammar, and the Watson-shaped answers when either is missing or pruned.
 */
import { ApiError, notFound } from '../errors';
import type { ClassifierRecord } from '../data-access/db/classifier-repository';
import type { ServiceContext } from './service-context';

export function classifierNotFound(id: string): ApiError {
  return notFound(`Cannot find classifier '${id}'. Check the classifier_id (GET /v3/classifiers lists yours).`);
}

/** The caller's classifier, or the contract's 404 (also for another owner's classifier: it is not revealed). */
export async function ownedOrNotFound(ctx: ServiceContext, id: string, ownerId: string): Promise<ClassifierRecord> {
  const found = await ctx.classifiers.findOwned(id, ownerId);
  if (!found) throw classifierNotFound(id);
  return found;
}

/**
 * A version id written as text: a positive integer of at most 15 digits (so it is exact as a number),
 * or undefined. Each endpoint words its own 400 for a malformed one.
 */
export function versionIdFrom(text: string): number | undefined {
  if (!/^\d{1,15}$/.test(text)) return undefined;
  const id = Number(text);
  return id >= 1 ? id : undefined;
}

export function noSuchVersion(classifierId: string, versionId: number): ApiError {
  return notFound(
    `Classifier '${classifierId}' has no version ${versionId}. GET /v3/classifiers/${classifierId}/versions lists its versions.`,
  );
}

export function prunedVersion(classifierId: string, versionId: number, status: 400 | 410): ApiError {
  return new ApiError(
    status,
    `Version ${versionId} of classifier '${classifierId}' was pruned by the retention setting (KEEP_VERSIONS), so it cannot be used any more. Use a version that GET /v3/classifiers/${classifierId}/versions lists without 'pruned'.`,
  );
}
