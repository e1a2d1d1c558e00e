import fs from 'node:fs';
import path from 'node:path';
import AdmZip from 'adm-zip';
import { classImages, type ClassImageKind } from '../fixtures/images';

/**
 * Writes example zips for trying the service (README walkthrough): generated pictures of
 * red circles, blue squares, green stripes and noise, plus two single test images.
 */
async function main() {
  const dir = path.resolve(process.argv[2] ?? 'demo');
  fs.mkdirSync(dir, { recursive: true });
  const sets: Array<[string, ClassImageKind, number]> = [
    ['circles', 'red-circles', 30],
    ['squares', 'blue-squares', 30],
    ['noise', 'noise', 30],
    ['stripes', 'green-stripes', 30],
  ];
  for (const [name, kind, count] of sets) {
    const zip = new AdmZip();
    (await classImages(kind, count, name.length * 1000)).forEach((bytes, i) => zip.addFile(`${name}/${i}.jpg`, bytes));
    zip.writeZip(path.join(dir, `${name}.zip`));
  }
  fs.writeFileSync(path.join(dir, 'circle.jpg'), (await classImages('red-circles', 1, 4242))[0]);
  fs.writeFileSync(path.join(dir, 'stripes.jpg'), (await classImages('green-stripes', 1, 4343))[0]);
  console.log(`wrote circles.zip, squares.zip, noise.zip, stripes.zip, circle.jpg and stripes.jpg to ${dir}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
