import type { ReviewBody } from '../data-access/db/example-repository';
import { centredOn, nearDuplicatePairs, NEAR_DUPLICATE_MAX_IMAGES } from '../ml';

/** Stored scores keep 4 decimals: finer than any score the API shows matters, and the JSON stays small. */
const round = (score: number) => Math.round(score * 1e4) / 1e4;

/** Pairs kept per version: the console shows the closest first, and a set with more has bigger problems. */
const MAX_DUPLICATE_PAIRS = 1000;

/**
 * What a training run records about its examples for review (issue 23), keyed by example id:
 * the out-of-fold class scores of each example's picture (`outOfFold[i]` belongs to `images[i]`),
 * and the pairs of examples whose pictures are near-duplicates (the same picture included) but
 * whose labels differ, by cosine distance between the embeddings centred on the set's mean (see
 * NEAR_DUPLICATE_DISTANCE). Near-duplicates are searched only up to NEAR_DUPLICATE_MAX_IMAGES pictures.
 */
export function buildReview(input: {
  classes: string[];
  examples: Array<{ id: number; className: string | null; imageHash: string }>;
  /** The pictures trained on, in training order, with their embeddings. */
  images: string[];
  embeddings: Float32Array[];
  outOfFold: Array<number[] | null> | undefined;
}): ReviewBody {
  const imageIndex = new Map(input.images.map((hash, i) => [hash, i]));
  const scores: Record<string, number[]> = {};
  const byImage = new Map<number, Array<{ id: number; className: string | null }>>();
  for (const e of input.examples) {
    const i = imageIndex.get(e.imageHash);
    if (i === undefined) continue;
    byImage.set(i, [...(byImage.get(i) ?? []), e]);
    const own = input.outOfFold?.[i];
    if (own) scores[String(e.id)] = own.map(round);
  }

  const duplicates: Array<[number, number, number]> = [];
  const pairUp = (a: number, b: number, distance: number) => {
    for (const x of byImage.get(a) ?? [])
      for (const y of byImage.get(b) ?? [])
        if (x.id !== y.id && x.className !== y.className)
          duplicates.push([Math.min(x.id, y.id), Math.max(x.id, y.id), round(distance)]);
  };
  // The same picture under two labels.
  for (const [i, members] of byImage) if (members.length > 1) pairUp(i, i, 0);
  if (input.images.length <= NEAR_DUPLICATE_MAX_IMAGES) {
    for (const [i, j, distance] of nearDuplicatePairs(centredOn(input.embeddings), undefined, MAX_DUPLICATE_PAIRS))
      pairUp(i, j, distance);
  }
  const unique = new Map(duplicates.map((d) => [`${d[0]}:${d[1]}`, d]));
  const kept = [...unique.values()].sort((p, q) => p[2] - q[2] || p[0] - q[0] || p[1] - q[1]);
  return { classes: [...input.classes], scores, duplicates: kept.slice(0, MAX_DUPLICATE_PAIRS) };
}
