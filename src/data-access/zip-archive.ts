import fs from 'node:fs/promises';

/**
 * A minimal reader of the zip format (PKWARE APPNOTE 6.3): the end record, the central directory
 * and each entry's compressed bytes, every offset and length checked against the archive before
 * use. It only locates bytes; inflating and all limits are the caller's. It reads by position,
 * so an archive on disk is never loaded whole, and entries are small plain records: a directory
 * of tens of thousands of entries costs a few MB (adm-zip needs about 10 KB per entry).
 */

const LOCAL_HEADER_SIGNATURE = 0x04034b50;
const CENTRAL_HEADER_SIGNATURE = 0x02014b50;
const END_SIGNATURE = 0x06054b50;
const ZIP64_END_SIGNATURE = 0x06064b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const LOCAL_HEADER_BYTES = 30;
const CENTRAL_HEADER_BYTES = 46;
const END_BYTES = 22;
const ZIP64_LOCATOR_BYTES = 20;
const ZIP64_END_BYTES = 56;
const MAX_COMMENT_BYTES = 0xffff;
const ZIP64_EXTRA_ID = 0x0001;
const ZIP64_MARK_32 = 0xffffffff;

/** The archive's structure is broken; the message says where. */
export class ZipFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ZipFormatError';
  }
}

/** More entries than the caller accepts; raised before the directory is read. */
export class TooManyEntriesError extends Error {
  constructor(
    readonly entryCount: number,
    readonly maxEntries: number,
  ) {
    super(`the zip has ${entryCount} entries; at most ${maxEntries} are read`);
    this.name = 'TooManyEntriesError';
  }
}

/** Random access to the archive's bytes: a Buffer in memory, or a file read by position. */
export interface ZipSource {
  readonly size: number;
  /** Exactly `length` bytes from `position`; the caller keeps the range inside `size`. */
  read(position: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

export function bufferSource(bytes: Buffer): ZipSource {
  return {
    size: bytes.length,
    read: async (position, length) => bytes.subarray(position, position + length),
    close: async () => {},
  };
}

export async function openFileSource(file: string): Promise<ZipSource> {
  const handle = await fs.open(file, 'r');
  try {
    const { size } = await handle.stat();
    return {
      size,
      read: async (position, length) => {
        const buffer = Buffer.alloc(length);
        let filled = 0;
        while (filled < length) {
          const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled);
          if (bytesRead === 0) throw new ZipFormatError(`the file ended at ${position + filled} bytes while reading it`);
          filled += bytesRead;
        }
        return buffer;
      },
      close: () => handle.close(),
    };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** One central-directory record: what the archive says about an entry. */
export interface ZipEntryRecord {
  name: string;
  /** General-purpose bit flags (bit 0: encrypted). */
  flags: number;
  /** Compression method: 0 stored, 8 deflate; anything else is unsupported here. */
  method: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
}

interface EndRecord {
  entryCount: number;
  directoryOffset: number;
  directorySize: number;
  /** Where the directory must end: the start of the end records. */
  directoryLimit: number;
}

function toSafeNumber(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipFormatError(`its ${what} is impossibly large`);
  return Number(value);
}

async function readEndRecord(source: ZipSource): Promise<EndRecord> {
  if (source.size < END_BYTES) throw new ZipFormatError('it is too short to be a zip (no end of central directory record)');
  const tailLength = Math.min(source.size, END_BYTES + MAX_COMMENT_BYTES);
  const tailStart = source.size - tailLength;
  const tail = await source.read(tailStart, tailLength);
  let at = -1;
  for (let i = tail.length - END_BYTES; i >= 0; i--) {
    if (tail.readUInt32LE(i) === END_SIGNATURE && i + END_BYTES + tail.readUInt16LE(i + 20) <= tail.length) {
      at = i;
      break;
    }
  }
  if (at < 0) throw new ZipFormatError('no end of central directory record was found (the file is truncated or not a zip)');

  const endOffset = tailStart + at;
  const disk = tail.readUInt16LE(at + 4);
  const directoryDisk = tail.readUInt16LE(at + 6);
  const entriesOnDisk = tail.readUInt16LE(at + 8);
  let entryCount = tail.readUInt16LE(at + 10);
  let directorySize = tail.readUInt32LE(at + 12);
  let directoryOffset = tail.readUInt32LE(at + 16);
  let directoryLimit = endOffset;

  const locatorOffset = endOffset - ZIP64_LOCATOR_BYTES;
  const locator = locatorOffset >= 0 ? await source.read(locatorOffset, ZIP64_LOCATOR_BYTES) : null;
  if (locator && locator.readUInt32LE(0) === ZIP64_LOCATOR_SIGNATURE) {
    const zip64EndOffset = toSafeNumber(locator.readBigUInt64LE(8), 'zip64 end record offset');
    if (zip64EndOffset + ZIP64_END_BYTES > locatorOffset) throw new ZipFormatError('its zip64 end record points outside the file');
    const zip64End = await source.read(zip64EndOffset, ZIP64_END_BYTES);
    if (zip64End.readUInt32LE(0) !== ZIP64_END_SIGNATURE) throw new ZipFormatError('its zip64 end record is damaged');
    entryCount = toSafeNumber(zip64End.readBigUInt64LE(32), 'entry count');
    directorySize = toSafeNumber(zip64End.readBigUInt64LE(40), 'central directory size');
    directoryOffset = toSafeNumber(zip64End.readBigUInt64LE(48), 'central directory offset');
    directoryLimit = zip64EndOffset;
  } else if (disk !== 0 || directoryDisk !== 0 || entriesOnDisk !== entryCount) {
    throw new ZipFormatError('it is one part of a split (multi-part) zip; only single-file zips can be read');
  }

  if (directoryOffset + directorySize > directoryLimit) {
    throw new ZipFormatError('its central directory points outside the file (the file is truncated or damaged)');
  }
  return { entryCount, directoryOffset, directorySize, directoryLimit };
}

/** Sizes and offset may be 0xffffffff in the record, the real values then sit in the zip64 extra field. */
function applyZip64Extra(entry: ZipEntryRecord, extra: Buffer): void {
  let at = 0;
  while (at + 4 <= extra.length) {
    const id = extra.readUInt16LE(at);
    const length = extra.readUInt16LE(at + 2);
    const body = extra.subarray(at + 4, at + 4 + length);
    at += 4 + length;
    if (id !== ZIP64_EXTRA_ID) continue;
    let field = 0;
    const next = (what: string): number => {
      if (field + 8 > body.length) throw new ZipFormatError(`the zip64 field of entry '${entry.name}' is too short`);
      const value = toSafeNumber(body.readBigUInt64LE(field), what);
      field += 8;
      return value;
    };
    if (entry.uncompressedSize === ZIP64_MARK_32) entry.uncompressedSize = next('uncompressed size');
    if (entry.compressedSize === ZIP64_MARK_32) entry.compressedSize = next('compressed size');
    if (entry.localHeaderOffset === ZIP64_MARK_32) entry.localHeaderOffset = next('entry offset');
    return;
  }
}

/**
 * Reads the central directory. Refuses more than `maxEntries` entries before reading the
 * directory itself, so an archive of a million empty entries costs nothing.
 */
export async function readCentralDirectory(source: ZipSource, maxEntries: number): Promise<ZipEntryRecord[]> {
  const end = await readEndRecord(source);
  if (end.entryCount > maxEntries) throw new TooManyEntriesError(end.entryCount, maxEntries);
  if (end.entryCount * CENTRAL_HEADER_BYTES > end.directorySize) {
    throw new ZipFormatError(`its central directory is too small for the ${end.entryCount} entries it declares`);
  }
  const directory = await source.read(end.directoryOffset, end.directorySize);
  const entries: ZipEntryRecord[] = [];
  let at = 0;
  for (let i = 0; i < end.entryCount; i++) {
    if (at + CENTRAL_HEADER_BYTES > directory.length || directory.readUInt32LE(at) !== CENTRAL_HEADER_SIGNATURE) {
      throw new ZipFormatError(`its central directory is damaged at entry ${i + 1} of ${end.entryCount}`);
    }
    const nameLength = directory.readUInt16LE(at + 28);
    const extraLength = directory.readUInt16LE(at + 30);
    const commentLength = directory.readUInt16LE(at + 32);
    const nameStart = at + CENTRAL_HEADER_BYTES;
    const recordEnd = nameStart + nameLength + extraLength + commentLength;
    if (recordEnd > directory.length) {
      throw new ZipFormatError(`its central directory is damaged at entry ${i + 1} of ${end.entryCount}`);
    }
    const entry: ZipEntryRecord = {
      name: directory.toString('utf8', nameStart, nameStart + nameLength),
      flags: directory.readUInt16LE(at + 8),
      method: directory.readUInt16LE(at + 10),
      crc32: directory.readUInt32LE(at + 16),
      compressedSize: directory.readUInt32LE(at + 20),
      uncompressedSize: directory.readUInt32LE(at + 24),
      localHeaderOffset: directory.readUInt32LE(at + 42),
    };
    applyZip64Extra(entry, directory.subarray(nameStart + nameLength, nameStart + nameLength + extraLength));
    entries.push(entry);
    at = recordEnd;
  }
  return entries;
}

/** The entry's stored bytes (still compressed) and the flags of its local header. */
export async function readEntryData(source: ZipSource, entry: ZipEntryRecord): Promise<{ localFlags: number; data: Buffer }> {
  const { localHeaderOffset: offset } = entry;
  if (offset + LOCAL_HEADER_BYTES > source.size) {
    throw new ZipFormatError(`entry '${entry.name}' points outside the file (the file is truncated or damaged)`);
  }
  const header = await source.read(offset, LOCAL_HEADER_BYTES);
  if (header.readUInt32LE(0) !== LOCAL_HEADER_SIGNATURE) {
    throw new ZipFormatError(`the central directory points to no entry header for '${entry.name}'`);
  }
  const dataStart = offset + LOCAL_HEADER_BYTES + header.readUInt16LE(26) + header.readUInt16LE(28);
  if (dataStart + entry.compressedSize > source.size) {
    throw new ZipFormatError(`the data of entry '${entry.name}' runs past the end of the file (the file is truncated)`);
  }
  return { localFlags: header.readUInt16LE(6), data: await source.read(dataStart, entry.compressedSize) };
}
