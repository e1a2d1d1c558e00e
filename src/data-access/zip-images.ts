import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { sniffImageType } from '../ml/decode-image';
import type { ImageStore } from './image-store';
import {
  bufferSource,
  openFileSource,
  readCentralDirectory,
  readEntryData,
  TooManyEntriesError,
  ZipFormatError,
  type ZipEntryRecord,
  type ZipSource,
} from './zip-archive';

const inflateRaw = promisify(zlib.inflateRaw);

export interface ZipLimits {
  minImages: number;
  maxImages: number;
  maxZipBytes: number;
  /** Largest uncompressed size of one entry, declared or actual. */
  maxEntryBytes: number;
  /** Largest uncompressed size of all entries that are read, together. */
  maxTotalUncompressedBytes: number;
}

/** A zip the user uploaded cannot be used; the message names the form field, the problem and the fix. */
export class ZipInputError extends Error {
  constructor(
    readonly fieldName: string,
    message: string,
  ) {
    super(message);
    this.name = 'ZipInputError';
  }
}

export interface ZipImage {
  /** The entry's path inside the zip: a label only, never used as a file path. */
  entryName: string;
  hash: string;
  bytes: number;
}

const STORED = 0;
const DEFLATED = 8;
const ENCRYPTED_FLAG = 0x0001;
const MB = 1024 * 1024;

/**
 * Entries read at most, per image allowed: macOS zips hold a `__MACOSX/._x` twin of every file,
 * plus folders; anything beyond this is not an image set. Checked before the directory is read.
 */
const ENTRIES_PER_IMAGE = 4;
const EXTRA_ENTRIES = 1000;

const ZIP_SIGNATURES = [0x04034b50, 0x06054b50]; // a local file header; the end record of an empty zip

/** Whether the bytes are a zip, by content: SDKs name zips `<class>`, `<class>.zip` or `_`. */
export function isZip(bytes: Buffer): boolean {
  return bytes.length >= 4 && ZIP_SIGNATURES.includes(bytes.readUInt32LE(0));
}

function formatBytes(bytes: number): string {
  if (bytes >= MB) return `${Number((bytes / MB).toFixed(1))} MB`;
  if (bytes >= 1024) return `${Number((bytes / 1024).toFixed(1))} KB`;
  return `${bytes} bytes`;
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

/** Hidden files (a path segment starting with '.'; '.' and '..' are navigation, not names) and macOS metadata. */
function isSkippedByName(name: string): boolean {
  if (name.endsWith('/') || name.endsWith('\\')) return true;
  const segments = name.split(/[/\\]/);
  return segments[0] === '__MACOSX' || segments.some((s) => s.startsWith('.') && s !== '.' && s !== '..');
}

/** An opened zip: its entries not skipped by name, checked against the limits from the directory alone. */
interface OpenedZip {
  source: ZipSource;
  candidates: ZipEntryRecord[];
  skippedByName: number;
}

class ZipReader {
  constructor(
    private readonly fieldName: string,
    private readonly limits: ZipLimits,
  ) {}

  private fail(problem: string): ZipInputError {
    return new ZipInputError(this.fieldName, problem);
  }

  private unreadable(reason: string): ZipInputError {
    return this.fail(
      `The zip file for '${this.fieldName}' cannot be read: ${reason}. Create the zip again and re-upload it.`,
    );
  }

  async open(zip: string | Buffer): Promise<OpenedZip> {
    const source = typeof zip === 'string' ? await openFileSource(zip) : bufferSource(zip);
    try {
      return { source, ...(await this.checkDirectory(source)) };
    } catch (error) {
      await source.close();
      throw error;
    }
  }

  private async checkDirectory(source: ZipSource): Promise<Omit<OpenedZip, 'source'>> {
    const { fieldName, limits } = this;
    if (source.size > limits.maxZipBytes) {
      throw this.fail(
        `The zip file for '${fieldName}' is ${formatBytes(source.size)}; the limit is ${formatBytes(limits.maxZipBytes)} per zip. Use fewer or smaller images.`,
      );
    }
    const head = await source.read(0, Math.min(source.size, 16));
    if (!isZip(head)) {
      const imageType = sniffImageType(head);
      const what = imageType ? `a single ${imageType.toUpperCase()} image` : 'not a zip file';
      throw this.fail(
        `The file for '${fieldName}' is ${what}; a zip file is required here. Put the images into a .zip archive and upload that.`,
      );
    }

    let entries: ZipEntryRecord[];
    try {
      entries = await readCentralDirectory(source, ENTRIES_PER_IMAGE * limits.maxImages + EXTRA_ENTRIES);
    } catch (error) {
      if (error instanceof TooManyEntriesError) {
        throw this.fail(
          `The zip file for '${fieldName}' has ${error.entryCount} entries; at most ${error.maxEntries} are read for a zip of up to ${plural(limits.maxImages, 'image')}. Remove the files that are not images.`,
        );
      }
      if (error instanceof ZipFormatError) throw this.unreadable(error.message);
      throw error;
    }

    const candidates: ZipEntryRecord[] = [];
    let declaredTotal = 0;
    for (const entry of entries) {
      if (isSkippedByName(entry.name)) continue;
      if (entry.flags & ENCRYPTED_FLAG) throw this.encrypted(entry.name);
      if (entry.method !== STORED && entry.method !== DEFLATED) {
        throw this.fail(
          `The zip file for '${fieldName}' compresses entry '${entry.name}' with method ${entry.method}, which is not supported. Create the zip with standard (deflate) compression.`,
        );
      }
      // Refused on the declared size, before a byte is inflated.
      if (entry.uncompressedSize > limits.maxEntryBytes) throw this.entryTooLarge(entry.name, entry.uncompressedSize);
      declaredTotal += entry.uncompressedSize;
      if (declaredTotal > limits.maxTotalUncompressedBytes) throw this.totalTooLarge();
      candidates.push(entry);
    }
    return { candidates, skippedByName: entries.length - candidates.length };
  }

  private encrypted(entryName: string): ZipInputError {
    return this.fail(
      `The zip file for '${this.fieldName}' contains an encrypted entry ('${entryName}'); encrypted (password-protected) zips are not supported. Create the zip without a password.`,
    );
  }

  private entryTooLarge(entryName: string, bytes: number): ZipInputError {
    return this.fail(
      `The zip file for '${this.fieldName}' contains entry '${entryName}' of ${formatBytes(bytes)} uncompressed; the limit is ${formatBytes(this.limits.maxEntryBytes)} per file. Remove it or make it smaller.`,
    );
  }

  private totalTooLarge(): ZipInputError {
    return this.fail(
      `The zip file for '${this.fieldName}' expands to more than ${formatBytes(this.limits.maxTotalUncompressedBytes)} uncompressed, the limit per zip. Use fewer or smaller images.`,
    );
  }

  /**
   * The entry's uncompressed bytes, checked against its CRC. Inflation stops at the declared size
   * (at most maxEntryBytes), so a header that lies about the size cannot make it allocate more.
   */
  async inflate(source: ZipSource, entry: ZipEntryRecord): Promise<Buffer> {
    let stored: { localFlags: number; data: Buffer };
    try {
      stored = await readEntryData(source, entry);
    } catch (error) {
      if (error instanceof ZipFormatError) throw this.unreadable(error.message);
      throw error;
    }
    if (stored.localFlags & ENCRYPTED_FLAG) throw this.encrypted(entry.name);

    let bytes: Buffer;
    // Some writers deflate an empty file to no bytes at all, which zlib would call truncated.
    if (entry.method === STORED || stored.data.length === 0) {
      bytes = Buffer.from(stored.data); // a copy, so the result does not pin a larger read buffer
    } else {
      try {
        // zlib needs a cap of at least 1; an empty entry still inflates to 0 bytes.
        bytes = await inflateRaw(stored.data, { maxOutputLength: Math.max(1, entry.uncompressedSize) });
      } catch (error) {
        const reason =
          (error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE'
            ? `entry '${entry.name}' expands beyond the ${formatBytes(entry.uncompressedSize)} its header declares`
            : `the compressed data of entry '${entry.name}' is damaged`;
        throw this.unreadable(reason);
      }
    }
    if (bytes.length !== entry.uncompressedSize) {
      throw this.unreadable(
        `entry '${entry.name}' holds ${formatBytes(bytes.length)}, not the ${formatBytes(entry.uncompressedSize)} its header declares`,
      );
    }
    if (zlib.crc32(bytes) !== entry.crc32) throw this.unreadable(`the checksum (CRC-32) of entry '${entry.name}' does not match`);
    return bytes;
  }

  checkImageCount(images: number): void {
    const { fieldName, limits } = this;
    if (images > limits.maxImages) {
      throw this.fail(
        `The zip file for '${fieldName}' contains more than ${plural(limits.maxImages, 'image')}; at most ${limits.maxImages} are allowed per zip. Split the images over several requests.`,
      );
    }
  }

  checkEnoughImages(images: number): void {
    const { fieldName, limits } = this;
    if (images < limits.minImages) {
      throw this.fail(
        `The zip file for '${fieldName}' contains ${images} usable ${images === 1 ? 'image' : 'images'}; at least ${limits.minImages} ${limits.minImages === 1 ? 'is' : 'are'} required. Add more JPEG or PNG images (hidden files, __MACOSX entries and non-images are skipped).`,
      );
    }
  }
}

/** Images are recognised by content; everything else (nested zips included) is skipped, never opened. */
function isImage(bytes: Buffer): boolean {
  return sniffImageType(bytes) !== null;
}

/**
 * Stores the images of an uploaded zip and returns them in archive order. The whole zip is
 * validated first (every entry inflated once, one at a time, and dropped), so a refused zip leaves
 * the store untouched; then only the image entries are inflated again and stored. `onStored` hears
 * of each image as it lands, so a caller can undo a request that fails later.
 */
export async function storeZipImages(
  zipPath: string,
  fieldName: string,
  limits: ZipLimits,
  store: ImageStore,
  onStored?: (hash: string) => void,
): Promise<{ images: ZipImage[]; skipped: number }> {
  const reader = new ZipReader(fieldName, limits);
  const { source, candidates, skippedByName } = await reader.open(zipPath);
  try {
    const imageEntries: ZipEntryRecord[] = [];
    for (const entry of candidates) {
      if (!isImage(await reader.inflate(source, entry))) continue;
      imageEntries.push(entry);
      reader.checkImageCount(imageEntries.length);
    }
    reader.checkEnoughImages(imageEntries.length);

    const images: ZipImage[] = [];
    for (const entry of imageEntries) {
      const { hash, bytes } = await store.put(await reader.inflate(source, entry));
      onStored?.(hash);
      images.push({ entryName: entry.name, hash, bytes });
    }
    return { images, skipped: skippedByName + candidates.length - imageEntries.length };
  } finally {
    await source.close();
  }
}

/** The images of a small zip (a /v3/classify `images_file`), in memory, under the same checks. */
export async function readZipImages(
  zip: string | Buffer,
  fieldName: string,
  limits: ZipLimits,
): Promise<Array<{ entryName: string; bytes: Buffer }>> {
  const reader = new ZipReader(fieldName, limits);
  const { source, candidates } = await reader.open(zip);
  try {
    const images: Array<{ entryName: string; bytes: Buffer }> = [];
    for (const entry of candidates) {
      const bytes = await reader.inflate(source, entry);
      if (!isImage(bytes)) continue;
      images.push({ entryName: entry.name, bytes });
      reader.checkImageCount(images.length);
    }
    reader.checkEnoughImages(images.length);
    return images;
  } finally {
    await source.close();
  }
}
