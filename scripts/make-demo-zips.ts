import fs from 'node:fs';
import path from 'node:path';
import AdmZip from 'adm-zip';
import { classImages, type ClassImageKind } from '../fixtures/images';

/** Readable by all, writable by the owner only (adm-zip's writeZip would leave 0666, world-writable). */
const FILE_MODE = 0o644;

function writeFile(file: string, bytes: Buffer): void {
  fs.writeFileSync(file, bytes, { mode: FILE_MODE });
  // The mode above applies only to a new file (and through the umask): a file of an earlier run keeps its own.
  fs.chmodSync(file, FILE_MODE);
}

/**
 * Writes example zips for trying the service (README walkthrough) into `dir`: generated pictures
 * of red circles, blue squares, green stripes and noise, plus two single test images. Returns the
 * names written.
 */
export async function writeDemoFiles(dir: string): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const sets: Array<[string, ClassImageKind, number]> = [
    ['circles', 'red-circles', 30],
    ['squares', 'blue-squares', 30],
    ['noise', 'noise', 30],
    ['stripes', 'green-stripes', 30],
  ];
  const written: string[] = [];
  for (const [name, kind, count] of sets) {
    const zip = new AdmZip();
    (await classImages(kind, count, name.length * 1000)).forEach((bytes, i) => zip.addFile(`${name}/${i}.jpg`, bytes));
    writeFile(path.join(dir, `${name}.zip`), zip.toBuffer());
    written.push(`${name}.zip`);
  }
  writeFile(path.join(dir, 'circle.jpg'), (await classImages('red-circles', 1, 4242))[0]);
  writeFile(path.join(dir, 'stripes.jpg'), (await classImages('green-stripes', 1, 4343))[0]);
  return [...written, 'circle.jpg', 'stripes.jpg'];
}

if (require.main === module) {
  const dir = path.resolve(process.argv[2] ?? 'demo');
  writeDemoFiles(dir).then(
    (written) => console.log(`wrote ${written.join(', ')} to ${dir}`),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
