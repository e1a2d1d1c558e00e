/**
 * What an upload can know of an image without decoding its pixels, so a create answers at once and
 * training decodes in the background (issue 22): the format by its magic bytes, the header
 * (dimensions, the MAX_INPUT_PIXELS limit) as sharp reads it, and the structure in one pass over the
 * bytes: a JPEG's segments and entropy-coded data through its EOI marker, a PNG's chunks with their
 * CRC-32s through IEND (Apple's CgBI PNGs included, whose header is read here since libvips cannot),
 * a GIF's trailer, a WebP's RIFF length.
 *
 * The pass is a cheap filter, not a verdict: an image it flags is decoded in full on the spot (see
 * Embedder.checkImage), so whatever a full decode refuses at upload is refused with the same reason
 * as before and whatever it accepts (a JPEG cut short by a few rows, say) is accepted. What the pass
 * cannot see (damaged scan data between intact markers) is found when training decodes the image.
 */
import zlib from 'node:zlib';
import sharp from 'sharp';
import { decodeImageViews, ImageDecodeError, MAX_INPUT_PIXELS, sniffImageType, type SquareView } from './decode-image';
import type { ImageInput } from './types';

/** CgBI colour types read by the decoder (greyscale, RGB, grey + alpha, RGBA) at 8 bits. */
const CGBI_COLOUR_TYPES = new Set([0, 2, 4, 6]);

/**
 * Whether a JPEG's marker structure is whole: SOI, then segments whose lengths fit the file, at
 * least one frame header (SOFn) and scan (SOS), each scan's entropy-coded data ending at a marker
 * (0xFF00 stuffing and RSTn skipped), and an EOI. Trailing bytes after EOI are ignored, as decoders do.
 */
export function jpegStructureIntact(bytes: Buffer): boolean {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return false;
  let at = 2;
  let frame = false;
  let scan = false;
  while (at < bytes.length) {
    // Between segments only markers may stand (fill bytes 0xFF before one are allowed).
    if (bytes[at] !== 0xff) return false;
    while (at < bytes.length && bytes[at] === 0xff) at++;
    if (at >= bytes.length) return false;
    const marker = bytes[at++];
    if (marker === 0xd9) return frame && scan;
    if (marker === 0x00 || marker === 0xd8) return false;
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) continue; // standalone markers
    if (at + 2 > bytes.length) return false;
    const length = bytes.readUInt16BE(at);
    if (length < 2 || at + length > bytes.length) return false;
    at += length;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) frame = true;
    if (marker !== 0xda) continue;
    if (!frame) return false;
    scan = true;
    // Entropy-coded data: runs until a 0xFF that is neither stuffing (0xFF00), a restart marker nor fill.
    for (;;) {
      const ff = bytes.indexOf(0xff, at);
      if (ff < 0 || ff + 1 >= bytes.length) return false;
      const next = bytes[ff + 1];
      if (next === 0x00 || (next >= 0xd0 && next <= 0xd7)) at = ff + 2;
      else if (next === 0xff) at = ff + 1;
      else {
        at = ff;
        break;
      }
    }
  }
  return false;
}

/** A PNG's header fields, from its IHDR chunk. */
interface PngHeader {
  width: number;
  height: number;
  bitDepth: number;
  colourType: number;
  cgbi: boolean;
}

/**
 * A PNG's chunks walked through IEND, each CRC-32 checked; IHDR first (after Apple's CgBI chunk when
 * there is one) and at least one IDAT. Returns the header, or null when the structure is not whole.
 */
export function pngStructure(bytes: Buffer): PngHeader | null {
  let at = 8;
  let header: PngHeader | null = null;
  let cgbi = false;
  let data = false;
  let index = 0;
  while (at + 12 <= bytes.length) {
    const length = bytes.readUInt32BE(at);
    if (length > 0x7fffffff || at + 12 + length > bytes.length) return null;
    const type = bytes.toString('latin1', at + 4, at + 8);
    const crc = bytes.readUInt32BE(at + 8 + length);
    if (zlib.crc32(bytes.subarray(at + 4, at + 8 + length)) !== crc) return null;
    if (type === 'CgBI' && index === 0) cgbi = true;
    else if (type === 'IHDR') {
      if (header || length !== 13 || index !== (cgbi ? 1 : 0)) return null;
      header = {
        width: bytes.readUInt32BE(at + 8),
        height: bytes.readUInt32BE(at + 12),
        bitDepth: bytes[at + 16],
        colourType: bytes[at + 17],
        cgbi,
      };
    } else if (!header) return null;
    else if (type === 'IDAT') data = true;
    else if (type === 'IEND') return data ? header : null;
    at += 12 + length;
    index++;
  }
  return null;
}

/**
 * Whether an uploaded image passes every check that needs no pixel decoding (see the module comment):
 * a format the decoder accepts, a readable header within MAX_INPUT_PIXELS, and a whole structure.
 * False means "decode it now to know", not "refuse it". Costs one pass over the bytes and a header read.
 */
export async function passesQuickCheck(bytes: Buffer): Promise<boolean> {
  const type = sniffImageType(bytes);
  if (type === null) return false;
  if (type === 'jpeg' && !jpegStructureIntact(bytes)) return false;
  if (type === 'png') {
    const header = pngStructure(bytes);
    if (!header || header.width === 0 || header.height === 0) return false;
    // libvips cannot read a CgBI header; its fields are what the decoder's conversion needs.
    if (header.cgbi)
      return (
        header.width * header.height <= MAX_INPUT_PIXELS &&
        header.bitDepth === 8 &&
        CGBI_COLOUR_TYPES.has(header.colourType)
      );
  }
  if (type === 'gif' && bytes[bytes.length - 1] !== 0x3b) return false;
  if (type === 'webp' && bytes.readUInt32LE(4) + 8 > bytes.length) return false;
  try {
    const { width, height } = await sharp(bytes, { limitInputPixels: false }).metadata();
    return width > 0 && height > 0 && width * height <= MAX_INPUT_PIXELS;
  } catch {
    return false;
  }
}

/**
 * An uploaded image checked without decoding its pixels where that suffices (passesQuickCheck), and
 * decoded in full to `views` (the embedder's, so the same work and the same reason as training's
 * decode) only when the quick check flags it. Returns the ImageDecodeError the full decode gives, or
 * undefined when the image passed: then it may still fail to decode later, when damage hides between
 * intact markers (training reports it). Errors other than ImageDecodeError are the decoder's faults.
 */
export async function checkUploadImage(image: ImageInput, views: SquareView[]): Promise<ImageDecodeError | undefined> {
  if (await passesQuickCheck(image.bytes)) return undefined;
  try {
    await decodeImageViews(image.bytes, image.name, views);
    return undefined;
  } catch (error) {
    if (error instanceof ImageDecodeError) return error;
    throw error;
  }
}
