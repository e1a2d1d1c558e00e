import fs from 'node:fs';
import path from 'node:path';

/** Debian darknet's sample photos (dog, eagle, giraffe, horses, kite, person, scream): `.ci/run` installs them. */
export const PHOTOS = '/usr/share/darknet/data';

/** Whether the photos are installed; warns once per test file when they are not (the tests then skip). */
export function darknetPhotosInstalled(): boolean {
  const installed = fs.existsSync(path.join(PHOTOS, 'dog.jpg'));
  if (!installed)
    console.warn(
      `SKIPPED: ${PHOTOS}/*.jpg are missing; install the darknet samples with \`apt-get install darknet\` (CI must)`,
    );
  return installed;
}
