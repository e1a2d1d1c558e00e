import fs from 'node:fs';
import path from 'node:path';

/** Debian darknet's sample photos (dog, eagle, giraffe, horses, kite, person, scream): `.ci/run` installs them. */
export const PHOTOS = '/usr/share/darknet/data';

/** Every sample photo the package ships, by name without `.jpg`. */
export const DARKNET_PHOTO_NAMES = ['dog', 'eagle', 'giraffe', 'horses', 'kite', 'person', 'scream'] as const;
export type DarknetPhotoName = (typeof DARKNET_PHOTO_NAMES)[number];

/** The file of one sample photo, e.g. `/usr/share/darknet/data/dog.jpg`. */
export function darknetPhotoPath(name: DarknetPhotoName): string {
  return path.join(PHOTOS, `${name}.jpg`);
}

/** One sample photo as an upload: `{ name: 'dog.jpg', bytes }`. Throws ENOENT when the package is missing. */
export function darknetPhoto(name: DarknetPhotoName): { name: string; bytes: Buffer } {
  return { name: `${name}.jpg`, bytes: fs.readFileSync(darknetPhotoPath(name)) };
}

/**
 * Whether the photos a test file needs (`needs`, by default dog.jpg) are installed; warns once per test
 * file when they are not, naming what is `skipped` (the tests then skip).
 */
export function darknetPhotosInstalled(
  needs: readonly DarknetPhotoName[] = ['dog'],
  skipped = 'the tests that need them are skipped',
): boolean {
  const installed = needs.every((name) => fs.existsSync(darknetPhotoPath(name)));
  if (!installed)
    console.warn(
      `SKIPPED: ${PHOTOS}/*.jpg are missing (${skipped}); install the darknet samples with \`apt-get install darknet\` (CI must)`,
    );
  return installed;
}
