import { badRequest } from '../errors';
import type { NewExample } from '../data-access/classifier-repository';
import { storeZipImages, ZipInputError } from '../data-access/zip-images';
import type { ServiceContext } from './service-context';
import type { ExampleUpload } from './training-form';

/**
 * Stores the images of every uploaded zip (content-addressed) and records them as examples via
 * `record`, all under the image lock. If any zip is bad, nothing is recorded and the images this
 * request added are removed again, so a failed upload leaves earlier data exactly as it was.
 */
export async function ingestExamples<T>(
  ctx: ServiceContext,
  uploads: ExampleUpload[],
  record: (examples: NewExample[]) => T,
): Promise<T> {
  return ctx.imageLock.run(async () => {
    const added: string[] = [];
    try {
      const examples: NewExample[] = [];
      for (const upload of uploads) {
        const { images } = await storeZipImages(upload.path, upload.fieldName, zipLimits(ctx), ctx.images, (hash) =>
          added.push(hash),
        );
        for (const image of images) examples.push({ className: upload.className, imageHash: image.hash });
      }
      return record(examples);
    } catch (error) {
      await ctx.images.remove(ctx.classifiers.unreferencedImages(added));
      if (error instanceof ZipInputError) throw badRequest(error.message);
      throw error;
    }
  });
}

function zipLimits(ctx: ServiceContext) {
  const l = ctx.config.limits;
  return {
    minImages: l.minImagesPerZip,
    maxImages: l.maxImagesPerZip,
    maxZipBytes: l.maxZipBytes,
    // A single example image can be as large as a classify image; the whole zip bounds the rest.
    maxEntryBytes: l.maxClassifyImageBytes * 5,
    maxTotalUncompressedBytes: l.maxZipBytes * 4,
  };
}

/** Removes image files that no example references any more (after a delete). */
export async function removeUnreferencedImages(ctx: ServiceContext, hashes: string[]): Promise<void> {
  await ctx.imageLock.run(() => ctx.images.remove(ctx.classifiers.unreferencedImages(hashes)));
}

/** At start: removes images a crash left behind between storing them and recording their examples. */
export async function removeOrphanImages(ctx: ServiceContext): Promise<number> {
  const orphans = ctx.classifiers.unreferencedImages(await ctx.images.listHashes());
  await removeUnreferencedImages(ctx, orphans);
  return orphans.length;
}
