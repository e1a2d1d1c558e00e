import { existsSync } from 'node:fs';
import sharp from 'sharp';
import {
  alphaPng,
  appleCgbiPng,
  animatedGif,
  BLUE,
  CLASS_IMAGE_KINDS,
  classImages,
  cmykJpeg,
  corruptJpeg,
  drawShapeImage,
  emptyFile,
  exifRotatedJpeg,
  GREEN,
  greyscaleImage,
  hugePngHeader,
  noiseImage,
  palettePng,
  RED,
  type Rgb,
  sixteenBitPng,
  slightlyTruncatedJpeg,
  solidColorJpeg,
  solidColorPng,
  textFileBytes,
  textImage,
  translucentPng,
  twoColorImage,
  truncatedJpeg,
  WHITE,
  bmpImage,
  heicHead,
} from '../../fixtures/images';
import { srgbToLab } from '../../src/ml/color-classes';
import {
  decodeImage,
  decodeImageStretched,
  decodeImageViews,
  type DecodedImage,
  ImageDecodeError,
  isImageFile,
  MAX_INPUT_PIXELS,
  sniffImageType,
} from '../../src/ml/decode-image';

const SIZE = 32;

function pixelAt(image: DecodedImage, x: number, y: number): Rgb {
  const i = (y * image.size + x) * 3;
  return { r: image.rgb[i], g: image.rgb[i + 1], b: image.rgb[i + 2] };
}

/** Largest per-channel difference. */
function channelDistance(a: Rgb, b: Rgb): number {
  return Math.max(Math.abs(a.r - b.r), Math.abs(a.g - b.g), Math.abs(a.b - b.b));
}

function deltaE(a: Rgb, b: Rgb): number {
  const [l1, a1, b1] = srgbToLab(a.r, a.g, a.b);
  const [l2, a2, b2] = srgbToLab(b.r, b.g, b.b);
  return Math.hypot(l1 - l2, a1 - a2, b1 - b2);
}

function expectColor(actual: Rgb, expected: Rgb, tolerance = 6): void {
  const distance = channelDistance(actual, expected);
  if (distance > tolerance) {
    throw new Error(
      `pixel ${JSON.stringify(actual)} is ${distance} away from ${JSON.stringify(expected)} (tolerance ${tolerance})`,
    );
  }
}

/** Every pixel of the image has this colour. */
function expectSolid(image: DecodedImage, expected: Rgb, tolerance = 6): void {
  for (let y = 0; y < image.size; y++) {
    for (let x = 0; x < image.size; x++) expectColor(pixelAt(image, x, y), expected, tolerance);
  }
}

async function decodeError(bytes: Buffer, fileName: string): Promise<ImageDecodeError> {
  try {
    await decodeImage(bytes, fileName, SIZE);
  } catch (err) {
    if (err instanceof ImageDecodeError) return err;
    throw err;
  }
  throw new Error(`${fileName} decoded; an ImageDecodeError was expected`);
}

describe('sniffImageType', () => {
  it('recognises each accepted format by its magic bytes', async () => {
    const base = sharp({ create: { width: 8, height: 8, channels: 3, background: RED } });
    expect(sniffImageType(await base.clone().jpeg().toBuffer())).toBe('jpeg');
    expect(sniffImageType(await base.clone().png().toBuffer())).toBe('png');
    expect(sniffImageType(await base.clone().gif().toBuffer())).toBe('gif');
    expect(sniffImageType(await base.clone().tiff().toBuffer())).toBe('tiff');
    expect(sniffImageType(await base.clone().webp().toBuffer())).toBe('webp');
  });

  it('returns null for empty, text, PDF, SVG and too-short input', async () => {
    expect(sniffImageType(await emptyFile())).toBeNull();
    expect(sniffImageType(await textFileBytes())).toBeNull();
    expect(sniffImageType(Buffer.from('%PDF-1.7\n'))).toBeNull();
    expect(sniffImageType(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'))).toBeNull();
    expect(sniffImageType(Buffer.from([0xff, 0xd8]))).toBeNull();
  });
});

describe('decodeImage: images it must decode', () => {
  it('decodes a solid PNG and JPEG to size×size×3 sRGB of the right colour', async () => {
    const png = await decodeImage(await solidColorPng(RED, 64, 48), 'red.png', SIZE);
    expect(png).toMatchObject({ size: SIZE, width: 64, height: 48 });
    expect(png.rgb.length).toBe(SIZE * SIZE * 3);
    expectSolid(png, RED, 0);

    const jpeg = await decodeImage(await solidColorJpeg(GREEN, 40, 90), 'green.jpg', SIZE);
    expect(jpeg).toMatchObject({ size: SIZE, width: 40, height: 90 });
    expectSolid(jpeg, GREEN);
  });

  it('decodes TIFF and WebP', async () => {
    const base = sharp({ create: { width: 20, height: 20, channels: 3, background: BLUE } });
    expectSolid(await decodeImage(await base.clone().tiff().toBuffer(), 'blue.tif', SIZE), BLUE);
    expectSolid(await decodeImage(await base.clone().webp({ lossless: true }).toBuffer(), 'blue.webp', SIZE), BLUE);
  });

  it('scales to cover the square and crops the centre', async () => {
    // 300×100: green | red | blue bands of 100 px; the centre square is the red band.
    const bands = await sharp({ create: { width: 300, height: 100, channels: 3, background: GREEN } })
      .composite([
        { input: { create: { width: 100, height: 100, channels: 3, background: RED } }, left: 100, top: 0 },
        { input: { create: { width: 100, height: 100, channels: 3, background: BLUE } }, left: 200, top: 0 },
      ])
      .png()
      .toBuffer();
    const image = await decodeImage(bands, 'bands.png', SIZE);
    expect(image).toMatchObject({ width: 300, height: 100 });
    expectColor(pixelAt(image, 1, 1), RED);
    expectColor(pixelAt(image, SIZE - 2, SIZE - 2), RED);
  });

  it('applies EXIF orientation 6: stored 200×100 left red / right blue becomes 100×200 red on top, blue below', async () => {
    const image = await decodeImage(await exifRotatedJpeg(RED, BLUE), 'rotated.jpg', SIZE);
    expect(image.width).toBe(100);
    expect(image.height).toBe(200);
    for (const x of [0, SIZE / 2, SIZE - 1]) {
      expectColor(pixelAt(image, x, 2), RED, 10);
      expectColor(pixelAt(image, x, SIZE - 3), BLUE, 10);
    }
  });

  it('converts CMYK JPEGs, with and without an embedded profile, to the right sRGB colour', async () => {
    const original: Rgb = { r: 100, g: 150, b: 200 };
    for (const withProfile of [false, true]) {
      const image = await decodeImage(await cmykJpeg(original, { withProfile }), 'print.jpg', SIZE);
      const centre = pixelAt(image, SIZE / 2, SIZE / 2);
      // The CMYK round trip is not exact (gamut, rendering intent); misread CMYK would be ~100 ΔE away.
      expect(deltaE(centre, original)).toBeLessThan(8);
      expectSolid(image, centre, 2);
    }
  });

  it('converts a 16-bit PNG to 8-bit sRGB', async () => {
    expectSolid(await decodeImage(await sixteenBitPng(RED), 'deep.png', SIZE), RED, 1);
  });

  it('expands a palette PNG', async () => {
    const image = await decodeImage(await palettePng([RED, GREEN, BLUE, WHITE]), 'indexed.png', SIZE);
    const q = SIZE / 4;
    expectColor(pixelAt(image, q, q), RED, 2);
    expectColor(pixelAt(image, 3 * q, q), GREEN, 2);
    expectColor(pixelAt(image, 3 * q, 3 * q), BLUE, 2);
    expectColor(pixelAt(image, q, 3 * q), WHITE, 2);
  });

  it('takes the first frame of an animated GIF', async () => {
    const gif = await animatedGif(RED, BLUE);
    expect((await sharp(gif).metadata()).pages).toBe(2);
    const image = await decodeImage(gif, 'anim.gif', SIZE);
    expect(image).toMatchObject({ width: 64, height: 64 });
    expectSolid(image, RED, 2);
  });

  it('turns greyscale PNG and JPEG into three equal channels', async () => {
    const level: Rgb = { r: 100, g: 100, b: 100 };
    expectSolid(await decodeImage(await greyscaleImage(100, 64, 'png'), 'grey.png', SIZE), level, 0);
    expectSolid(await decodeImage(await greyscaleImage(100, 64, 'jpeg'), 'grey.jpg', SIZE), level, 2);
  });

  it('flattens transparency on white', async () => {
    const image = await decodeImage(await alphaPng(RED), 'logo.png', SIZE);
    expectColor(pixelAt(image, 0, 0), WHITE, 0);
    expectColor(pixelAt(image, SIZE - 1, SIZE - 1), WHITE, 0);
    expectColor(pixelAt(image, SIZE / 2, SIZE / 2), RED, 0);
  });

  it('decodes a JPEG missing only its last bytes', async () => {
    const image = await decodeImage(await slightlyTruncatedJpeg(), 'cut-short.jpg', SIZE);
    expect(image).toMatchObject({ width: 256, height: 256 });
    // The red circle of the source picture is near the centre.
    expect(channelDistance(pixelAt(image, SIZE / 2, SIZE / 2), RED)).toBeLessThan(40);
  });

  it('decodes every generated shape, noise and class image', async () => {
    const images = [
      await drawShapeImage({ shape: 'triangle', fg: RED, bg: WHITE, size: 100, seed: 1, format: 'jpeg' }),
      await noiseImage({ size: 50, seed: 2 }),
      ...(await Promise.all(CLASS_IMAGE_KINDS.map(async (kind) => (await classImages(kind, 1, 3))[0]))),
    ];
    for (const bytes of images) {
      const image = await decodeImage(bytes, 'generated.jpg', SIZE);
      expect(image.rgb.length).toBe(SIZE * SIZE * 3);
    }
  });
});

describe('decodeImageViews: one decode, one square per network', () => {
  /** Mean absolute difference of two renderings' bytes. */
  function meanDifference(a: DecodedImage, b: DecodedImage): number {
    expect(a.rgb.length).toBe(b.rgb.length);
    let sum = 0;
    for (let i = 0; i < a.rgb.length; i++) sum += Math.abs(a.rgb[i] - b.rgb[i]);
    return sum / a.rgb.length;
  }

  it('renders a cover square and a stretched square like the single decodes do', async () => {
    // A wide picture: the cover view crops its sides, the stretched view keeps them.
    const bytes = await drawShapeImage({ shape: 'circle', fg: RED, bg: WHITE, size: 300, seed: 4, format: 'jpeg' });
    const wide = await sharp(bytes).resize(600, 300, { fit: 'fill' }).jpeg().toBuffer();
    for (const input of [bytes, wide, await slightlyTruncatedJpeg(), await greyscaleImage(90, 90)]) {
      const [cover, stretched] = await decodeImageViews(input, 'picture.jpg', [
        { size: 112, fit: 'cover' },
        { size: 224, fit: 'fill' },
      ]);
      expect(cover.size).toBe(112);
      expect(stretched.size).toBe(224);
      expect({ width: cover.width, height: cover.height }).toEqual({
        width: stretched.width,
        height: stretched.height,
      });
      // Resampling twice (to the larger view, then down) moves edge pixels a little, nothing more.
      expect(meanDifference(cover, await decodeImage(input, 'picture.jpg', 112))).toBeLessThan(2);
      expect(meanDifference(stretched, await decodeImageStretched(input, 'picture.jpg', 224))).toBeLessThan(2);
    }
  });

  it('refuses what decodeImage refuses, with the same reason', async () => {
    for (const bytes of [await textFileBytes(), await corruptJpeg(), await truncatedJpeg()]) {
      const views = decodeImageViews(bytes, 'bad.jpg', [
        { size: 24, fit: 'cover' },
        { size: 56, fit: 'fill' },
      ]);
      await expect(views).rejects.toBeInstanceOf(ImageDecodeError);
      await expect(views).rejects.toThrow((await decodeError(bytes, 'bad.jpg')).message);
    }
    await expect(decodeImageViews(await solidColorPng(RED), 'red.png', [])).rejects.toThrow(RangeError);
  });
});

describe('decodeImage: inputs it must refuse with a reason', () => {
  it('refuses an empty file', async () => {
    const err = await decodeError(await emptyFile(), 'empty.jpg');
    expect(err.fileName).toBe('empty.jpg');
    expect(err.reason).toMatch(/empty \(0 bytes\)/);
    expect(err.message).toBe(`empty.jpg: ${err.reason}`);
  });

  it('refuses a text file named .jpg', async () => {
    const err = await decodeError(await textFileBytes(), 'notes.jpg');
    expect(err.message).toMatch(/^notes\.jpg: the file is not a JPEG, PNG, GIF, TIFF or WebP image: it contains text/);
  });

  it('names other common non-images', async () => {
    expect((await decodeError(Buffer.from('%PDF-1.4\n%âãÏÓ\n'), 'scan.jpg')).reason).toMatch(/PDF document/);
    expect((await decodeError(Buffer.from('<?xml version="1.0"?><svg></svg>'), 'logo.png')).reason).toMatch(
      /SVG drawing/,
    );
    expect((await decodeError(Buffer.from([0x42, 0x4d, 0x36, 0, 0, 0, 0, 0, 0xff, 0x01]), 'old.bmp')).reason).toMatch(
      /BMP image/,
    );
  });

  it('recognises BMP, HEIC, AVIF and JPEG 2000 as pictures it cannot decode, and says which', async () => {
    const ftyp = (brand: string) =>
      Buffer.concat([
        Buffer.from([0, 0, 0, 0x18]),
        Buffer.from(`ftyp${brand}\0\0\0\0mif1${brand}`, 'latin1'),
        Buffer.alloc(64),
      ]);
    const jp2 = Buffer.concat([Buffer.from('0000000c6a5020200d0a870a', 'hex'), Buffer.alloc(64)]);
    const cases: Array<[Buffer, string]> = [
      [bmpImage(), 'BMP'],
      [heicHead(), 'HEIC'],
      [ftyp('avif'), 'AVIF'],
      [jp2, 'JPEG 2000'],
    ];
    for (const [bytes, format] of cases) {
      expect(isImageFile(bytes)).toBe(true);
      expect((await decodeError(bytes, 'x')).reason).toBe(
        `the file is not a JPEG, PNG, GIF, TIFF or WebP image: it is a ${format} image, which is not supported; upload the picture as JPEG or PNG`,
      );
    }
    // A video is not a picture: in a zip it is skipped, not reported.
    expect(isImageFile(ftyp('isom'))).toBe(false);
    expect(isImageFile(await textFileBytes())).toBe(false);
    expect(isImageFile(await solidColorPng(RED))).toBe(true);
  });

  it('refuses a PNG declaring 60,000×60,000 from its header, before decoding', async () => {
    const err = await decodeError(await hugePngHeader(), 'bomb.png');
    // Only the header check knows the declared dimensions.
    expect(err.reason).toMatch(/60000×60000 pixels \(3600\.0 megapixels\), more than the 50-megapixel limit/);
  });

  it('refuses a header just over MAX_INPUT_PIXELS', async () => {
    const width = 10_000;
    const height = Math.floor(MAX_INPUT_PIXELS / width) + 1;
    expect((await decodeError(await hugePngHeader(width, height), 'big.png')).reason).toMatch(/megapixel limit/);
  });

  it('refuses a JPEG missing half its data, saying how much is missing', async () => {
    const err = await decodeError(await truncatedJpeg(), 'half.jpg');
    expect(err.reason).toMatch(/^the JPEG file is incomplete: the bottom \d+% of the picture is missing/);
  });

  it('gives a JPEG cut short the same reason when many decode at once as when it decodes alone', async () => {
    // sharp may then report only "Warning treated as error" instead of libjpeg's "premature end of JPEG".
    const cut = (await classImages('red-circles', 12, 5)).map((b) => b.subarray(0, Math.floor(b.length / 2)));
    const together = await Promise.all(cut.map((bytes, i) => decodeError(bytes, `${i}.jpg`)));
    const alone: string[] = [];
    for (const [i, bytes] of cut.entries()) alone.push((await decodeError(bytes, `${i}.jpg`)).reason);
    expect(together.map((e) => e.reason)).toEqual(alone);
    for (const reason of alone)
      expect(reason).toMatch(/^the JPEG file is incomplete: the bottom \d+% of the picture is missing/);
  });

  it('refuses a JPEG with corrupt compressed data', async () => {
    const err = await decodeError(await corruptJpeg(), 'damaged.jpg');
    expect(err.reason).toMatch(/^the JPEG image data is corrupt/);
  });

  it('refuses truncated PNG and GIF files as incomplete', async () => {
    const png = await noiseImage({ size: 64, seed: 5 });
    const gif = await sharp(png).gif().toBuffer();
    for (const [bytes, name] of [
      [png.subarray(0, png.length / 2), 'half.png'],
      [gif.subarray(0, gif.length / 2), 'half.gif'],
      [png.subarray(0, 20), 'header-only.png'],
    ] as const) {
      expect((await decodeError(bytes, name)).reason).toMatch(/^the file is incomplete/);
    }
  });

  it('settles every bad input at once without crashing, each with its own file name', async () => {
    const bad: [string, Buffer][] = [
      ['a.jpg', await emptyFile()],
      ['b.jpg', await textFileBytes()],
      ['c.png', await hugePngHeader()],
      ['d.jpg', await truncatedJpeg()],
      ['e.jpg', await corruptJpeg()],
    ];
    const results = await Promise.allSettled(bad.map(([name, bytes]) => decodeImage(bytes, name, SIZE)));
    results.forEach((result, i) => {
      expect(result.status).toBe('rejected');
      const reason = (result as PromiseRejectedResult).reason;
      expect(reason).toBeInstanceOf(ImageDecodeError);
      expect((reason as ImageDecodeError).fileName).toBe(bad[i][0]);
    });
  });

  it('rejects a nonsensical output size as a programming error', async () => {
    const png = await solidColorPng(RED);
    await expect(decodeImage(png, 'red.png', 0)).rejects.toThrow(RangeError);
    await expect(decodeImage(png, 'red.png', 2.5)).rejects.toThrow(RangeError);
  });
});

describe('image fixtures', () => {
  it('give the same bytes for the same seed and different ones for another', async () => {
    const options = { shape: 'stripes', fg: GREEN, bg: WHITE, size: 64, seed: 9 } as const;
    expect((await drawShapeImage(options)).equals(await drawShapeImage(options))).toBe(true);
    expect((await drawShapeImage(options)).equals(await drawShapeImage({ ...options, seed: 10 }))).toBe(false);

    const first = await classImages('blue-squares', 4, 1);
    const again = await classImages('blue-squares', 4, 1);
    expect(first.map((b) => b.toString('base64'))).toEqual(again.map((b) => b.toString('base64')));
    expect(new Set(first.map((b) => b.toString('base64'))).size).toBe(4);
    expect(first.every((b) => sniffImageType(b) === 'jpeg')).toBe(true);
  });

  // sharp renders SVG text with the system's fonts (Debian: fonts-dejavu-core).
  const fontsInstalled = existsSync('/usr/share/fonts/truetype/dejavu');
  (fontsInstalled ? it : it.skip)('draw text through SVG (needs /usr/share/fonts/truetype/dejavu)', async () => {
    const image = await decodeImage(await textImage({ text: 'Hello', size: 128 }), 'text.png', 128);
    expectColor(pixelAt(image, 0, 0), WHITE, 0);
    let dark = 0;
    for (let i = 0; i < image.rgb.length; i += 3) if (image.rgb[i] < 100) dark++;
    expect(dark).toBeGreaterThan(50);
  });

  it('write the hand-made PNG header exactly as libpng writes it, CRC included', async () => {
    // Signature (8) + IHDR chunk: length (4), type (4), data (13), CRC (4).
    const ihdrOf = (png: Buffer) => png.subarray(8, 8 + 25).toString('hex');
    const written = await sharp({ create: { width: 3, height: 2, channels: 3, background: RED } })
      .png()
      .toBuffer();
    expect(ihdrOf(await hugePngHeader(3, 2))).toBe(ihdrOf(written));
    const metadata = await sharp(await hugePngHeader(), { limitInputPixels: false }).metadata();
    expect(metadata).toMatchObject({ format: 'png', width: 60_000, height: 60_000 });
  });
});

describe('PNGs optimised by Xcode for iOS (CgBI)', () => {
  /** Every pixel of both within `tolerance` per channel. */
  const expectSamePixels = (actual: DecodedImage, expected: DecodedImage, tolerance: number) => {
    expect({ width: actual.width, height: actual.height }).toEqual({ width: expected.width, height: expected.height });
    let worst = 0;
    for (let i = 0; i < expected.rgb.length; i++) worst = Math.max(worst, Math.abs(actual.rgb[i] - expected.rgb[i]));
    expect(worst).toBeLessThanOrEqual(tolerance);
  };

  it('decodes one with alpha as its standard PNG decodes: colours in RGB order, premultiplication undone', async () => {
    const png = await translucentPng(RED, BLUE);
    const cgbi = await appleCgbiPng(png);
    expect(cgbi.toString('latin1', 12, 16)).toBe('CgBI');
    const decoded = await decodeImage(cgbi, 'AppIcon60x60@2x.png', SIZE);
    expectSamePixels(decoded, await decodeImage(png, 'standard.png', SIZE), 2);
    expectColor(pixelAt(decoded, 0, SIZE - 1), RED, 2);
    expectColor(pixelAt(decoded, 0, 0), WHITE, 0);
  });

  it('decodes one without alpha (BGR)', async () => {
    const png = await twoColorImage({ left: GREEN, right: RED, width: 48 });
    expectSamePixels(
      await decodeImage(await appleCgbiPng(png, { alpha: false }), 'splash.png', SIZE),
      await decodeImage(png, 'standard.png', SIZE),
      0,
    );
  });

  it('refuses a cut-short or unusual one naming what it is and how to export a standard PNG', async () => {
    const cgbi = await appleCgbiPng(await translucentPng(RED, BLUE));
    expect((await decodeError(cgbi.subarray(0, cgbi.length - 30), 'cut.png')).reason).toBe(
      'the file is incomplete: it ends before the image data does (was the upload or download cut short?); upload the complete file',
    );
    const sixteenBit = Buffer.from(cgbi);
    sixteenBit[12 + 12 + 8 + 8] = 16; // IHDR's bit depth (CRCs are not what is checked)
    expect((await decodeError(sixteenBit, 'deep.png')).reason).toBe(
      'it is a PNG optimised by Xcode for iOS (CgBI) with 16-bit samples of colour type 6, which is not read here; export it as a standard PNG ' +
        '(xcrun -sdk iphoneos pngcrush -revert-iphone-optimizations in.png out.png, or set "Compress PNG Files" to No in Xcode) and upload that',
    );
  });
});
