import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { decodeFloat16 } from './float16';
import { decodeInt8Vectors, int8VectorBytes } from './int8';

/**
 * The bank of generic real images (animals, people, vehicles, food, tools, places, sample photos, drawings,
 * screenshots and plots, …) that every custom classifier learns as implicit negatives, so that 0.5 keeps
 * meaning "this class" for a picture of none of its classes, plus synthetic copies of some of them (tiny
 * grey thumbnails, greyscale, low resolution, zoomed in) so that degraded pictures are negatives too. Only
 * derived vectors ship (int8 with a scale each, `<pack key>` embeddings), built by
 * `npm run build:negative-bank` from Debian packages; NOTICE lists each image's source and licence.
 */
export interface NegativeBank {
  packKey: string;
  dim: number;
  /** Unit-norm embeddings: one per bank image, then one per synthetic copy (see `variants`). */
  embeddings: Float32Array[];
  /** Where each item's image came from (`<package>:<path>`), in embedding order; a copy has its original's. */
  sources: string[];
  /** Each item's variant: `original` for the image itself, else the synthetic copy's (BANK_VARIANTS). */
  variants: BankVariant[];
  /** Each item's Debian package (the part of its source before the colon): benchmarks leave out whole packages. */
  packages: string[];
  /** What each item's image shows: a camera photo, a drawing, or a figure (screenshot, plot, diagram, text). */
  kinds: BankImageKind[];
  /** The items in farthest-first order (see the manifest's `coreset`), when the bank was built with it. */
  coreset?: number[];
}

/**
 * Bank items a classifier trains on: the first BANK_TRAINING_ITEMS of the farthest-first order, a k-centre
 * coreset that keeps the bank's diversity. Measured 2026-12-07 (load 9–18, 2 cores): bench:train, 10 photos
 * a class (50 examples) 9.5 → 3.0 CPU s, 200 examples 24.5 → 7.4 CPU s against the whole bank (2,602);
 * bench:accuracy's tutorial scenarios, unrelated photos ≥ 0.5 whole bank → 800 → 1,200: objects 24.0 →
 * 26.2 → 26.9 %, bank subjects 22.1 → 22.5 %, food 6.2 → 7.4 → 7.7 %, held-out recall within 0.005; the
 * food classifier's GCompris photos 0.9 %, thumbnails 0 %, darknet 0 %; GCompris-5 top-1 0.938 either way.
 */
export const BANK_TRAINING_ITEMS = 800;

/**
 * The bank cut to its first `items` items in farthest-first order (in that order), for training: every
 * head trains on all of them, so this bounds what the bank adds to every training (rows × 3648 values per
 * optimiser round). A bank without an order, or with no more items, is returned whole.
 */
export function trainingBank(bank: NegativeBank, items = BANK_TRAINING_ITEMS): NegativeBank {
  if (!bank.coreset || bank.embeddings.length <= items) return bank;
  const kept = bank.coreset.slice(0, items);
  return {
    ...bank,
    embeddings: kept.map((i) => bank.embeddings[i]),
    sources: kept.map((i) => bank.sources[i]),
    variants: kept.map((i) => bank.variants[i]),
    packages: kept.map((i) => bank.packages[i]),
    kinds: kept.map((i) => bank.kinds[i]),
    coreset: undefined,
  };
}

/**
 * The synthetic copies the builder can make of a bank image (open-set study, fix (a)): a 28×28 grey
 * thumbnail, the image in greyscale, the image shrunk to 48 px on its long side, and its centre half
 * enlarged 2×. Each teaches the heads that a degraded picture of nothing in particular is still nothing.
 */
export const BANK_VARIANTS = ['grey28', 'greyscale', 'low48', 'zoom2'] as const;
export type BankVariant = 'original' | (typeof BANK_VARIANTS)[number];
export const BANK_IMAGE_KINDS = ['photo', 'drawing', 'figure'] as const;
export type BankImageKind = (typeof BANK_IMAGE_KINDS)[number];

/**
 * Licences under which the project ships vectors derived from an image (never the image): public domain,
 * CC0, CC-BY (attribution in NOTICE) and permissive BSD/Apache/MIT. Share-alike and GPL images are left
 * out on purpose, conservatively, although a vector is not a copy of its image.
 */
export const SHIPPABLE_LICENCE =
  /^(public domain|cc0-1\.0|cc-by[- ]\d\.\d|bsd-[23]-clause|apache-2\.0|expat|mit|apache-2\.0 and bsd-3-clause)$/i;

export const NEGATIVE_BANK_DIR = path.join('assets', 'negative-bank');
export const BANK_MANIFEST = 'bank.json';
export const BANK_ENCODINGS = ['int8', 'float16', 'float32'] as const;
export type BankEncoding = (typeof BANK_ENCODINGS)[number];

export const bankManifestSchema = z.object({
  format: z.literal(2),
  packKey: z.string().min(1),
  dim: z.number().int().positive(),
  /** How `vectors` stores the rows: int8 (int8.ts: a float32 scale then one byte a value), float16 or float32. */
  encoding: z.enum(BANK_ENCODINGS),
  /** The file (beside the manifest) holding the rows: the photos' in order, then the synthetic items'. */
  vectors: z.string().min(1),
  photos: z.array(
    z.object({
      /** `<Debian package>:<path inside it>`. */
      source: z.string().min(1),
      licence: z.string().regex(SHIPPABLE_LICENCE),
      copyright: z.string().optional(),
      origin: z.string().optional(),
      kind: z.enum(BANK_IMAGE_KINDS),
      /** The folder the package files it under (e.g. "animals", "food"): what it shows, roughly. */
      topic: z.string(),
    }),
  ),
  /** Synthetic copies kept (a coreset of all of them), as [index into photos, variant]. */
  synthetic: z.array(z.tuple([z.number().int().nonnegative(), z.enum(BANK_VARIANTS)])),
  /**
   * Every item's index (photos first, then synthetic items) in farthest-first order (coreset.ts), computed
   * from the stored vectors at build time: training uses a prefix of it (trainingBank). Absent in banks
   * built before it; training then uses every item.
   */
  coreset: z.array(z.number().int().nonnegative()).optional(),
});
export type BankManifest = z.infer<typeof bankManifestSchema>;

/** Bytes a row takes in each encoding. */
export function bankRowBytes(encoding: BankEncoding, dim: number): number {
  return encoding === 'int8' ? int8VectorBytes(dim) : encoding === 'float16' ? dim * 2 : dim * 4;
}

/**
 * The project's root: this file is src/ml/open-set/*.ts under ts-node and dist/src/ml/open-set/*.js
 * when compiled. (Not "the nearest package.json": tsc also writes one into dist/, where no assets are.)
 */
export function projectRoot(): string {
  return path.resolve(__dirname, ...(__filename.endsWith('.ts') ? ['..', '..', '..'] : ['..', '..', '..', '..']));
}

/**
 * The bank built for `packKey`, or undefined when the shipped bank was built for another embedding
 * (the ImageNet pack, say): classifiers then train without implicit negatives and rely on the k-NN
 * gate alone. A bank that is present but broken throws: it is part of the product. Cost: one read of the
 * vectors file and one pass over its values (about 15 MB for 4,000 rows at dim 3648), rows renormalised to
 * unit length after decoding.
 */
export function loadNegativeBank(
  packKey: string,
  dir = path.join(projectRoot(), NEGATIVE_BANK_DIR),
): NegativeBank | undefined {
  const manifestPath = path.join(dir, BANK_MANIFEST);
  if (!fs.existsSync(manifestPath)) return undefined;
  const manifest = bankManifestSchema.parse(JSON.parse(fs.readFileSync(manifestPath, 'utf8')));
  if (manifest.packKey !== packKey) return undefined;
  const { dim, photos, synthetic } = manifest;
  const coreset = manifest.coreset;
  if (
    coreset &&
    (new Set(coreset).size !== photos.length + synthetic.length ||
      coreset.some((i) => i >= photos.length + synthetic.length))
  )
    throw new Error(
      `${manifestPath}: the coreset order is not a permutation of the ${photos.length + synthetic.length} items`,
    );
  for (const [photo] of synthetic) {
    if (photo >= photos.length)
      throw new Error(`${manifestPath}: a synthetic item names photo ${photo} of ${photos.length}`);
  }
  const count = photos.length + synthetic.length;
  const vectorsPath = path.join(dir, manifest.vectors);
  const bytes = fs.readFileSync(vectorsPath);
  if (bytes.length !== count * bankRowBytes(manifest.encoding, dim)) {
    throw new Error(
      `${vectorsPath}: ${bytes.length} bytes, expected ${count} rows of ${dim} ${manifest.encoding} values`,
    );
  }
  const all =
    manifest.encoding === 'int8'
      ? decodeInt8Vectors(bytes, count, dim)
      : manifest.encoding === 'float16'
        ? decodeFloat16(bytes)
        : new Float32Array(Uint8Array.from(bytes).buffer);
  const embeddings = Array.from({ length: count }, (_, i) => {
    const row = all.subarray(i * dim, (i + 1) * dim);
    let norm = 0;
    for (let j = 0; j < dim; j += 1) norm += row[j] * row[j];
    norm = Math.sqrt(norm);
    if (norm > 0) for (let j = 0; j < dim; j += 1) row[j] /= norm;
    return row;
  });
  const items = [
    ...photos.map((photo) => ({ photo, variant: 'original' as BankVariant })),
    ...synthetic.map(([index, variant]) => ({ photo: photos[index], variant: variant as BankVariant })),
  ];
  return {
    packKey,
    dim,
    embeddings,
    sources: items.map((item) => item.photo.source),
    variants: items.map((item) => item.variant),
    packages: items.map((item) => item.photo.source.split(':')[0]),
    kinds: items.map((item) => item.photo.kind),
    ...(coreset ? { coreset } : {}),
  };
}
