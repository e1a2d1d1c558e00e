import fs from 'node:fs/promises';
import { ApiError, badRequest } from '../errors';
import type { ClassifierRepository } from '../data-access/db/classifier-repository';
import type { ResolvedVersion, VersionRepository } from '../data-access/db/version-repository';
import type { HeadCache } from '../data-access/files/head-cache';
import type { VersionLease, VersionLeaseHolder } from '../data-access/redis/version-leases';
import type { FetchedImage } from '../data-access/outbound/image-fetcher';
import { UrlFetchError } from '../data-access/outbound/url-policy';
import { isZip, readZipImages, ZipInputError } from '../data-access/zip/zip-images';
import type { Config } from '../config';
import {
  defaultClasses,
  DEFAULT_MISSING_OBJECTS_WARNING,
  explicitClasses,
  ImageDecodeError,
  scoreHead,
  type AnalysisPart,
  type BuiltinClass,
  type Embedder,
  type ImageAnalysis,
  type TrainedHead,
} from '../ml';
import type { ClassifiedImage, ClassifyResponse, ImageError, Warning } from './api-schemas';
import { parseClassifierRef, type ClassifierRef, type ClassifyParameters } from './classify-request';
import { noSuchVersion, prunedVersion } from './lookups';
import { secondsSince } from '../lib/elapsed';

export type { ClassifyResponse };

export interface ClassifyContext {
  classifiers: ClassifierRepository;
  versions: VersionRepository;
  /** Holds the versions a request uses until it answers (in Redis: classify writes nothing to the database). */
  leases: VersionLeaseHolder;
  headCache: HeadCache;
  /** Analyses each image once: embedding, explicit, colours and (with its detector) COCO objects. */
  embedder: Embedder;
  /** Whether `default` names the detector's COCO objects; without them (and without the ImageNet pack) it gives colours only. */
  namesObjects: boolean;
  limits: Config['limits'];
  fetchImage: (url: string) => Promise<FetchedImage>;
  /** Told what each call did (metrics). */
  observer?: ClassifyObserver;
}

export interface ClassifyObserver {
  /** Seconds one call spent running the object detector or scoring custom heads; one batch's decode or model run. */
  stage(stage: 'decode' | 'backbone' | 'detector' | 'heads', seconds: number): void;
  /** Images of one call, by whether they were classified. */
  images(outcome: 'classified' | 'failed', count: number): void;
}

export interface UploadedImagesFile {
  path: string;
  originalName: string;
  size: number;
}

type ImageLabel = { image: string } | { source_url: string; resolved_url?: string };

interface InputImage {
  label: ImageLabel;
  bytes?: Buffer;
  error?: ImageError;
}

type AppliedClassifier =
  | { kind: 'default' | 'explicit'; id: string }
  | { kind: 'custom'; id: string; name: string; versionId: number; head: TrainedHead };

type ClassifierResult = NonNullable<ClassifiedImage['classifiers']>[number];

const BUILT_IN_IDS = new Set(['default', 'explicit']);

/** POST/GET /v3/classify: built-in and custom classifiers over an image, a zip of images, or a URL. */
export async function classifyImages(
  ctx: ClassifyContext,
  input: {
    ownerId: string;
    params: ClassifyParameters;
    file?: UploadedImagesFile;
    /** Parameters sent in a POST's query string, which (as in Watson) are not applied. */
    ignoredQueryParameters?: string[];
  },
): Promise<{ status: 200 | 400; body: ClassifyResponse }> {
  if (!input.file && !input.params.url) {
    throw badRequest('No input images. Send an image or a zip of images as images_file, or an image URL as url.');
  }
  const warnings: Warning[] = [];
  const ignored = input.ignoredQueryParameters ?? [];
  if (ignored.length > 0) {
    const names = ignored.map((name) => `'${name}'`).join(', ');
    const one = ignored.length === 1;
    warnings.push({
      warning_id: 'parameters_ignored',
      description:
        `The query parameter${one ? '' : 's'} ${names} ${one ? 'was' : 'were'} ignored: POST /v3/classify reads ${one ? 'it' : 'them'} only as multipart form fields. ` +
        `Send ${one ? 'it as a form field' : 'them as form fields'} (curl: --form "${ignored[0]}=…").`,
    });
  }
  const { applied, leases } = await resolveClassifiers(ctx, input.ownerId, input.params, warnings);
  try {
    return await classifyWith(ctx, input, applied, warnings);
  } finally {
    // The versions used are held until the answer is made, so retention cannot prune them meanwhile.
    await releaseAll(leases);
  }
}

async function classifyWith(
  ctx: ClassifyContext,
  input: { ownerId: string; params: ClassifyParameters; file?: UploadedImagesFile },
  applied: AppliedClassifier[],
  warnings: Warning[],
): Promise<{ status: 200 | 400; body: ClassifyResponse }> {
  const inputs = await gatherImages(ctx, input);

  if (applied.length === 0) {
    const error = {
      code: 400,
      description:
        'Did not find any valid classifier_ids specified in the request. Use default, or the id of one of your classifiers whose status is ready (GET /v3/classifiers).',
      error_id: 'input_error',
    };
    ctx.observer?.images('failed', inputs.length);
    return {
      status: 400,
      body: {
        images: inputs.map((i) => ({ ...i.label, error })),
        images_processed: 0,
        custom_classes: 0,
        ...withWarnings(warnings),
      },
    };
  }

  const toAnalyse = inputs.filter((i) => i.bytes);
  const modelInputs = toAnalyse.map((i) => ({
    name: 'image' in i.label ? i.label.image : i.label.source_url,
    bytes: i.bytes!,
  }));
  const appliesDefault = applied.some((c) => c.kind === 'default');
  const namesObjects = ctx.namesObjects && ctx.embedder.packOnlyKey !== undefined;
  // One pass per image serves every classifier, each network run only as far as the classifiers asked need.
  const parts: AnalysisPart[] = [];
  if (appliesDefault) parts.push('colors', 'imagenetLogits', ...(namesObjects ? (['objects'] as const) : []));
  if (applied.some((c) => c.kind === 'explicit')) parts.push('explicit');
  const analyses = await ctx.embedder.analyze(modelInputs, (stage, seconds) => ctx.observer?.stage(stage, seconds), {
    parts,
  });
  const analysisOf = new Map(toAnalyse.map((img, k) => [img, analyses[k]]));

  if (appliesDefault && !namesObjects && !ctx.embedder.manifest.heads.imagenet) {
    warnings.push({ warning_id: 'default_objects_unavailable', description: DEFAULT_MISSING_OBJECTS_WARNING });
  }
  let headSeconds = 0;
  const images = inputs.map((img) => {
    if (img.error) return { ...img.label, error: img.error };
    const analysis = analysisOf.get(img)!;
    if (analysis instanceof ImageDecodeError) {
      return { ...img.label, error: { code: 400, description: analysis.message, error_id: 'input_error' } };
    }
    return {
      ...img.label,
      classifiers: applied.map((c) => {
        const start = process.hrtime.bigint();
        const result = classify(c, analysis, namesObjects ? analysis.objects : undefined, input.params.threshold);
        if (c.kind === 'custom') headSeconds += secondsSince(start);
        return result;
      }),
    };
  });
  if (applied.some((c) => c.kind === 'custom')) ctx.observer?.stage('heads', headSeconds);
  const failed = images.filter((i) => 'error' in i).length;
  ctx.observer?.images('classified', images.length - failed);
  ctx.observer?.images('failed', failed);
  const customClasses = applied.reduce((n, c) => n + (c.kind === 'custom' ? c.head.classes.length : 0), 0);
  return {
    status: 200,
    body: { images, images_processed: inputs.length, custom_classes: customClasses, ...withWarnings(warnings) },
  };
}

function withWarnings(warnings: Warning[]) {
  return warnings.length > 0 ? { warnings } : {};
}

function classify(
  c: AppliedClassifier,
  analysis: ImageAnalysis,
  objects: BuiltinClass[] | undefined,
  threshold: number,
): ClassifierResult {
  let classes: BuiltinClass[];
  if (c.kind === 'custom') {
    // A head trained before the pack key changed keeps serving on the embedding it knows until its retrain is ready.
    const embedding =
      c.head.packKey === analysis.packEmbedding?.key ? analysis.packEmbedding.embedding : analysis.embedding;
    const scores = scoreHead(c.head, embedding);
    classes = c.head.classes.map((name, i) => ({ class: name, score: scores[i] }));
  } else if (c.kind === 'default') {
    classes = defaultClasses({ colors: analysis.colors ?? [], imagenetLogits: analysis.imagenetLogits, objects });
  } else {
    classes = explicitClasses(analysis);
  }
  const kept = classes
    .filter((k) => k.score >= threshold)
    .map((k) => ({ ...k, score: Math.round(k.score * 1e6) / 1e6 }))
    .sort((a, b) => b.score - a.score);
  if (c.kind === 'custom') return { classifier_id: c.id, name: c.name, version_id: c.versionId, classes: kept };
  return { classifier_id: c.id, name: c.id, classes: kept };
}

type Requested = { kind: 'builtin'; id: string } | { kind: 'custom'; ref: ClassifierRef; reportUnready: boolean };

/**
 * The classifiers a request applies, in request order, with the custom ones' versions leased
 * (release the leases when the request is done). A pinned version that cannot serve is a 400
 * (nothing stays leased); an unknown or unready unpinned id is a warning, as in Watson.
 *
 * The versions are read, then leased: retention that commits in between either saw the lease
 * (after its commit it reads them again, and keeps the file) or removed the file before this
 * request loads it, which then resolves again (loadHead) and answers as a request made after it.
 */
async function resolveClassifiers(
  ctx: ClassifyContext,
  ownerId: string,
  params: ClassifyParameters,
  warnings: Warning[],
): Promise<{ applied: AppliedClassifier[]; leases: VersionLease[] }> {
  const requested: Requested[] = [];
  if (params.classifierIds) {
    for (const token of params.classifierIds) {
      if (BUILT_IN_IDS.has(token)) requested.push({ kind: 'builtin', id: token });
      else requested.push({ kind: 'custom', ref: parseClassifierRef(token), reportUnready: true });
    }
  } else if (params.owners) {
    if (params.owners.includes('IBM')) requested.push({ kind: 'builtin', id: 'default' });
    if (params.owners.includes('me')) {
      for (const c of await ctx.classifiers.listByOwner(ownerId))
        requested.push({ kind: 'custom', ref: { id: c.id }, reportUnready: false });
    }
  } else {
    requested.push({ kind: 'builtin', id: 'default' });
  }

  const customs = requested.filter((r): r is Extract<Requested, { kind: 'custom' }> => r.kind === 'custom');
  // First drop the heads the database logged as forgotten since this process last looked. Built-ins
  // answer without the database, so a failure here must not fail the request; one that needs the
  // database fails at its resolution just below.
  await forgetRemovedHeads(ctx).catch(() => undefined);
  const leases: VersionLease[] = [];
  const lease = async (refs: ClassifierRef[]) => {
    const resolved = await ctx.versions.resolve(
      ownerId,
      refs.map((ref) => ({ classifierId: ref.id, versionId: ref.versionId })),
    );
    const used = resolved.flatMap((r) => (r.outcome === 'ok' ? [r.version.id] : []));
    if (used.length > 0) leases.push(await ctx.leases.hold(used));
    return resolved;
  };
  try {
    const resolved = await lease(customs.map((r) => r.ref));
    const applied: AppliedClassifier[] = [];
    let k = 0;
    for (const r of requested) {
      if (r.kind === 'builtin') {
        addBuiltIn(ctx, r.id, applied, warnings);
        continue;
      }
      addCustom(ctx, r, await loadHead(ctx, resolved[k++], async () => (await lease([r.ref]))[0]), applied, warnings);
    }
    return { applied, leases };
  } catch (error) {
    await releaseAll(leases);
    throw error;
  }
}

/** Ends a request's leases; one that cannot be removed from Redis expires (VERSION_LEASE_TTL_MS). */
async function releaseAll(leases: VersionLease[]): Promise<void> {
  for (const lease of leases) await lease.release();
}

function addBuiltIn(ctx: ClassifyContext, id: string, applied: AppliedClassifier[], warnings: Warning[]) {
  if (id === 'explicit' && !ctx.embedder.manifest.heads.explicit) {
    warnings.push({
      warning_id: 'classifier_unavailable',
      description:
        "The built-in classifier 'explicit' needs the bundled model pack, which is not the active pack on this server.",
    });
    return;
  }
  applied.push({ kind: id as 'default' | 'explicit', id });
}

/** Drops from this process's memory the heads of versions removed, pruned or deleted since its last look. */
async function forgetRemovedHeads(ctx: ClassifyContext): Promise<void> {
  const { last, versionIds } = await ctx.versions.forgottenSince(ctx.headCache.forgottenUpTo);
  ctx.headCache.forget(versionIds, last);
}

/** A resolved version with its head loaded, or why there is none. */
type Loaded =
  Exclude<ResolvedVersion, { outcome: 'ok' }> | (Extract<ResolvedVersion, { outcome: 'ok' }> & { head: TrainedHead });

/**
 * The resolved version's head, from memory or its file. When the file went after this request
 * resolved the version (a customer-data deletion removed it, or its classifier was deleted), the
 * request answers as one made after that: it resolves once more.
 */
async function loadHead(
  ctx: ClassifyContext,
  found: ResolvedVersion,
  resolveAgain: () => Promise<ResolvedVersion>,
): Promise<Loaded> {
  if (found.outcome !== 'ok') return found;
  try {
    return { ...found, head: await ctx.headCache.get(found.version) };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    const again = await resolveAgain();
    if (again.outcome !== 'ok') return again;
    if (again.version.id === found.version.id) throw error; // the version is there, its file is not: a fault
    return { ...again, head: await ctx.headCache.get(again.version) };
  }
}

function addCustom(
  ctx: ClassifyContext,
  r: Extract<Requested, { kind: 'custom' }>,
  found: Loaded,
  applied: AppliedClassifier[],
  warnings: Warning[],
) {
  const { id, versionId } = r.ref;
  if (versionId !== undefined && found.outcome !== 'ok') {
    if (found.outcome === 'pruned') throw prunedVersion(id, versionId, 400);
    if (found.outcome === 'no-version') throw new ApiError(400, noSuchVersion(id, versionId).message);
    throw new ApiError(
      400,
      `Cannot find classifier '${id}', so its version ${versionId} cannot be used. Check the classifier_id (GET /v3/classifiers lists yours).`,
    );
  }
  if (found.outcome === 'no-classifier') {
    warnings.push({
      warning_id: 'classifier_not_found',
      description: `Could not find classifier '${id}'; it was skipped.`,
    });
    return;
  }
  if (found.outcome !== 'ok') {
    const c = found.classifier!;
    if (r.reportUnready) {
      warnings.push({
        warning_id: 'classifier_not_ready',
        description:
          c.status === 'failed'
            ? `Classifier '${id}' failed to train (${c.explanation ?? 'see its explanation'}); it was skipped.`
            : `Classifier '${id}' is still training and has no version to classify with yet; it was skipped. Poll GET /v3/classifiers/${id} until its status is ready.`,
      });
    }
    return;
  }
  const { classifier: c, version, head } = found;
  if (head.packKey !== ctx.embedder.packKey && head.packKey !== ctx.embedder.packOnlyKey) {
    warnings.push({
      warning_id: 'classifier_needs_retraining',
      description: `Classifier '${id}'${versionId !== undefined ? ` version ${versionId}` : ''} was trained with model pack ${head.packKey}, but this server now runs ${ctx.embedder.packKey}; it was skipped. Retrain it by sending any example zip to POST /v3/classifiers/${id}.`,
    });
    return;
  }
  applied.push({ kind: 'custom', id: c.id, name: c.name, versionId: version.id, head });
}

async function gatherImages(
  ctx: ClassifyContext,
  input: { params: ClassifyParameters; file?: UploadedImagesFile },
): Promise<InputImage[]> {
  const images: InputImage[] = [];
  const { limits } = ctx;
  if (input.file) {
    const name = input.file.originalName || 'images_file';
    const head = Buffer.alloc(4);
    const handle = await fs.open(input.file.path);
    await handle.read(head, 0, 4, 0).finally(() => handle.close());
    if (isZip(head)) {
      try {
        const entries = await readZipImages(input.file.path, 'images_file', {
          minImages: 1,
          maxImages: limits.maxClassifyZipImages,
          maxZipBytes: limits.maxZipBytes,
          maxEntryBytes: limits.maxClassifyImageBytes,
          maxTotalUncompressedBytes: limits.maxZipBytes,
        });
        for (const e of entries) images.push({ label: { image: `${name}/${e.entryName}` }, bytes: e.bytes });
      } catch (error) {
        if (error instanceof ZipInputError) throw badRequest(error.message);
        throw error;
      }
    } else if (input.file.size > limits.maxClassifyImageBytes) {
      throw badRequest(
        `The image '${name}' is ${(input.file.size / 1048576).toFixed(1)} MB; at most ${Math.round(limits.maxClassifyImageBytes / 1048576)} MB are accepted per image. Send a smaller image.`,
      );
    } else {
      images.push({ label: { image: name }, bytes: await fs.readFile(input.file.path) });
    }
  }
  if (input.params.url) images.push(await fetchUrlImage(ctx, input.params.url));
  return images;
}

async function fetchUrlImage(ctx: ClassifyContext, url: string): Promise<InputImage> {
  try {
    const fetched = await ctx.fetchImage(url);
    return { label: { source_url: url, resolved_url: fetched.resolvedUrl }, bytes: fetched.bytes };
  } catch (error) {
    if (!(error instanceof UrlFetchError)) throw error;
    return {
      label: { source_url: url },
      error: { code: 400, description: error.description, error_id: 'input_error' },
    };
  }
}
