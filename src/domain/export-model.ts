import { ApiError, badRequest } from '../errors';
import { deserializeHead, exportVersion, ModelExportError, PackUnavailableError, type ExportFormat } from '../ml';
import { classifierNotFound, noSuchVersion, ownedOrNotFound, prunedVersion, versionIdFrom } from './lookups';
import type { ClassifierRecord } from '../data-access/db/classifier-repository';
import { removedVersion } from './deletion-messages';
import type { ServiceContext } from './service-context';

export interface ExportedModel {
  bytes: Uint8Array;
  /** Suggested download name: `<classifier_id>.mlmodel` or `<classifier_id>-v<version>.onnx`. */
  fileName: string;
}

const EXTENSIONS: Record<ExportFormat, string> = { coreml: 'mlmodel', onnx: 'onnx' };

/**
 * GET /v3/classifiers/{id}/core_ml_model and (extension) …/onnx_model: one version of the
 * caller's classifier (the current one unless `versionId` names another) as a self-contained model
 * file. 404 for a classifier the caller does not own or a version it does not have; 410 for a
 * version the retention setting pruned or a customer-data deletion removed; 409 while it has no
 * trained version, or when the model pack it was trained with is gone.
 */
export async function exportClassifierModel(
  ctx: ServiceContext,
  input: { ownerId: string; classifierId: string; versionId?: unknown; format: ExportFormat },
): Promise<ExportedModel> {
  const c = await ownedOrNotFound(ctx, input.classifierId, input.ownerId);
  const versionId = input.versionId === undefined ? currentVersionId(c) : requestedVersionId(c.id, input.versionId);
  const version = await ctx.versions.findVersion(versionId);
  if (!version && (await ctx.versions.wasRemoved(c.id, versionId))) throw removedVersion(c.id, versionId);
  if (!version || version.classifierId !== c.id) throw noSuchVersion(c.id, versionId);
  if (version.pruned) throw prunedVersion(c.id, version.id, 410);
  const headBytes = await ctx.heads.read(version.headFile).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
    // Pruned, removed, or deleted with its classifier, while this request ran.
    const now = await ctx.versions.findVersion(version.id);
    if (!now && (await ctx.versions.wasRemoved(c.id, version.id))) throw removedVersion(c.id, version.id);
    if (!now) throw classifierNotFound(c.id);
    if (now.pruned) throw prunedVersion(c.id, version.id, 410);
    throw error;
  });
  const head = deserializeHead(headBytes, version.headFile);
  try {
    const info = { classifierId: c.id, name: c.name, versionId: version.id, created: version.created };
    const bytes = await exportVersion(ctx.config.modelsDir, head, info, input.format);
    const suffix = input.versionId === undefined ? '' : `-v${version.id}`;
    return { bytes, fileName: `${c.id}${suffix}.${EXTENSIONS[input.format]}` };
  } catch (error) {
    if (error instanceof PackUnavailableError) {
      throw new ApiError(
        409,
        `Version ${version.id} of classifier '${c.id}' was trained with model pack ${head.packKey}, which this server no longer has, so it cannot be exported. Retrain it by sending any example zip to POST /v3/classifiers/${c.id}, then export the new version.`,
      );
    }
    if (!(error instanceof ModelExportError)) throw error;
    ctx.logger.error(
      { err: error, classifierId: c.id, versionId: version.id, format: input.format },
      'model export failed',
    );
    throw new ApiError(
      501,
      `This server cannot export classifier '${c.id}' as ${input.format === 'coreml' ? 'Core ML' : 'ONNX'}: ${error.message}.`,
    );
  }
}

function requestedVersionId(classifierId: string, value: unknown): number {
  const id = typeof value === 'string' ? versionIdFrom(value) : undefined;
  if (id === undefined) {
    throw badRequest(
      `version_id must be a positive integer, got ${JSON.stringify(value)}. GET /v3/classifiers/${classifierId}/versions lists the version ids.`,
    );
  }
  return id;
}

function currentVersionId(c: ClassifierRecord): number {
  if (c.currentVersionId !== null) return c.currentVersionId;
  throw new ApiError(
    409,
    c.status === 'failed'
      ? `Classifier '${c.id}' failed to train (${c.explanation ?? 'see its explanation'}), so it has no model to export. Send corrected examples to POST /v3/classifiers/${c.id}; export it once its status is ready.`
      : `Classifier '${c.id}' has not finished training, so it has no model to export yet. Poll GET /v3/classifiers/${c.id} until its status is ready, then ask again.`,
  );
}
