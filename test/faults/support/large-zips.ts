import crypto from 'node:crypto';
import AdmZip from 'adm-zip';
import sharp from 'sharp';

/**
 * A zip of at least `minImages` colour-noise JPEGs holding at least `totalBytes`: noise does not
 * compress, so the zip, its temp upload and its stored images are each about that size.
 */
export async function noiseZipOfSize(totalBytes: number, minImages = 10): Promise<Buffer> {
  const zip = new AdmZip();
  // A q92 JPEG of random pixels takes about 1.6 bytes per pixel.
  const side = Math.max(64, Math.ceil(Math.sqrt(totalBytes / minImages / 1.6)));
  let total = 0;
  for (let i = 0; i < minImages || total < totalBytes; i++) {
    const pixels = crypto.randomBytes(side * side * 3);
    const bytes = await sharp(pixels, { raw: { width: side, height: side, channels: 3 } })
      .jpeg({ quality: 92 })
      .toBuffer();
    zip.addFile(`noise/${i}.jpg`, bytes);
    total += bytes.length;
  }
  return zip.toBuffer();
}
