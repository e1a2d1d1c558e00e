import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { COCO_CLASSES } from '../../src/ml/detector/coco-labels';
import { DARKNET_DIR } from './datasets';
import { unpackDebianPackage } from './debian-package';
import { gcomprisPhotos } from './gcompris';

/**
 * A real photo whose main object is one of the 80 COCO classes the detector names, labelled by hand
 * from its file name (Debian packages; nothing is committed or shipped). `classes` lists every COCO
 * class the photo is known to show, the main object first; `source` names the package and path.
 */
export interface CocoPhoto {
  name: string;
  source: string;
  classes: string[];
  read(): Promise<Buffer>;
}

/**
 * Which photos fit the calibration and which report on it: whole packages (or whole GCompris
 * activities) go to one side, so no photo, and no photographer's series, is on both.
 * - fit: tuxpaint-stamps-default's photo stamps (cut-out objects, flattened on white) and GCompris's
 *   `erase` activity (animal photos).
 * - report: GCompris's `explore_*` and `categorization` photos, the darknet samples with one main
 *   object, and the classic sample photos of scikit-image and OpenCV (every photo of the three packages
 *   with a main object of a COCO class, except near-duplicates: motorcycle_right.png, basketball2.png).
 */
export type CocoSplit = 'fit' | 'report';

const TUXPAINT_STAMPS = 'usr/share/tuxpaint/stamps';

/** Tux Paint photo stamps (PNG; its drawings are SVG or under cartoon/), by COCO class. */
const TUXPAINT: Record<string, string[]> = {
  bird: ['animals/birds/*'],
  dog: ['animals/mammals/dogs/dog.png', 'animals/mammals/dogs/dingo.png'],
  horse: ['animals/mammals/equines/horse.png'],
  zebra: ['animals/mammals/equines/zebra.png'],
  giraffe: ['animals/mammals/giraffe.png'],
  elephant: ['animals/mammals/elephant.png'],
  bear: ['animals/mammals/bears/bear.png', 'animals/mammals/bears/european-bear.png'],
  'teddy bear': ['animals/mammals/bears/toys/edward_bear.png'],
  cow: ['animals/mammals/bovines/cow.png', 'animals/mammals/bovines/cow_white.png', 'animals/mammals/bovines/bull.png'],
  sheep: [
    'animals/mammals/bovines/sheep.png',
    'animals/mammals/bovines/sheep_lamb.png',
    'animals/mammals/bovines/ram.png',
  ],
  apple: [
    'food/fruit/apple_green.png',
    'food/fruit/apple_granny_smith.png',
    'food/fruit/apple_red.png',
    'food/fruit/apple_fuji.png',
    'food/fruit/apple_sierra_beauty.png',
  ],
  orange: ['food/fruit/orange.png', 'food/fruit/orange_seville.png', 'food/fruit/mandarine.png'],
  banana: ['food/fruit/banana.png'],
  broccoli: ['food/vegetables/broccoli.png'],
  carrot: ['food/vegetables/carrot.png'],
  pizza: ['food/pizza.png'],
  cup: ['household/dishes/mug.png'],
  toilet: ['household/toilet.png'],
  scissors: ['household/arttools/scissors_small_closed.png', 'household/arttools/scissors_small_open.png'],
  'stop sign': ['town/roadsigns/stop.png'],
  'tennis racket': ['sports/tennis_racket.png'],
  'sports ball': ['sports/basketball.png', 'sports/soccer.png', 'sports/tennis_ball.png'],
  car: ['vehicles/auto/beetle.png', 'vehicles/auto/sedan.png', 'vehicles/auto/sportscar2.png'],
  truck: ['vehicles/auto/truck.png', 'vehicles/garbagetruck.png', 'vehicles/emergency/firetruck.png'],
  bus: ['vehicles/masstransit/green_korean_bus.png'],
  airplane: ['vehicles/flight/planes/747.png'],
  boat: ['vehicles/ship/chineseJunk.png'],
};

/** GCompris photos (paths inside its resource bundles, without gcompris/src/activities/) by COCO class. */
const GCOMPRIS: Record<CocoSplit, Record<string, string[]>> = {
  fit: {
    giraffe: ['erase/resource/giraffe.webp'],
    horse: ['erase/resource/horse.webp'],
    cat: ['erase/resource/kitten.webp'],
    cow: ['erase/resource/calf.webp'],
    bird: [
      'erase/resource/gosling.webp',
      'erase/resource/heron.webp',
      'erase/resource/kingfisher.webp',
      'erase/resource/northern_harrier.webp',
      'erase/resource/penguin.webp',
      'erase/resource/spoonbills.webp',
      'erase/resource/swans.webp',
      'erase/resource/toucan.webp',
    ],
  },
  report: {
    cat: ['explore_farm_animals/resource/animals/cat.webp'],
    bird: [
      'explore_farm_animals/resource/animals/chicken.webp',
      'explore_farm_animals/resource/animals/duck.webp',
      'explore_farm_animals/resource/animals/owl.webp',
      'explore_world_animals/resource/animals/scarlet_macaw.webp',
    ],
    cow: ['explore_farm_animals/resource/animals/cow.webp'],
    dog: ['explore_farm_animals/resource/animals/dog.webp'],
    horse: ['explore_farm_animals/resource/animals/horse.webp'],
    sheep: ['explore_farm_animals/resource/animals/sheep.webp'],
    giraffe: ['explore_world_animals/resource/animals/giraffe.webp'],
    bear: ['explore_world_animals/resource/animals/polar_bear.webp'],
    chair: ['categorization/resource/images/others/chair.webp'],
    cup: ['categorization/resource/images/others/cup.webp'],
    knife: ['categorization/resource/images/others/knife.webp'],
    spoon: ['categorization/resource/images/others/spoons.webp'],
    'sports ball': [
      'categorization/resource/images/others/volleyball.webp',
      'categorization/resource/images/others/baseball.webp',
    ],
    scissors: [
      'categorization/resource/images/tools/scissors1.webp',
      'categorization/resource/images/tools/scissors2.webp',
      'categorization/resource/images/tools/scissors3.webp',
      'categorization/resource/images/tools/scissors4.webp',
    ],
  },
};

/** Report photos outside GCompris: package, folder, file → the COCO classes it shows, main object first. */
const SAMPLE_PHOTOS: Array<{ pkg: string; dir: string; file: string; classes: string[] }> = [
  { pkg: 'darknet', dir: DARKNET_DIR, file: 'dog.jpg', classes: ['dog', 'bicycle', 'car'] },
  { pkg: 'darknet', dir: DARKNET_DIR, file: 'person.jpg', classes: ['person', 'horse', 'dog'] },
  { pkg: 'darknet', dir: DARKNET_DIR, file: 'eagle.jpg', classes: ['bird'] },
  { pkg: 'darknet', dir: DARKNET_DIR, file: 'horses.jpg', classes: ['horse'] },
  { pkg: 'darknet', dir: DARKNET_DIR, file: 'giraffe.jpg', classes: ['giraffe', 'zebra'] },
  ...[
    ['astronaut.png', 'person'],
    ['camera.png', 'person'],
    ['chelsea.png', 'cat'],
    ['coffee.png', 'cup'],
    ['motorcycle_left.png', 'motorcycle'],
  ].map(([file, cls]) => ({
    pkg: 'python3-skimage',
    dir: 'usr/lib/python3/dist-packages/skimage/data',
    file,
    classes: [cls],
  })),
  ...[
    ['apple.jpg', ['apple']],
    ['orange.jpg', ['orange']],
    ['chicky_512.png', ['dog']],
    ['basketball1.png', ['person', 'sports ball']],
    ['messi5.jpg', ['person', 'sports ball']],
  ].map(([file, classes]) => ({
    pkg: 'opencv-doc',
    dir: 'usr/share/doc/opencv-doc/examples/data',
    file: file as string,
    classes: classes as string[],
  })),
];

/** GCompris activities the report split draws from: nothing else of them fits anything. */
export const REPORT_GCOMPRIS_ACTIVITIES = ['explore_farm_animals/', 'explore_world_animals/', 'categorization/'];

const COCO_NAMES = new Set(COCO_CLASSES.map((c) => c.name));

function checked(photo: CocoPhoto): CocoPhoto {
  const unknown = photo.classes.filter((name) => !COCO_NAMES.has(name));
  if (unknown.length > 0) throw new Error(`${photo.source}: ${unknown.join(', ')} is not a COCO class`);
  return photo;
}

/** A cut-out stamp's pixels on white, as a PNG the service decodes like any upload. */
function flattened(file: string): () => Promise<Buffer> {
  return () => sharp(file).flatten({ background: '#ffffff' }).png().toBuffer();
}

/**
 * The labelled photos of one split, sorted by source (Debian packages are downloaded and unpacked
 * into a temp folder on first use: apt-get download, then dpkg-deb -x).
 * @throws Error when a listed photo is missing from its package (a package update renamed it)
 */
export function cocoPhotos(split: CocoSplit): CocoPhoto[] {
  const photos: CocoPhoto[] = [];
  const gcompris = new Map(gcomprisPhotos().map((photo) => [photo.path, photo]));
  for (const [cls, paths] of Object.entries(GCOMPRIS[split])) {
    for (const photoPath of paths) {
      const photo = gcompris.get(photoPath);
      if (!photo) throw new Error(`gcompris-qt-data has no photo ${photoPath}`);
      const bytes = photo.read();
      photos.push({
        name: photoPath,
        source: `gcompris-qt-data:${photoPath}`,
        classes: [cls],
        read: async () => bytes,
      });
    }
  }
  if (split === 'fit') {
    const root = path.join(unpackDebianPackage('tuxpaint-stamps-default'), TUXPAINT_STAMPS);
    for (const [cls, patterns] of Object.entries(TUXPAINT)) {
      for (const pattern of patterns) {
        const files = pattern.endsWith('/*')
          ? fs
              .readdirSync(path.join(root, pattern.slice(0, -2)))
              .filter((file) => file.endsWith('.png'))
              .sort()
              .map((file) => path.posix.join(pattern.slice(0, -2), file))
          : [pattern];
        for (const file of files) {
          const full = path.join(root, file);
          if (!fs.existsSync(full)) throw new Error(`tuxpaint-stamps-default has no stamp ${file}`);
          photos.push({ name: file, source: `tuxpaint-stamps-default:${file}`, classes: [cls], read: flattened(full) });
        }
      }
    }
  } else {
    for (const { pkg, dir, file, classes } of SAMPLE_PHOTOS) {
      const full = path.isAbsolute(dir) ? path.join(dir, file) : path.join(unpackDebianPackage(pkg), dir, file);
      if (!fs.existsSync(full)) throw new Error(`${pkg} has no photo ${path.join(dir, file)}`);
      photos.push({ name: file, source: `${pkg}:${file}`, classes, read: () => fs.promises.readFile(full) });
    }
  }
  return photos.map(checked).sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0));
}
