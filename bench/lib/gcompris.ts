import fs from 'node:fs';
import path from 'node:path';
import { unpackDebianPackage } from './debian-package';
import { readQtResources } from './qt-resources';

/** One photo of GCompris's activities, with the licence its activity's README states for it. */
export interface GcomprisPhoto {
  /** Path inside the resource bundles, e.g. "categorization/resource/images/tools/hammer1.webp". */
  path: string;
  licence: string;
  copyright?: string;
  origin?: string;
  read(): Buffer;
}

/**
 * The photos of Debian's gcompris-qt-data (GPL-3+ code; photos under their own licences, listed per file
 * in README files beside them: "Copyright: …", "Source: …", "License: …", "Files: …"). Photos without a
 * README entry are left out. Unpacked into a temp folder, never installed or copied into the project.
 */
export function gcomprisPhotos(): GcomprisPhoto[] {
  const rccDir = path.join(unpackDebianPackage('gcompris-qt-data'), 'usr', 'share', 'gcompris-qt', 'rcc');
  const photos: GcomprisPhoto[] = [];
  for (const bundle of fs
    .readdirSync(rccDir)
    .filter((file) => file.endsWith('.rcc'))
    .sort()) {
    const files = readQtResources(path.join(rccDir, bundle));
    const byPath = new Map(files.map((file) => [file.path, file]));
    for (const readme of files.filter((file) => file.path.endsWith('/README'))) {
      const folder = path.posix.dirname(readme.path);
      for (const block of readme
        .read()
        .toString('utf8')
        .split(/\n\s*\n/)) {
        const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(block)?.[1]?.trim();
        const licence = field('License');
        const listed = /Files:\s*([\s\S]*)/.exec(block)?.[1]?.trim().split(/\s+/) ?? [];
        if (!licence) continue;
        for (const name of listed.filter((file) => /\.(webp|jpe?g|png)$/i.test(file))) {
          const file = byPath.get(`${folder}/${name}`);
          if (!file) continue;
          photos.push({
            path: file.path.replace(/^gcompris\/src\/activities\//, ''),
            licence,
            copyright: field('Copyright'),
            origin: field('Source'),
            read: file.read,
          });
        }
      }
    }
  }
  return photos;
}
