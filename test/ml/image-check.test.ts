import fc from 'fast-check';
import sharp from 'sharp';
import {
  alphaPng,
  animatedGif,
  appleCgbiPng,
  bmpImage,
  BLUE,
  classImages,
  cmykJpeg,
  corruptJpeg,
  emptyFile,
  exifRotatedJpeg,
  greyscaleImage,
  heicHead,
  hugePngHeader,
  palettePng,
  RED,
  sixteenBitPng,
  slightlyTruncatedJpeg,
  solidColorJpeg,
  solidColorPng,
  textFileBytes,
  translucentPng,
  truncatedJpeg,
  undecodablePng,
  WHITE,
  GREEN,
} from '../../fixtures/images';
import { decodeImageViews, ImageDecodeError, type SquareView } from '../../src/ml/decode-image';
import {
  checkUploadImage,
  jpegStructure,
  jpegStructureIntact,
  passesQuickCheck,
  pngStructure,
} from '../../src/ml/image-check';

/**
 * Issue 22: an upload answers after checks that decode no pixels. The checks must pass every sound
 * image (or a create would decode it after all) and, whatever they flag, the upload must refuse with
 * exactly the full decoder's verdict and reason.
 */
const VIEWS: SquareView[] = [{ size: 448, fit: 'fill' }];

async function fullDecodeReason(bytes: Buffer): Promise<string | undefined> {
  try {
    await decodeImageViews(bytes, 'x.jpg', VIEWS);
    return undefined;
  } catch (error) {
    if (error instanceof ImageDecodeError) return error.reason;
    throw error;
  }
}

describe('upload image checks (no pixel decoding)', () => {
  let sound: Array<[string, Buffer]>;
  let jpegs: Buffer[];
  let pngs: Buffer[];

  beforeAll(async () => {
    jpegs = await classImages('red-circles', 4, 3);
    const progressive = await sharp(jpegs[0]).jpeg({ progressive: true }).toBuffer();
    const restartMarkers = await sharp(jpegs[1]).resize(200, 120).jpeg({ quality: 90 }).toBuffer();
    pngs = [
      await solidColorPng(RED),
      await sharp(jpegs[2]).png({ progressive: true }).toBuffer(), // Adam7-interlaced
      await palettePng([RED, BLUE, GREEN, WHITE]),
    ];
    sound = [
      ['baseline JPEG', jpegs[0]],
      ['progressive JPEG', progressive],
      ['resized JPEG', restartMarkers],
      ['solid JPEG', await solidColorJpeg(BLUE)],
      ['CMYK JPEG with profile', await cmykJpeg(RED, { withProfile: true })],
      ['EXIF-rotated JPEG', await exifRotatedJpeg()],
      ['greyscale JPEG', await greyscaleImage(90, 64, 'jpeg')],
      ['PNG', pngs[0]],
      ['interlaced PNG', pngs[1]],
      ['palette PNG', pngs[2]],
      ['16-bit PNG', await sixteenBitPng(GREEN)],
      ['alpha PNG', await alphaPng(RED)],
      ['translucent PNG', await translucentPng(RED, BLUE)],
      ['Apple CgBI PNG', await appleCgbiPng(await solidColorPng(RED, 32))],
      ['Apple CgBI PNG without alpha', await appleCgbiPng(await solidColorPng(BLUE, 32), { alpha: false })],
      ['animated GIF', await animatedGif(RED, BLUE)],
      ['WebP', await sharp(jpegs[3]).webp().toBuffer()],
      ['TIFF', await sharp(jpegs[3]).tiff().toBuffer()],
    ];
  });

  it('passes every sound image without decoding it, and the decoder agrees each one decodes', async () => {
    for (const [label, bytes] of sound) {
      expect([label, await passesQuickCheck(bytes)]).toEqual([label, true]);
      expect([label, await fullDecodeReason(bytes)]).toEqual([label, undefined]);
    }
  });

  it('flags images cut short, magic bytes alone, the pixel bomb header and formats not read; the upload then gives the decoder’s reason', async () => {
    const flagged: Array<[string, Buffer]> = [
      ['JPEG cut in half', await truncatedJpeg()],
      ['JPEG missing its last 64 bytes', await slightlyTruncatedJpeg()],
      ['JPEG magic only', Buffer.from([0xff, 0xd8, 0xff, 0xe0])],
      ['PNG signature and junk', Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(300, 7)])],
      ['60,000×60,000 PNG header', await hugePngHeader()],
      ['empty file', await emptyFile()],
      ['text', await textFileBytes()],
      ['BMP', bmpImage()],
      ['HEIC', heicHead()],
    ];
    for (const [label, bytes] of flagged) {
      expect([label, await passesQuickCheck(bytes)]).toEqual([label, false]);
      const verdict = await checkUploadImage({ name: 'x.jpg', bytes }, VIEWS);
      expect([label, verdict?.reason]).toEqual([label, await fullDecodeReason(bytes)]);
    }
    // Cut just short, the JPEG still decodes (a grey band of under 5 %): flagged, then accepted as before.
    expect(await checkUploadImage({ name: 'x.jpg', bytes: await slightlyTruncatedJpeg() }, VIEWS)).toBeUndefined();
  });

  it('leaves damage inside an intact structure to training (the decoder finds it there)', async () => {
    // Every CRC right, the image data junk: passed at upload, refused by the decode.
    const junkData = undecodablePng(5);
    expect(await passesQuickCheck(junkData)).toBe(true);
    expect(await checkUploadImage({ name: 'x.png', bytes: junkData }, VIEWS)).toBeUndefined();
    expect(await fullDecodeReason(junkData)).toMatch(/^the PNG image data is corrupt and cannot be decoded/);
    const damaged = await corruptJpeg();
    if (await passesQuickCheck(damaged)) expect(await fullDecodeReason(damaged)).toBeDefined();
  });

  it('flags every strict prefix of a JPEG or PNG, and a PNG with any byte of a chunk changed (its CRC)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: jpegs.length - 1 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        async (i, share) => {
          const bytes = jpegs[i];
          const prefix = bytes.subarray(0, Math.floor(bytes.length * share));
          expect(jpegStructureIntact(prefix)).toBe(false);
          expect(await passesQuickCheck(prefix)).toBe(false);
        },
      ),
      { numRuns: 60 },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: pngs.length - 1 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.integer({ min: 1, max: 255 }),
        async (i, share, xor) => {
          const bytes = pngs[i];
          expect(pngStructure(bytes.subarray(0, Math.floor(bytes.length * share)))).toBeNull();
          // Any byte after the signature belongs to a chunk: its length, type, data or CRC.
          const at = 8 + Math.floor((bytes.length - 8) * share);
          const changed = Buffer.from(bytes);
          changed[at] ^= xor;
          expect(pngStructure(changed)).toBeNull();
        },
      ),
      { numRuns: 80 },
    );
  });

  it('upload verdict = decoder verdict for every image the checks flag, over random damage', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: jpegs.length - 1 }),
        fc.constantFrom('cut', 'overwrite', 'xor'),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.integer({ min: 1, max: 200 }),
        async (i, kind, share, span) => {
          const whole = jpegs[i];
          const at = Math.floor(whole.length * share);
          let bytes: Buffer;
          if (kind === 'cut') bytes = whole.subarray(0, at);
          else {
            bytes = Buffer.from(whole);
            for (let k = at; k < Math.min(bytes.length, at + span); k++)
              bytes[k] = kind === 'xor' ? bytes[k] ^ 0x5a : 0;
          }
          const verdict = await checkUploadImage({ name: 'x.jpg', bytes }, VIEWS);
          if (!(await passesQuickCheck(bytes))) expect(verdict?.reason).toBe(await fullDecodeReason(bytes));
          else expect(verdict).toBeUndefined();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('reads a plain JPEG’s dimensions as sharp does, and leaves any other header to sharp', async () => {
    for (const [label, bytes] of sound.filter(([, b]) => b[0] === 0xff && b[1] === 0xd8)) {
      const { width, height } = await sharp(bytes).metadata();
      expect([label, jpegStructure(bytes)]).toEqual([label, { width, height, plain: true }]);
    }
    const sof = (bytes: Buffer) => {
      for (let at = 2; ;) {
        const marker = bytes[at + 1];
        if (marker >= 0xc0 && marker <= 0xc2) return at;
        at += 2 + bytes.readUInt16BE(at + 2);
      }
    };
    // 12-bit samples, a frame type libjpeg may not read, 5 components: the decoder is asked.
    for (const [offset, value] of [
      [4, 12],
      [1, 0xc3],
      [9, 5],
    ]) {
      const changed = Buffer.from(jpegs[0]);
      changed[sof(changed) + offset] = value;
      expect([offset, jpegStructure(changed)?.plain]).toEqual([offset, false]);
    }
    // A header beyond the pixel limit is flagged from the frame alone (then the decoder gives its reason).
    const huge = Buffer.from(jpegs[0]);
    huge.writeUInt16BE(60000, sof(huge) + 5);
    huge.writeUInt16BE(60000, sof(huge) + 7);
    expect(jpegStructure(huge)).toEqual({ width: 60000, height: 60000, plain: true });
    expect(await passesQuickCheck(huge)).toBe(false);
  });

  it('takes no header sharp would refuse or read otherwise for plain, over random damage to the header segments', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: jpegs.length - 1 }),
        fc.integer({ min: 2, max: 700 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 255 }),
        async (i, at, span, xor) => {
          const bytes = Buffer.from(jpegs[i]);
          for (let k = at; k < Math.min(bytes.length, at + span); k++) bytes[k] ^= xor;
          const header = jpegStructure(bytes);
          if (!header?.plain) return;
          const { width, height } = await sharp(bytes, { limitInputPixels: false }).metadata();
          expect({ width, height }).toEqual({ width: header.width, height: header.height });
        },
      ),
      { numRuns: Number(process.env.RUNS ?? 300) },
    );
  });
});
