import fs from 'node:fs/promises';
import { badRequest } from '../errors';
import type { ClassifierRepository } from '../data-access/classifier-repository';
import type { HeadCache } from '../data-access/head-cache';
import type { FetchedImage } from '../data-access/url-image-fetcher';
import { UrlFetchError } from '../data-access/url-image-fetcher';
import { isZip, readZipImages, ZipInputError } from '../data-access/zip-images';
import type { Config } from '../config';
import { ImageDecodeError } from '../ml/decode-image';
import { defaultClasses, DEFAULT_MISSING_OBJECTS_WARNING } from '../ml/default-classifier';
import type { Embedder, ImageAnalysis } from '../ml/embedder';
import { explicitClasses } from '../ml/explicit-classifier';
import { scoreHead, type TrainedHead } from '../ml/heads';
import type { BuiltinClass } from '../ml/types';
import type { ClassifyParameters } from './classify-request';

export interface ClassifyContext {
  classifiers: ClassifierRepository;
  headCache: HeadCache;
  /** Analyses each image once: embedding, explicit, colours and (with its detector) COCO objects. */
  embedder: Embedder;
  /** Whether `default` names the detector's COCO objects; without them (and without the ImageNet pack) it gives colours only. */
  namesObjects: boolean;
  limits: Config['limits'];
  fetchImage: (url: string) => Promise<FetchedImage>;
}

export interface UploadedImagesFile {
  path: string;
  originalName: string;
  size: number;
}

interface Warning {
  warning_id: string;
  description: string;
}

interface ImageError {
  code: number;
  description: string;
  error_id: string;
}

type ImageLabel = { image: string } | { source_url: string; resolved_url?: string };

interface InputImage {
  label: ImageLabel;
  bytes?: Buffer;
  error?: ImageError;
}

type AppliedClassifier =
  | { kind: 'default' | 'explicit'; id: string }
  | { kind: 'custom'; id: string; name: string; head: TrainedHead };

interface ClassifierResult {
  classifier_id: string;
  name: string;
  classes: BuiltinClass[];
}

export interface ClassifyResponse {
  images: Array<ImageLabel & { classifiers?: ClassifierResult[]; error?: ImageError }>;
  images_processed: number;
  custom_classes: number;
  warnings?: Warning[];
}

const BUILT_IN_IDS = new Set(['default', 'explicit']);

/** POST/GET /v3/classify: built-in and custom classifiers over an image, a zip of images, or a URL. */
export async function classifyImages(
  ctx: ClassifyContext,
  input: { ownerId: string; params: ClassifyParameters; file?: UploadedImagesFile },
): Promise<{ status: 200 | 400; body: ClassifyResponse }> {
  if (!input.file && !input.params.url) {
    throw badRequest('No input images. Send an image or a zip of images as images_file, or an image URL as url.');
  }
  const warnings: Warning[] = [];
  const applied = await resolveClassifiers(ctx, input.ownerId, input.params, warnings);
  const inputs = await gatherImages(ctx, input);

  if (applied.length === 0) {
    const error = {
      code: 400,
      description:
        'Did not find any valid classifier_ids specified in the request. Use default, or the id of one of your classifiers whose status is ready (GET /v3/classifiers).',
      error_id: 'input_error',
    };
    return {
      status: 400,
      body: { images: inputs.map((i) => ({ ...i.label, error })), images_processed: 0, custom_classes: 0, ...withWarnings(warnings) },
    };
  }

  const toAnalyse = inputs.filter((i) => i.bytes);
  const modelInputs = toAnalyse.map((i) => ({ name: 'image' in i.label ? i.label.image : i.label.source_url, bytes: i.bytes! }));
  const appliesDefault = applied.some((c) => c.kind === 'default');
  // One pass per image serves every classifier: both networks run once, whatever was asked.
  const analyses = await ctx.embedder.analyze(modelInputs);
  const analysisOf = new Map(toAnalyse.map((img, k) => [img, analyses[k]]));
  const namesObjects = ctx.namesObjects && ctx.embedder.packOnlyKey !== undefined;

  if (appliesDefault && !namesObjects && !ctx.embedder.manifest.heads.imagenet) {
    warnings.push({ warning_id: 'default_objects_unavailable', description: DEFAULT_MISSING_OBJECTS_WARNING });
  }
  const images = inputs.map((img) => {
    if (img.error) return { ...img.label, error: img.error };
    const analysis = analysisOf.get(img)!;
    if (analysis instanceof ImageDecodeError) {
      return { ...img.label, error: { code: 400, description: analysis.message, error_id: 'input_error' } };
    }
    return {
      ...img.label,
      classifiers: applied.map((c) => classify(c, analysis, namesObjects ? analysis.objects : undefined, input.params.threshold)),
    };
  });
  const customClasses = applied.reduce((n, c) => n + (c.kind === 'custom' ? c.head.classes.length : 0), 0);
  return {
    status: 200,
    body: { images, images_processed: inputs.length, custom_classes: customClasses, ...withWarnings(warnings) },
  };
}

function withWarnings(warnings: Warning[]) {
  return warnings.length > 0 ? { warnings } : {};
}

function classify(c: AppliedClassifier, analysis: ImageAnalysis, objects: BuiltinClass[] | undefined, threshold: number): ClassifierResult {
  let classes: BuiltinClass[];
  if (c.kind === 'custom') {
    // A head trained before the pack key changed keeps serving on the embedding it knows until its retrain is ready.
    const embedding = c.head.packKey === analysis.packEmbedding?.key ? analysis.packEmbedding.embedding : analysis.embedding;
    const scores = scoreHead(c.head, embedding);
    classes = c.head.classes.map((name, i) => ({ class: name, score: scores[i] }));
  } else if (c.kind === 'default') {
    classes = defaultClasses({ colors: analysis.colors, imagenetLogits: analysis.imagenetLogits, objects });
  } else {
    classes = explicitClasses(analysis);
  }
  const kept = classes
    .filter((k) => k.score >= threshold)
    .map((k) => ({ ...k, score: Math.round(k.score * 1e6) / 1e6 }))
    .sort((a, b) => b.score - a.score);
  return { classifier_id: c.id, name: c.kind === 'custom' ? c.name : c.id, classes: kept };
}

async function resolveClassifiers(
  ctx: ClassifyContext,
  ownerId: string,
  params: ClassifyParameters,
  warnings: Warning[],
): Promise<AppliedClassifier[]> {
  const applied: AppliedClassifier[] = [];
  const addBuiltIn = (id: string) => {
    if (id === 'explicit' && !ctx.embedder.manifest.heads.explicit) {
      warnings.push({
        warning_id: 'classifier_unavailable',
        description: "The built-in classifier 'explicit' needs the bundled model pack, which is not the active pack on this server.",
      });
      return;
    }
    applied.push({ kind: id as 'default' | 'explicit', id });
  };
  const addCustom = async (id: string, reportUnready: boolean) => {
    const c = ctx.classifiers.findOwned(id, ownerId);
    if (!c) {
      warnings.push({ warning_id: 'classifier_not_found', description: `Could not find classifier '${id}'; it was skipped.` });
      return;
    }
    const found = c.currentVersionId !== null ? ctx.classifiers.findVersion(c.currentVersionId) : undefined;
    const version = found?.classifierId === c.id ? found : undefined;
    if (!version) {
      if (reportUnready) {
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
    const head = await ctx.headCache.get(version);
    if (head.packKey !== ctx.embedder.packKey && head.packKey !== ctx.embedder.packOnlyKey) {
      warnings.push({
        warning_id: 'classifier_needs_retraining',
        description: `Classifier '${id}' was trained with model pack ${head.packKey}, but this server now runs ${ctx.embedder.packKey}; it was skipped. Retrain it by sending any example zip to POST /v3/classifiers/${id}.`,
      });
      return;
    }
    applied.push({ kind: 'custom', id: c.id, name: c.name, head });
  };

  if (params.classifierIds) {
    for (const id of params.classifierIds) {
      if (BUILT_IN_IDS.has(id)) addBuiltIn(id);
      else await addCustom(id, true);
    }
  } else if (params.owners) {
    if (params.owners.includes('IBM')) addBuiltIn('default');
    if (params.owners.includes('me')) {
      for (const c of ctx.classifiers.listByOwner(ownerId)) await addCustom(c.id, false);
    }
  } else {
    addBuiltIn('default');
  }
  return applied;
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
    return { label: { source_url: url }, error: { code: 400, description: error.description, error_id: 'input_error' } };
  }
}
