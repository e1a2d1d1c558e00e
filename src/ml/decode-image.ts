/**
 * Turns untrusted upload bytes into a small sRGB pixel square for the models,
 * or an ImageDecodeError a user can act on. Never crashes, never allocates in
 * proportion to what a header merely claims.
 *
 * Policy:
 * - Accepted formats are sniffed from magic bytes (JPEG, PNG, GIF, TIFF, WebP);
 *   anything else is refused before sharp sees it.
 * - The header is read first (no pixel decoding) and images over
 *   MAX_INPUT_PIXELS are refused; sharp's `limitInputPixels` enforces the same
 *   limit again during decoding.
 * - Pixels are decoded with `failOn: 'warning'`, sharp's advice for untrusted
 *   input: libjpeg reports corrupt compressed data only as warnings, so any
 *   laxer level hands back garbage for a corrupt JPEG. libjpeg notices stray
 *   markers and misaligned data, which is what random damage produces, but not
 *   every corruption: a run of zero bytes, say, can decode silently to noise.
 * - The one exception is a JPEG that merely ends early (an upload or download
 *   cut short). It is decoded again leniently and accepted when at most
 *   MAX_MISSING_JPEG_FRACTION of the picture is missing: libjpeg paints the
 *   missing blocks flat grey (128), so the grey band at the bottom measures the
 *   loss. A progressive JPEG whose first scan is complete loses detail, not
 *   area, and is accepted.
 *
 * sharp settings for a server (set once, when this module loads): the libvips
 * operation cache is off, since every upload is decoded once and the cache
 * would hold up to 50 MB of pixels for nothing; concurrency is one libvips
 * thread per image, since the service decodes several images at once on
 * libuv's pool and inference needs the remaining core.
 */
import zlib from 'node:zlib';
import sharp, { type Metadata, type Sharp } from 'sharp';

sharp.cache(false);
sharp.concurrency(1);

/** 50 megapixels: ordinary cameras and phones (12–48 MP) pass; 108–200 MP full-resolution phone modes are refused. */
export const MAX_INPUT_PIXELS = 50_000_000;

/** Largest share of a truncated JPEG's height allowed to be missing (a grey band at the bottom). */
const MAX_MISSING_JPEG_FRACTION = 0.05;

/** Height of the thumbnail used to measure how much of a truncated JPEG is missing. */
const TRUNCATION_PROBE_SIZE = 256;

const MAX_OUTPUT_SIZE = 4096;

export type ImageType = 'jpeg' | 'png' | 'gif' | 'tiff' | 'webp';

export class ImageDecodeError extends Error {
  readonly fileName: string;
  readonly reason: string;

  constructor(fileName: string, reason: string, options?: { cause?: unknown }) {
    super(`${fileName}: ${reason}`, options);
    this.name = 'ImageDecodeError';
    this.fileName = fileName;
    this.reason = reason;
  }
}

export interface DecodedImage {
  /** size × size × 3 bytes, sRGB, row-major, channels interleaved (HWC). */
  rgb: Buffer;
  size: number;
  /** Width of the original picture as viewed (after EXIF rotation). */
  width: number;
  /** Height of the original picture as viewed (after EXIF rotation). */
  height: number;
}

function startsWith(bytes: Buffer, signature: readonly number[], offset = 0): boolean {
  if (bytes.length < offset + signature.length) return false;
  return signature.every((b, i) => bytes[offset + i] === b);
}

const ascii = (text: string): number[] => [...text].map((c) => c.charCodeAt(0));

/** The image type announced by the file's first bytes; null when it is none of the accepted ones. */
export function sniffImageType(bytes: Buffer): ImageType | null {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (startsWith(bytes, ascii('GIF87a')) || startsWith(bytes, ascii('GIF89a'))) return 'gif';
  // Little- and big-endian TIFF, classic (42) and BigTIFF (43).
  if (startsWith(bytes, [0x49, 0x49, 0x2a, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2a])) return 'tiff';
  if (startsWith(bytes, [0x49, 0x49, 0x2b, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2b])) return 'tiff';
  if (startsWith(bytes, ascii('RIFF')) && startsWith(bytes, ascii('WEBP'), 8)) return 'webp';
  return null;
}

const ACCEPTED_FORMATS = 'a JPEG, PNG, GIF, TIFF or WebP image';

/** ISO base media brands of still images (HEIF/HEIC, AVIF); other brands (mp4, mov…) are videos. */
const IMAGE_BRANDS = new Set([
  'heic',
  'heix',
  'heim',
  'heis',
  'hevc',
  'hevx',
  'hevm',
  'hevs',
  'mif1',
  'msf1',
  'avif',
  'avis',
]);

/** The name of an image format that is recognised but not accepted, from the file's first bytes. */
function unsupportedImageFormat(bytes: Buffer): string | null {
  if (
    startsWith(bytes, ascii('BM')) &&
    bytes.length >= 26 &&
    bytes.readUInt32LE(14) >= 12 &&
    bytes.readUInt32LE(14) <= 124
  )
    return 'BMP';
  if (startsWith(bytes, ascii('ftyp'), 4)) {
    const brand = bytes.toString('latin1', 8, 12);
    if (IMAGE_BRANDS.has(brand)) return brand.startsWith('avi') ? 'AVIF' : 'HEIC';
  }
  if (
    startsWith(bytes, [0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a]) ||
    startsWith(bytes, [0xff, 0x4f, 0xff, 0x51])
  ) {
    return 'JPEG 2000';
  }
  return null;
}

/**
 * Whether a file is a picture by its first bytes: an accepted format, or BMP, HEIC, AVIF or JPEG
 * 2000. In a zip, such a file is reported when it cannot be used; anything else (documents, nested
 * zips, notes) is not a picture and is skipped silently.
 */
export function isImageFile(bytes: Buffer): boolean {
  return sniffImageType(bytes) !== null || unsupportedImageFormat(bytes) !== null;
}

/** What an unaccepted file seems to be, for the error message. */
function describeUnaccepted(bytes: Buffer): string {
  const head = bytes.subarray(0, 512);
  const text = head.toString('latin1').trimStart().toLowerCase();
  if (startsWith(bytes, ascii('%PDF'))) return 'it is a PDF document';
  if (startsWith(bytes, [0x50, 0x4b, 0x03, 0x04]))
    return 'it is a ZIP archive (archives inside archives are not opened)';
  const unsupported = unsupportedImageFormat(bytes);
  if (unsupported) return `it is a ${unsupported} image, which is not supported`;
  if (startsWith(bytes, ascii('BM'))) return 'it is a BMP image, which is not supported';
  if (startsWith(bytes, ascii('ftyp'), 4)) return 'it is a HEIC/AVIF or video file, which is not supported';
  if (text.startsWith('<svg') || (text.startsWith('<?xml') && text.includes('<svg')))
    return 'it is an SVG drawing, which is not supported';
  const printable = head.every((b) => b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b !== 0x7f));
  if (printable) return 'it contains text';
  return `it starts with bytes ${[...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ')}`;
}

/** Whether the file lacks its format's closing bytes, i.e. was probably cut short. */
function lacksEnding(type: ImageType, bytes: Buffer): boolean {
  const tail = bytes.subarray(Math.max(0, bytes.length - 64));
  switch (type) {
    case 'jpeg':
      return tail.lastIndexOf(Buffer.from([0xff, 0xd9])) < 0;
    case 'png':
      return tail.lastIndexOf(Buffer.from('IEND', 'ascii')) < 0;
    case 'gif':
      return bytes[bytes.length - 1] !== 0x3b;
    default:
      return false;
  }
}

function sharpDetail(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0].trim();
}

const INCOMPLETE_REASON =
  'the file is incomplete: it ends before the image data does (was the upload or download cut short?); upload the complete file';

function decodeFailureReason(type: ImageType, bytes: Buffer, err: unknown): string {
  const detail = sharpDetail(err);
  if (/exceeds pixel limit/i.test(detail)) return tooManyPixelsReason();
  if (/premature end of JPEG|unexpected end of/i.test(detail) || lacksEnding(type, bytes)) return INCOMPLETE_REASON;
  return `the ${type.toUpperCase()} image data is corrupt and cannot be decoded (${detail}); upload an undamaged copy of the image`;
}

function tooManyPixelsReason(width?: number, height?: number): string {
  const limit = `the ${MAX_INPUT_PIXELS / 1e6}-megapixel limit`;
  if (width === undefined || height === undefined)
    return `the image has more pixels than ${limit}; scale it down and upload it again`;
  const megapixels = ((width * height) / 1e6).toFixed(1);
  return `the image is ${width}×${height} pixels (${megapixels} megapixels), more than ${limit}; scale it down and upload it again`;
}

interface Header {
  /** Dimensions as viewed, after EXIF rotation. */
  width: number;
  height: number;
  channels: number;
}

/** Reads the header only: no pixel data is decoded, whatever size it declares. */
async function readHeader(bytes: Buffer, fileName: string, type: ImageType): Promise<Header> {
  let metadata: Metadata;
  try {
    // The limit is checked below, with the real dimensions in the message.
    metadata = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    const reason = lacksEnding(type, bytes)
      ? INCOMPLETE_REASON
      : `the ${type.toUpperCase()} header is unreadable (${sharpDetail(err)}); upload an undamaged copy of the image`;
    throw new ImageDecodeError(fileName, reason, { cause: err });
  }
  const { width, height } = metadata;
  if (width * height > MAX_INPUT_PIXELS) throw new ImageDecodeError(fileName, tooManyPixelsReason(width, height));
  return { width: metadata.autoOrient.width, height: metadata.autoOrient.height, channels: metadata.channels };
}

/** How the picture becomes a square: scaled to cover it and centre-cropped, or stretched to fill it. */
export type SquareFit = 'cover' | 'fill';

/** One square rendering of a picture, as one network wants it. */
export interface SquareView {
  size: number;
  fit: SquareFit;
}

function decodeOptions(failOn: 'warning' | 'none') {
  return { failOn, limitInputPixels: MAX_INPUT_PIXELS, autoOrient: true, pages: 1 } as const;
}

/**
 * Renders the views. One view: decoded and resized in one pipeline. Several: the file is decoded once
 * (libvips shrinks JPEGs while decoding) to sRGB pixels just large enough for the largest view, and
 * each view is resized from those pixels, so two networks cost one decode.
 */
async function renderSquares(bytes: Buffer, views: SquareView[], failOn: 'warning' | 'none'): Promise<Buffer[]> {
  if (views.length === 1) {
    const [{ size, fit }] = views;
    return [
      await finishSquare(
        sharp(bytes, decodeOptions(failOn))
          .flatten({ background: '#ffffff' })
          .resize(size, size, { fit, position: 'centre' }),
        size,
      ),
    ];
  }
  const largest = Math.max(...views.map((view) => view.size));
  const { data, info } = await sharp(bytes, decodeOptions(failOn))
    .flatten({ background: '#ffffff' })
    .resize(largest, largest, { fit: 'outside', withoutEnlargement: true })
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  const raw = { width: info.width, height: info.height, channels: info.channels };
  return Promise.all(
    views.map(({ size, fit }) =>
      finishSquare(sharp(data, { raw }).resize(size, size, { fit, position: 'centre' }), size),
    ),
  );
}

async function finishSquare(pipeline: Sharp, size: number): Promise<Buffer> {
  // Greyscale, CMYK and 16-bit input all leave as 8-bit, 3-channel sRGB.
  const { data, info } = await pipeline.toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || data.length !== size * size * 3) {
    throw new Error(`sharp returned ${info.width}×${info.height}×${info.channels} instead of ${size}×${size}×3`);
  }
  return data;
}

/**
 * Share of a truncated JPEG's rows (as stored, before EXIF rotation) that
 * libjpeg filled with flat grey because their data is missing.
 */
async function missingJpegFraction(bytes: Buffer): Promise<number> {
  const { data, info } = await sharp(bytes, { failOn: 'none', limitInputPixels: MAX_INPUT_PIXELS, ignoreIcc: true })
    .resize(TRUNCATION_PROBE_SIZE, TRUNCATION_PROBE_SIZE, { fit: 'inside', kernel: 'nearest' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const rowLength = info.width * info.channels;
  let greyRows = 0;
  for (let y = info.height - 1; y >= 0; y--) {
    const row = data.subarray(y * rowLength, (y + 1) * rowLength);
    if (!row.every((v) => v >= 127 && v <= 129)) break;
    greyRows++;
  }
  return greyRows / info.height;
}

/**
 * Whether a JPEG failed because it ends early. libjpeg says so in a warning, but when several images
 * decode at once sharp may report only "Warning treated as error" (libvips keeps the text per thread),
 * so a JPEG without its end marker counts as cut short too: the same file gets the same reason however
 * busy the server is.
 */
function isJpegTruncation(err: unknown, bytes: Buffer): boolean {
  return /premature end of JPEG/i.test(sharpDetail(err)) || lacksEnding('jpeg', bytes);
}

// ---- PNGs optimised by Xcode for iOS ("CgBI") ----

/**
 * Xcode's "Compress PNG Files" (pngcrush -iphone) writes PNGs that only iOS reads: a `CgBI` chunk
 * before IHDR, the image data a raw deflate stream (no zlib header or checksum), pixels in BGR(A)
 * order with the colour premultiplied by alpha. Users find them in app bundles and take them for
 * ordinary PNGs.
 */
function isAppleCgbiPng(bytes: Buffer): boolean {
  return bytes.length >= 16 && bytes.toString('latin1', 12, 16) === 'CgBI';
}

const CGBI_EXPORT_ADVICE =
  'export it as a standard PNG (xcrun -sdk iphoneos pngcrush -revert-iphone-optimizations in.png out.png, or set "Compress PNG Files" to No in Xcode) and upload that';

/** Bytes of the filtered image data (a filter byte before each row) of an 8-bit image, per Adam7 pass when interlaced. */
function filteredDataLength(width: number, height: number, channels: number, interlaced: boolean): number {
  const rows = (w: number, h: number) => (w === 0 || h === 0 ? 0 : h * (1 + w * channels));
  if (!interlaced) return rows(width, height);
  // Adam7: [first column, first row, column step, row step] of each pass.
  const passes = [
    [0, 0, 8, 8],
    [4, 0, 8, 8],
    [0, 4, 4, 8],
    [2, 0, 4, 4],
    [0, 2, 2, 4],
    [1, 0, 2, 2],
    [0, 1, 1, 2],
  ];
  return passes.reduce(
    (sum, [x0, y0, dx, dy]) =>
      sum + rows(Math.ceil(Math.max(0, width - x0) / dx), Math.ceil(Math.max(0, height - y0) / dy)),
    0,
  );
}

function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(data, zlib.crc32(head.subarray(4))), 0);
  return Buffer.concat([head, data, crc]);
}

/** PNG colour types of 8-bit CgBI files this reads: greyscale, RGB, greyscale + alpha, RGBA (not palette). */
const CGBI_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };

/**
 * A standard PNG with the pixels of an Xcode CgBI PNG: the raw deflate stream inflated and wrapped
 * again in zlib (with only the chunks every decoder needs), then the colour put back in RGB order and
 * the premultiplication by alpha undone. Throws ImageDecodeError naming the format for a damaged or
 * unusual one.
 */
async function standardPngFromAppleCgbi(bytes: Buffer, fileName: string): Promise<Buffer> {
  const refuse = (what: string, cause?: unknown) =>
    new ImageDecodeError(
      fileName,
      `it is a PNG optimised by Xcode for iOS (CgBI) ${what}; ${CGBI_EXPORT_ADVICE}`,
      cause === undefined ? undefined : { cause },
    );
  let header: Buffer | undefined;
  const data: Buffer[] = [];
  let ended = false;
  for (let at = 8; at + 12 <= bytes.length && !ended;) {
    const length = bytes.readUInt32BE(at);
    const type = bytes.toString('latin1', at + 4, at + 8);
    if (at + 12 + length > bytes.length) break;
    const body = bytes.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') header = body;
    else if (type === 'IDAT') data.push(body);
    else if (type === 'IEND') ended = true;
    at += 12 + length;
  }
  if (!ended) throw new ImageDecodeError(fileName, INCOMPLETE_REASON);
  if (header === undefined || header.length !== 13 || data.length === 0) throw refuse('whose structure is damaged');
  const width = header.readUInt32BE(0);
  const height = header.readUInt32BE(4);
  const [bitDepth, colourType, , , interlace] = header.subarray(8);
  if (width * height > MAX_INPUT_PIXELS) throw new ImageDecodeError(fileName, tooManyPixelsReason(width, height));
  const channels = CGBI_CHANNELS[colourType];
  if (bitDepth !== 8 || channels === undefined)
    throw refuse(`with ${bitDepth}-bit samples of colour type ${colourType}, which is not read here`);
  const expected = filteredDataLength(width, height, channels, interlace === 1);
  let filtered: Buffer;
  try {
    // Bounded by what the header says, so a deflate bomb stops there.
    filtered = zlib.inflateRawSync(Buffer.concat(data), { maxOutputLength: expected });
  } catch (err) {
    if (/unexpected end/i.test(sharpDetail(err)))
      throw new ImageDecodeError(fileName, INCOMPLETE_REASON, { cause: err });
    throw refuse(`whose image data is corrupt (${sharpDetail(err)})`, err);
  }
  if (filtered.length !== expected) throw new ImageDecodeError(fileName, INCOMPLETE_REASON);
  const standard = Buffer.concat([
    bytes.subarray(0, 8),
    pngChunk('IHDR', header),
    pngChunk('IDAT', zlib.deflateSync(filtered, { level: 1 })),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
  if (channels < 2) return standard;
  let pixels: Buffer;
  try {
    pixels = await sharp(standard, { limitInputPixels: MAX_INPUT_PIXELS }).raw().toBuffer();
  } catch (err) {
    throw refuse(`whose image data is corrupt (${sharpDetail(err)})`, err);
  }
  const hasAlpha = channels === 2 || channels === 4;
  for (let i = 0; i < pixels.length; i += channels) {
    if (channels >= 3) {
      const blue = pixels[i];
      pixels[i] = pixels[i + 2];
      pixels[i + 2] = blue;
    }
    const alpha = pixels[i + channels - 1];
    if (!hasAlpha || alpha === 255) continue;
    for (let c = 0; c < channels - 1; c++)
      pixels[i + c] = alpha === 0 ? 0 : Math.min(255, Math.round((pixels[i + c] * 255) / alpha));
  }
  return sharp(pixels, { raw: { width, height, channels: channels as 2 | 3 | 4 } })
    .png({ compressionLevel: 1 })
    .toBuffer();
}

/**
 * Decodes an uploaded image to `size`×`size` sRGB pixels: EXIF rotation applied,
 * alpha flattened on white, first frame of an animation, scaled to cover the
 * square and centre-cropped. Throws ImageDecodeError for anything that is not a
 * sound image within MAX_INPUT_PIXELS.
 */
export function decodeImage(bytes: Buffer, fileName: string, size: number): Promise<DecodedImage> {
  return decodeToSquare(bytes, fileName, size, 'cover');
}

/**
 * Like decodeImage, with the same checks and errors, but the whole picture is stretched to the square
 * (aspect ratio not kept, nothing cropped): what detectors trained on stretched inputs expect.
 */
export function decodeImageStretched(bytes: Buffer, fileName: string, size: number): Promise<DecodedImage> {
  return decodeToSquare(bytes, fileName, size, 'fill');
}

/**
 * Several square renderings of one uploaded image from a single decode, with decodeImage's checks and
 * errors: one per view, in order (see renderSquares).
 */
export async function decodeImageViews(bytes: Buffer, fileName: string, views: SquareView[]): Promise<DecodedImage[]> {
  if (views.length === 0) throw new RangeError('decodeImageViews: no views requested');
  for (const { size } of views) {
    if (!Number.isInteger(size) || size < 1 || size > MAX_OUTPUT_SIZE) {
      throw new RangeError(`decodeImage: size must be an integer from 1 to ${MAX_OUTPUT_SIZE}, got ${size}`);
    }
  }
  if (bytes.length === 0)
    throw new ImageDecodeError(fileName, 'the file is empty (0 bytes); upload the image file itself');
  const type = sniffImageType(bytes);
  if (type === null) {
    throw new ImageDecodeError(
      fileName,
      `the file is not ${ACCEPTED_FORMATS}: ${describeUnaccepted(bytes)}; upload the picture as JPEG or PNG`,
    );
  }
  if (type === 'png' && isAppleCgbiPng(bytes)) bytes = await standardPngFromAppleCgbi(bytes, fileName);
  const header = await readHeader(bytes, fileName, type);
  let squares: Buffer[];
  try {
    squares = await renderSquares(bytes, views, 'warning');
  } catch (err) {
    if (type !== 'jpeg' || !isJpegTruncation(err, bytes) || (header.channels !== 1 && header.channels !== 3)) {
      throw new ImageDecodeError(fileName, decodeFailureReason(type, bytes, err), { cause: err });
    }
    squares = await decodeTruncatedJpeg(bytes, fileName, views, err);
  }
  return squares.map((rgb, i) => ({ rgb, size: views[i].size, width: header.width, height: header.height }));
}

async function decodeToSquare(bytes: Buffer, fileName: string, size: number, fit: SquareFit): Promise<DecodedImage> {
  const [decoded] = await decodeImageViews(bytes, fileName, [{ size, fit }]);
  return decoded;
}

async function decodeTruncatedJpeg(
  bytes: Buffer,
  fileName: string,
  views: SquareView[],
  strictError: unknown,
): Promise<Buffer[]> {
  let missing: number;
  try {
    missing = await missingJpegFraction(bytes);
  } catch (err) {
    throw new ImageDecodeError(fileName, INCOMPLETE_REASON, { cause: err });
  }
  if (missing > MAX_MISSING_JPEG_FRACTION) {
    const percent = Math.round(missing * 100);
    throw new ImageDecodeError(
      fileName,
      `the JPEG file is incomplete: the bottom ${percent}% of the picture is missing (was the upload or download cut short?); upload the complete file`,
      { cause: strictError },
    );
  }
  try {
    return await renderSquares(bytes, views, 'none');
  } catch (err) {
    throw new ImageDecodeError(fileName, decodeFailureReason('jpeg', bytes, err), { cause: err });
  }
}

/** Longest side of an example's thumbnail, in pixels. */
export const THUMBNAIL_SIZE = 160;

/**
 * A small JPEG of a stored example image for people to look at: turned upright (EXIF), flattened on
 * white, scaled to fit THUMBNAIL_SIZE × THUMBNAIL_SIZE (never enlarged), quality 80. Leniently
 * decoded (the image was accepted at upload).
 * @throws ImageDecodeError when the bytes cannot be decoded
 */
export async function makeThumbnail(bytes: Buffer, fileName: string): Promise<Buffer> {
  const input = isAppleCgbiPng(bytes) ? await standardPngFromAppleCgbi(bytes, fileName) : bytes;
  try {
    return await sharp(input, decodeOptions('none'))
      .flatten({ background: '#ffffff' })
      .resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: 'inside', withoutEnlargement: true })
      .toColourspace('srgb')
      .jpeg({ quality: 80 })
      .toBuffer();
  } catch (err) {
    throw new ImageDecodeError(fileName, `the image cannot be decoded (${sharpDetail(err)})`, { cause: err });
  }
}
