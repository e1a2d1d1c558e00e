import fs from 'node:fs/promises';
import { isImageFile, sniffImageType } from '../../ml';
import { formatBytes, ZipArchive, ZipFormatError, type ZipEntryRecord } from './zip-archive';

export interface ZipLimits {
  /** Fewest image entries a zip must hold (classify zips; training zips count usable images in the domain). */
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

/** An entry of the zip that is a picture by content (see isImageFile): whether it can be used is decided by decoding it. */
export interface ZipImageEntry {
  /** The entry's path inside the zip: a label only, never used as a file path. */
  entryName: string;
  bytes: Buffer;
}

const STORED = 0;
const DEFLATED = 8;

/**
 * Entries read at most, per image allowed: macOS zips hold a `__MACOSX/._x` twin of every file,
 * plus folders; anything beyond this is not an image set. Checked before the directory is read.
 */
const ENTRIES_PER_IMAGE = 4;
const EXTRA_ENTRIES = 1000;
/** A zip file up to this size is read into memory whole; a larger one is read entry by entry from disk. */
const READ_WHOLE_ZIP_BYTES = 32 * 1024 * 1024;

/** Whether the bytes may be a zip, by content (SDKs name zips `<class>`, `<class>.zip` or `_`): every zip record starts with 'PK'. */
export function isZip(bytes: Buffer): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b;
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

async function sizeAndHead(zip: string | Buffer): Promise<{ size: number; head: Buffer }> {
  if (typeof zip !== 'string') return { size: zip.length, head: zip.subarray(0, 16) };
  const handle = await fs.open(zip, 'r');
  try {
    const { size } = await handle.stat();
    const head = Buffer.alloc(Math.min(size, 16));
    await handle.read(head, 0, head.length, 0);
    return { size, head };
  } finally {
    await handle.close();
  }
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

  private required(what: string): ZipInputError {
    return this.fail(
      `The file for '${this.fieldName}' is ${what}; a zip file is required here. Put the images into a .zip archive and upload that.`,
    );
  }

  /**
   * Calls `onImage` for every entry that is a picture by content, one at a time and in archive order, after
   * checking every limit that the directory alone can tell; returns the archive's entry count.
   */
  async read(zip: string | Buffer, onImage: (image: ZipImageEntry) => Promise<void> | void): Promise<number> {
    const { fieldName, limits } = this;
    const { size, head } = await sizeAndHead(zip);
    if (size === 0) {
      throw this.fail(
        `The file for '${fieldName}' is empty (0 bytes): the file is empty, so there is nothing to read. Attach the zip file itself (with curl: --form "${fieldName}=@images.zip").`,
      );
    }
    if (size > limits.maxZipBytes) {
      throw this.fail(
        `The zip file for '${fieldName}' is ${formatBytes(size)}; the limit is ${formatBytes(limits.maxZipBytes)} per zip. Use fewer or smaller images.`,
      );
    }
    let archive: ZipArchive;
    try {
      // One read instead of two positioned reads per entry through libuv's pool (bench:upload).
      archive = await ZipArchive.open(
        typeof zip === 'string' && size <= READ_WHOLE_ZIP_BYTES ? await fs.readFile(zip) : zip,
      );
    } catch (error) {
      if (!(error instanceof ZipFormatError)) throw error;
      const imageType = sniffImageType(head);
      if (imageType) throw this.required(`a single ${imageType.toUpperCase()} image`);
      if (!isZip(head)) throw this.required('not a zip file');
      throw this.unreadable(error.message);
    }
    try {
      const maxEntries = ENTRIES_PER_IMAGE * limits.maxImages + EXTRA_ENTRIES;
      if (archive.entryCount > maxEntries) {
        throw this.fail(
          `The zip file for '${fieldName}' has ${archive.entryCount} entries; at most ${maxEntries} are read for a zip of up to ${plural(limits.maxImages, 'image')}. Remove the files that are not images.`,
        );
      }
      // The directory is checked whole before any entry is inflated: a refused zip costs no inflation.
      const candidates: ZipEntryRecord[] = [];
      let declaredTotal = 0;
      for await (const entry of archive.entries()) {
        if (isSkippedByName(entry.name)) continue;
        if (entry.encrypted) {
          throw this.fail(
            `The zip file for '${fieldName}' contains an encrypted entry ('${entry.name}'); encrypted (password-protected) zips are not supported. Create the zip without a password.`,
          );
        }
        if (entry.method !== STORED && entry.method !== DEFLATED) {
          throw this.fail(
            `The zip file for '${fieldName}' compresses entry '${entry.name}' with method ${entry.method}, which is not supported. Create the zip with standard (deflate) compression.`,
          );
        }
        if (entry.uncompressedSize > limits.maxEntryBytes) {
          throw this.fail(
            `The zip file for '${fieldName}' contains entry '${entry.name}' of ${formatBytes(entry.uncompressedSize)} uncompressed; the limit is ${formatBytes(limits.maxEntryBytes)} per file. Remove it or make it smaller.`,
          );
        }
        declaredTotal += entry.uncompressedSize;
        if (declaredTotal > limits.maxTotalUncompressedBytes) {
          throw this.fail(
            `The zip file for '${fieldName}' expands to more than ${formatBytes(limits.maxTotalUncompressedBytes)} uncompressed, the limit per zip. Use fewer or smaller images.`,
          );
        }
        candidates.push(entry);
      }
      for (const entry of candidates) {
        const bytes = await archive.read(entry);
        // Nested zips and other non-pictures are skipped, never opened.
        if (isImageFile(bytes)) await onImage({ entryName: entry.name, bytes });
      }
      return archive.entryCount;
    } catch (error) {
      if (error instanceof ZipFormatError) throw this.unreadable(error.message);
      throw error;
    } finally {
      archive.close();
    }
  }
}

/**
 * Reads a training zip: `onImage` hears of each entry that is a picture by content (decodable
 * or not), one at a time, so the caller decides what is usable and memory holds one
 * entry at a time. Raises ZipInputError for a zip that cannot be used at all: empty, not a zip,
 * damaged, encrypted, over a size or entry limit. Returns the number of entries in the archive.
 */
export async function readZipImageEntries(
  zip: string | Buffer,
  fieldName: string,
  limits: ZipLimits,
  onImage: (image: ZipImageEntry) => Promise<void> | void,
): Promise<{ entries: number }> {
  return { entries: await new ZipReader(fieldName, limits).read(zip, onImage) };
}

/**
 * The picture entries of a small zip (a /v3/classify `images_file`), in memory and in
 * archive order, under the same checks; between `minImages` and `maxImages` of them. Each is
 * decoded by the caller, which reports the ones that cannot be.
 */
export async function readZipImages(
  zip: string | Buffer,
  fieldName: string,
  limits: ZipLimits,
): Promise<ZipImageEntry[]> {
  const images: ZipImageEntry[] = [];
  await new ZipReader(fieldName, limits).read(zip, (image) => {
    images.push(image);
    if (images.length > limits.maxImages) {
      throw new ZipInputError(
        fieldName,
        `The zip file for '${fieldName}' contains more than ${plural(limits.maxImages, 'image')}; at most ${limits.maxImages} are allowed per zip. Split the images over several requests.`,
      );
    }
  });
  if (images.length < limits.minImages) {
    throw new ZipInputError(
      fieldName,
      `The zip file for '${fieldName}' contains ${images.length} ${images.length === 1 ? 'image' : 'images'}; at least ${limits.minImages} ${limits.minImages === 1 ? 'is' : 'are'} required. Add JPEG or PNG images (hidden files, __MACOSX entries and non-images are skipped).`,
    );
  }
  return images;
}

/**
 * The entries of an archive the service kept (a pending zip: checked when it was uploaded) whose
 * names are in `names`, in archive order, each inflated and CRC-checked; `onEntry` hears of each. A
 * file up to READ_WHOLE_ZIP_BYTES is read whole, a larger one entry by entry.
 * Returns the names of those whose data no longer reads (skipped).
 * @throws ZipFormatError if the archive's directory is damaged (it was whole when accepted: a disk fault)
 */
export async function readNamedZipEntries(
  zip: string | Buffer,
  names: Set<string>,
  onEntry: (entry: ZipImageEntry) => Promise<void> | void,
): Promise<string[]> {
  const damaged: string[] = [];
  const { size } = typeof zip === 'string' ? await fs.stat(zip) : { size: zip.length };
  const archive = await ZipArchive.open(
    typeof zip === 'string' && size <= READ_WHOLE_ZIP_BYTES ? await fs.readFile(zip) : zip,
  );
  try {
    for await (const entry of archive.entries()) {
      if (!names.has(entry.name)) continue;
      const bytes = await archive.read(entry).catch((error: unknown) => {
        if (!(error instanceof ZipFormatError)) throw error;
        damaged.push(entry.name);
        return undefined;
      });
      if (bytes) await onEntry({ entryName: entry.name, bytes });
    }
    return damaged;
  } finally {
    archive.close();
  }
}
