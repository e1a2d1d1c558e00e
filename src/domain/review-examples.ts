import { badRequest, notFound } from '../errors';
import type { ExampleRecord, ReviewBody } from '../data-access/db/example-repository';
import { makeThumbnail } from '../ml';
import {
  EXAMPLE_PAGE,
  exampleListQuerySchema,
  mistakesQuerySchema,
  parseRequest,
  type ExampleListView,
  type ExampleView,
  type MistakeListView,
  type MistakeView,
} from './api-schemas';
import { ownedOrNotFound } from './lookups';
import { readExampleImage } from './pending-zips';
import type { ServiceContext } from './service-context';

/** How long a browser may reuse a thumbnail without asking (its ETag makes asking cheap). */
const THUMBNAIL_MAX_AGE_SECONDS = 3600;

/** `ex_<id>`: the id the API shows for an example row. */
export function exampleIdOf(id: number): string {
  return `ex_${id}`;
}

/** The row id of an example id, or undefined when it is not one (answered like an unknown id). */
export function exampleRowId(text: unknown): number | undefined {
  if (typeof text !== 'string') return undefined;
  const match = /^ex_(\d{1,15})$/.exec(text);
  if (!match) return undefined;
  const id = Number(match[1]);
  return id >= 1 ? id : undefined;
}

/** The 404 of an example id that is not one of this classifier's current examples (another owner's looks the same). */
export function exampleNotFound(classifierId: string, exampleId: string): ReturnType<typeof notFound> {
  return notFound(
    `Classifier '${classifierId}' has no example '${exampleId.slice(0, 40)}'. GET /v3/classifiers/${classifierId}/examples lists its examples.`,
  );
}

/** An example's out-of-fold evaluation from a version's review (see exampleEvaluationSchema), if it has one. */
export function evaluationOf(e: ExampleRecord, review: ReviewBody | undefined): ExampleView['evaluation'] {
  const scores = review?.scores[String(e.id)];
  if (!review || !scores) return undefined;
  let best = 0;
  for (let c = 1; c < scores.length; c++) if (scores[c] > scores[best]) best = c;
  const predicted = scores.length > 0 && scores[best] >= 0.5 ? review.classes[best] : null;
  const own = e.className === null ? -1 : review.classes.indexOf(e.className);
  let score: number;
  if (predicted !== null) score = scores[best];
  else if (own >= 0) score = scores[own];
  else score = scores.length > 0 ? scores[best] : 0;
  return { predicted_class: predicted, score, correct: predicted === e.className };
}

function exampleView(e: ExampleRecord, review: ReviewBody | undefined): ExampleView {
  const evaluation = evaluationOf(e, review);
  return {
    example_id: exampleIdOf(e.id),
    ...(e.className !== null ? { class: e.className } : {}),
    negative: e.className === null,
    file_name: e.entryName,
    created: e.created,
    ...(evaluation ? { evaluation } : {}),
  };
}

const PAGE_TOKEN_ERROR =
  "The parameter 'page_token' is not valid. Send the next_page_token of the previous answer as it was, or leave it out for the first page.";

function encodeToken(kind: 'e' | 'm', n: number): string {
  return Buffer.from(`${kind}:${n}`).toString('base64url');
}

function decodeToken(kind: 'e' | 'm', token: string | undefined): number | undefined {
  if (token === undefined) return undefined;
  const match = /^([em]):(\d{1,15})$/.exec(Buffer.from(token, 'base64url').toString('latin1'));
  if (!match || match[1] !== kind) throw badRequest(PAGE_TOKEN_ERROR);
  return Number(match[2]);
}

async function servingReview(
  ctx: ServiceContext,
  currentVersionId: number | null,
): Promise<{ versionId?: number; review?: ReviewBody }> {
  if (currentVersionId === null) return {};
  return { versionId: currentVersionId, review: await ctx.examples.review(currentVersionId) };
}

/**
 * Extension, GET /v3/classifiers/{id}/examples: a page of the classifier's examples (all, one
 * class's, or the negatives), newest first, with the serving version's out-of-fold evaluation of
 * each it evaluated.
 * @throws ApiError 400 (limit out of range, a page token this list did not give, an unknown class,
 *   class and negative=true together), 404 (unknown or another owner's classifier)
 */
export async function listExamples(
  ctx: ServiceContext,
  input: { ownerId: string; classifierId: string; query: Record<string, unknown> },
): Promise<ExampleListView> {
  const c = await ownedOrNotFound(ctx, input.classifierId, input.ownerId);
  const query = parseRequest(exampleListQuerySchema, {
    class: input.query.class,
    negative: input.query.negative,
    limit: input.query.limit,
    page_token: input.query.page_token,
  });
  if (query.class !== undefined && query.negative) {
    throw badRequest(
      "Send either class=<name> (one class's examples) or negative=true (the negatives), not both; neither lists all examples.",
    );
  }
  if (query.class !== undefined && !c.classes.includes(query.class)) {
    throw badRequest(
      `Classifier '${c.id}' has no class '${query.class.slice(0, 100)}'. Its classes are: ${c.classes.join(', ')} (names are case-sensitive).`,
    );
  }
  const limit = query.limit ?? EXAMPLE_PAGE.default;
  const beforeId = decodeToken('e', query.page_token);
  const filter = query.negative ? { className: null } : query.class !== undefined ? { className: query.class } : {};
  // One more than asked tells whether a next page exists.
  const rows = await ctx.examples.page(c.id, filter, beforeId, limit + 1);
  const page = rows.slice(0, limit);
  const { versionId, review } = await servingReview(ctx, c.currentVersionId);
  return {
    examples: page.map((e) => exampleView(e, review)),
    ...(rows.length > limit ? { next_page_token: encodeToken('e', page[page.length - 1].id) } : {}),
    ...(versionId !== undefined ? { version_id: versionId } : {}),
  };
}

/**
 * Extension, GET /v3/classifiers/{id}/examples/mistakes: the serving version's out-of-fold
 * mistakes (an example whose prediction is not its label) and the near-duplicate pictures it found
 * under different labels, most confident first, judged against the labels as they are now (a
 * moved example is judged by its new class until the next version). Empty before any version.
 * @throws ApiError 400 (limit out of range, a page token this list did not give), 404 (unknown classifier)
 */
export async function listMistakes(
  ctx: ServiceContext,
  input: { ownerId: string; classifierId: string; query: Record<string, unknown> },
): Promise<MistakeListView> {
  const c = await ownedOrNotFound(ctx, input.classifierId, input.ownerId);
  const query = parseRequest(mistakesQuerySchema, { limit: input.query.limit, page_token: input.query.page_token });
  const limit = query.limit ?? EXAMPLE_PAGE.default;
  const offset = decodeToken('m', query.page_token) ?? 0;
  const { versionId, review } = await servingReview(ctx, c.currentVersionId);
  if (versionId === undefined || !review) {
    if (offset > 0) throw badRequest(PAGE_TOKEN_ERROR);
    return { mistakes: [], ...(versionId !== undefined ? { version_id: versionId } : {}) };
  }
  const ids = new Set<number>(Object.keys(review.scores).map(Number));
  for (const [a, b] of review.duplicates) ids.add(a).add(b);
  const examples = await ctx.examples.findMany(c.id, [...ids]);

  const mistakes: Array<MistakeView & { order: number }> = [];
  for (const e of examples.values()) {
    const evaluation = evaluationOf(e, review);
    if (!evaluation || evaluation.correct) continue;
    mistakes.push({
      kind: 'mislabeled',
      confidence: evaluation.predicted_class !== null ? evaluation.score : 1 - evaluation.score,
      example: exampleView(e, review),
      predicted_class: evaluation.predicted_class,
      order: e.id,
    });
  }
  for (const [a, b, distance] of review.duplicates) {
    const x = examples.get(a);
    const y = examples.get(b);
    // Gone, now labelled alike, or one picture in two classes on purpose (an image may belong to several).
    if (!x || !y || x.className === y.className) continue;
    if (x.imageHash === y.imageHash && x.className !== null && y.className !== null) continue;
    mistakes.push({
      kind: 'cross_class_duplicate',
      confidence: Math.min(1, Math.max(0, 1 - distance)),
      examples: [exampleView(x, review), exampleView(y, review)],
      distance,
      order: Math.max(a, b),
    });
  }
  mistakes.sort((p, q) => q.confidence - p.confidence || q.order - p.order || p.kind.localeCompare(q.kind));
  if (offset > mistakes.length) throw badRequest(PAGE_TOKEN_ERROR);
  const page = mistakes.slice(offset, offset + limit).map(({ order: _order, ...m }) => m as MistakeView);
  return {
    mistakes: page,
    ...(offset + limit < mistakes.length ? { next_page_token: encodeToken('m', offset + limit) } : {}),
    version_id: versionId,
  };
}

/**
 * Extension, GET /v3/classifiers/{id}/examples/{example_id}/thumbnail: a small JPEG of the example
 * (makeThumbnail), its ETag derived from the picture's hash, so `ifNoneMatch` naming it answers
 * 304 without reading the image.
 * @throws ApiError 404 (unknown classifier, or an example id that is not one of its current examples)
 */
export async function exampleThumbnail(
  ctx: ServiceContext,
  input: { ownerId: string; classifierId: string; exampleId: string; ifNoneMatch: string | undefined },
): Promise<{ etag: string; maxAgeSeconds: number; notModified: boolean; jpeg?: Buffer }> {
  const c = await ownedOrNotFound(ctx, input.classifierId, input.ownerId);
  const rowId = exampleRowId(input.exampleId);
  const example = rowId === undefined ? undefined : (await ctx.examples.findMany(c.id, [rowId])).get(rowId);
  if (!example) throw exampleNotFound(c.id, input.exampleId);
  const etag = `"t1-${example.imageHash.slice(0, 32)}"`;
  const sent = (input.ifNoneMatch ?? '').split(',').map((t) => t.trim().replace(/^W\//, ''));
  if (sent.includes(etag) || sent.includes('*'))
    return { etag, maxAgeSeconds: THUMBNAIL_MAX_AGE_SECONDS, notModified: true };
  // Accepted at upload, so a failure here is a damaged store: a 500, logged as a fault.
  const image = await readExampleImage(ctx, c.id, example.imageHash);
  const jpeg = await makeThumbnail(image, example.entryName ?? input.exampleId);
  return { etag, maxAgeSeconds: THUMBNAIL_MAX_AGE_SECONDS, notModified: false, jpeg };
}
