/**
 * What an upload can know of an image without decoding its pixels, so a create answers at once and
 * training decodes in the background (issue 22): the format by its magic bytes, the header
 * (dimensions, the MAX_INPUT_PIXELS limit) as libjpeg or sharp reads it, and the structure in one pass
 * over the bytes: a JPEG's segments (whose frame and table headers give its dimensions without sharp) and entropy-coded data through its EOI marker, a PNG's chunks with their
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

/** Frame types libjpeg reads as 8-bit Huffman-coded images: baseline, extended sequential, progressive. */
const PLAIN_JPEG_FRAMES = new Set([0xc0, 0xc1, 0xc2]);

/**
 * A JPEG's frame dimensions from its SOFn segment, and whether every header segment libjpeg reads
 * before the first scan (SOFn, DHT, DQT, DRI, SOS) is one it accepts without question: an 8-bit
 * baseline, extended or progressive frame of 1, 3 or 4 components with sampling factors 1–4 and no
 * zero dimension, Huffman tables of at most 256 codes, quantisation tables 0–3, a scan of 1–4
 * components. When `plain` is false, the header is read by the decoder instead (passesQuickCheck).
 */
interface JpegHeader {
  width: number;
  height: number;
  plain: boolean;
}

/** Whether a DHT or DQT segment's body is a whole number of well-formed tables. */
function jpegTablesPlain(marker: number, body: Buffer): boolean {
  let at = 0;
  while (at < body.length) {
    const kind = body[at] >> 4;
    const id = body[at] & 0x0f;
    if (id > 3) return false;
    if (marker === 0xc4) {
      if (kind > 1 || at + 17 > body.length) return false;
      let codes = 0;
      for (let i = 1; i <= 16; i++) codes += body[at + i];
      if (codes > 256) return false;
      at += 17 + codes;
    } else {
      if (kind > 1) return false;
      at += 1 + 64 * (kind + 1);
    }
  }
  return at === body.length;
}

/** Whether a SOFn segment's body describes a frame libjpeg reads without question (see JpegHeader). */
function jpegFramePlain(marker: number, body: Buffer): boolean {
  if (!PLAIN_JPEG_FRAMES.has(marker) || body.length < 6 || body[0] !== 8) return false;
  const components = body[5];
  if (![1, 3, 4].includes(components) || body.length !== 6 + 3 * components) return false;
  for (let c = 0; c < components; c++) {
    const sampling = body[6 + 3 * c + 1];
    const h = sampling >> 4;
    const v = sampling & 0x0f;
    if (h < 1 || h > 4 || v < 1 || v > 4 || body[6 + 3 * c + 2] > 3) return false;
  }
  return body.readUInt16BE(1) > 0 && body.readUInt16BE(3) > 0 && distinct(jpegComponentIds(body, 5, 3));
}

/** The component ids a SOFn (from byte 5, 3 bytes each) or SOS (from byte 0, 2 bytes each) body lists. */
function jpegComponentIds(body: Buffer, countAt: number, stride: number): number[] {
  return Array.from({ length: body[countAt] }, (_, c) => body[countAt + 1 + stride * c]);
}

const distinct = (ids: number[]) => new Set(ids).size === ids.length;

/** Whether the first SOS body is one libjpeg reads without question: 1–4 distinct components of the frame, tables 0–3. */
function jpegScanPlain(body: Buffer, frame: Buffer): boolean {
  const count = body[0];
  if (body.length < 1 || count < 1 || count > 4 || body.length !== 4 + 2 * count) return false;
  const ids = jpegComponentIds(body, 0, 2);
  const frameIds = new Set(jpegComponentIds(frame, 5, 3));
  const tablesOk = ids.every((_, c) => body[2 + 2 * c] >> 4 <= 3 && (body[2 + 2 * c] & 0x0f) <= 3);
  return distinct(ids) && ids.every((id) => frameIds.has(id)) && tablesOk;
}

/**
 * A JPEG's marker structure walked once: SOI, then segments whose lengths fit the file, at least one
 * frame header (SOFn) and scan (SOS), each scan's entropy-coded data ending at a marker (0xFF00
 * stuffing and RSTn skipped), and an EOI. Trailing bytes after EOI are ignored, as decoders do.
 * Returns the first frame's header (see JpegHeader), or null when the structure is not whole.
 */
export function jpegStructure(bytes: Buffer): JpegHeader | null {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return null;
  let at = 2;
  let frame: Buffer | null = null;
  let plain = true;
  let scan = false;
  while (at < bytes.length) {
    // Between segments only markers may stand (fill bytes 0xFF before one are allowed).
    if (bytes[at] !== 0xff) return null;
    while (at < bytes.length && bytes[at] === 0xff) at++;
    if (at >= bytes.length) return null;
    const marker = bytes[at++];
    if (marker === 0xd9) return frame && scan ? { ...frameSize(frame), plain } : null;
    if (marker === 0x00 || marker === 0xd8) return null;
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) continue; // standalone markers
    if (at + 2 > bytes.length) return null;
    const length = bytes.readUInt16BE(at);
    if (length < 2 || at + length > bytes.length) return null;
    const body = bytes.subarray(at + 2, at + length);
    at += length;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      // A second frame (a hierarchical JPEG) is left to the decoder.
      plain &&= frame === null && jpegFramePlain(marker, body);
      frame ??= body;
    } else if (scan) {
      // Past the first scan: libjpeg's header read (what sharp's metadata does) has stopped.
    } else if (marker === 0xc4 || marker === 0xdb) plain &&= jpegTablesPlain(marker, body);
    else if (marker === 0xdd) plain &&= length === 4;
    // libjpeg refuses markers other than frames, tables, restart intervals, APPn and comments before the first scan.
    else if (marker !== 0xda && marker !== 0xfe && !(marker >= 0xe0 && marker <= 0xef)) plain = false;
    if (marker !== 0xda) continue;
    if (!frame) return null;
    if (!scan) plain &&= jpegScanPlain(body, frame);
    scan = true;
    // Entropy-coded data: runs until a 0xFF that is neither stuffing (0xFF00), a restart marker nor fill.
    for (;;) {
      const ff = bytes.indexOf(0xff, at);
      if (ff < 0 || ff + 1 >= bytes.length) return null;
      const next = bytes[ff + 1];
      if (next === 0x00 || (next >= 0xd0 && next <= 0xd7)) at = ff + 2;
      else if (next === 0xff) at = ff + 1;
      else {
        at = ff;
        break;
      }
    }
  }
  return null;
}

/** A SOFn body's dimensions (0 where the body is too short to hold them). */
function frameSize(frame: Buffer): { width: number; height: number } {
  return {
    width: frame.length >= 5 ? frame.readUInt16BE(3) : 0,
    height: frame.length >= 3 ? frame.readUInt16BE(1) : 0,
  };
}

/** Whether a JPEG's marker structure is whole (see jpegStructure). */
export function jpegStructureIntact(bytes: Buffer): boolean {
  return jpegStructure(bytes) !== null;
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
 * False means "decode it now to know", not "refuse it". Costs one pass over the bytes, and for all
 * but plain JPEGs (see JpegHeader, whose header that pass reads) and CgBI PNGs a header read by sharp.
 */
export async function passesQuickCheck(bytes: Buffer): Promise<boolean> {
  const type = sniffImageType(bytes);
  if (type === null) return false;
  const withinLimit = (width: number, height: number) => width > 0 && height > 0 && width * height <= MAX_INPUT_PIXELS;
  if (type === 'jpeg') {
    const header = jpegStructure(bytes);
    if (!header) return false;
    // The header the structure pass read is the one libjpeg would read: no need to ask sharp (bench:upload).
    if (header.plain) return withinLimit(header.width, header.height);
  }
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
    return withinLimit(width, height);
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
