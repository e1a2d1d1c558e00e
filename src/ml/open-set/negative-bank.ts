import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { decodeFloat16 } from './float16';

/**
 * The bank of generic real photos (landmarks, tools, animals, dams, planets, sample photos, …) that every
 * custom classifier learns as implicit negatives, so that 0.5 keeps meaning "this class" for a picture of
 * none of its classes. Only derived vectors ship (float16, `<pack key>` embeddings), built by
 * `npm run build:negative-bank` from Debian packages; NOTICE lists each photo's source and licence.
 */
export interface NegativeBank {
  packKey: string;
  dim: number;
  /** Unit-norm embeddings, one per photo. */
  embeddings: Float32Array[];
  /** Where each photo came from (`<package>:<path>`), in embedding order. */
  sources: string[];
}

export const NEGATIVE_BANK_DIR = path.join('assets', 'negative-bank');
export const BANK_MANIFEST = 'bank.json';
export const BANK_VECTORS = 'bank.f16';

export const bankManifestSchema = z.object({
  format: z.literal(1),
  packKey: z.string().min(1),
  dim: z.number().int().positive(),
  photos: z.array(
    z.object({
      /** `<Debian package>:<path inside it>`. */
      source: z.string().min(1),
      licence: z.string().min(1),
      copyright: z.string().optional(),
      origin: z.string().optional(),
    }),
  ),
});
export type BankManifest = z.infer<typeof bankManifestSchema>;

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
 * gate alone. A bank that is present but broken throws: it is part of the product.
 */
export function loadNegativeBank(
  packKey: string,
  dir = path.join(projectRoot(), NEGATIVE_BANK_DIR),
): NegativeBank | undefined {
  const manifestPath = path.join(dir, BANK_MANIFEST);
  if (!fs.existsSync(manifestPath)) return undefined;
  const manifest = bankManifestSchema.parse(JSON.parse(fs.readFileSync(manifestPath, 'utf8')));
  if (manifest.packKey !== packKey) return undefined;
  const count = manifest.photos.length;
  const bytes = fs.readFileSync(path.join(dir, BANK_VECTORS));
  if (bytes.length !== count * manifest.dim * 2) {
    throw new Error(
      `${path.join(dir, BANK_VECTORS)}: ${bytes.length} bytes, expected ${count} × ${manifest.dim} float16 values`,
    );
  }
  const all = decodeFloat16(bytes);
  const embeddings = Array.from({ length: count }, (_, i) => all.subarray(i * manifest.dim, (i + 1) * manifest.dim));
  return { packKey, dim: manifest.dim, embeddings, sources: manifest.photos.map((p) => p.source) };
}
