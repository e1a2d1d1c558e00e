import { promisify } from 'node:util';
import zlib from 'node:zlib';
import yauzl from 'yauzl';

/**
 * Reading zip archives with yauzl: it locates the archive from its end record (so spanning
 * markers such as `PK\x07\x08` or `PK00` before the first entry are no obstacle), reads by
 * position from a file descriptor or a Buffer, reads the central directory one entry at a time,
 * decodes names as UTF-8 or CP437 by the entry's flag, and bounds-checks each entry's data. This
 * module inflates (one call per entry: zlib's streams cost more than the work for small images),
 * and adds what yauzl leaves to its caller: the check that each entry inflates to exactly its
 * declared size, the CRC-32 check, a cap on what one entry may allocate, and messages a user can act
 * on. All limits are the caller's.
 */

/** The archive's structure is broken; the message says where, in words for the uploader. */
export class ZipFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ZipFormatError';
  }
}

/** One central-directory record: what the archive says about an entry. */
export interface ZipEntryRecord {
  /** Decoded by yauzl (UTF-8 when flagged, else CP437); a label only, never a file path. */
  name: string;
  encrypted: boolean;
  /** Compression method: 0 stored, 8 deflate; anything else is unsupported. */
  method: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  /** yauzl's record, needed to read the data. */
  readonly raw: yauzl.Entry;
}

/** yauzl's wording, turned into a reason for the uploader. */
function reasonOf(error: unknown, entryName?: string): string {
  const message = error instanceof Error ? error.message : String(error);
  const entry = entryName === undefined ? 'an entry' : `entry '${entryName}'`;
  if (/end of central directory record signature not found/i.test(message)) {
    return 'no end of central directory record was found (the file is truncated or not a zip)';
  }
  if (/multi-disk/i.test(message))
    return 'it is one part of a split (multi-part) zip; only single-file zips can be read';
  if (/central directory file header signature/i.test(message)) return 'its central directory is damaged';
  if (/local file header signature/i.test(message))
    return `the central directory points to no entry header for '${entryName}'`;
  if (/overflows file bounds|unexpected EOF/i.test(message))
    return `the data of ${entry} runs past the end of the file (the file is truncated or damaged)`;
  if (/size mismatch for stored file/i.test(message)) {
    return 'an uncompressed entry records two different sizes for itself (the file is damaged)';
  }
  if (/Invalid comment length/i.test(message))
    return 'its end record does not match the end of the file (the file is truncated or damaged)';
  return message;
}

/** An opened archive: its entry count (known before the directory is read), its entries, and their data. */
export class ZipArchive {
  private constructor(
    private readonly zip: yauzl.ZipFile,
    /** Entries the end record declares. */
    readonly entryCount: number,
  ) {}

  /** Opens a zip from a file path or a Buffer. Raises ZipFormatError when no archive can be found in it. */
  static async open(source: string | Buffer): Promise<ZipArchive> {
    // decodeStrings off: yauzl would then refuse the whole archive for one name like '../x.jpg'. Names
    // are still decoded by yauzl's own function below, and are only ever used as labels here.
    const options: yauzl.Options = {
      lazyEntries: true,
      autoClose: false,
      decodeStrings: false,
      validateEntrySizes: true,
    };
    const zip = await new Promise<yauzl.ZipFile>((resolve, reject) => {
      const done = (error: Error | null, zipFile?: yauzl.ZipFile) => (error ? reject(error) : resolve(zipFile!));
      if (typeof source === 'string') yauzl.open(source, options, done);
      else yauzl.fromBuffer(source, options, done);
    }).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== undefined) throw error; // a file-system fault, not the archive's
      throw new ZipFormatError(reasonOf(error));
    });
    // An error between reads (a failed close) must not crash the process for want of a listener;
    // errors during a read reach that read's own listener.
    zip.on('error', () => undefined);
    return new ZipArchive(zip, zip.entryCount);
  }

  /** The central directory, one record at a time, in archive order. Raises ZipFormatError if it is damaged. */
  async *entries(): AsyncGenerator<ZipEntryRecord> {
    for (let i = 0; i < this.entryCount; i++) {
      const raw = await new Promise<yauzl.Entry | null>((resolve, reject) => {
        const cleanup = () => {
          this.zip.off('entry', onEntry).off('end', onEnd).off('error', onError);
        };
        const onEntry = (entry: yauzl.Entry) => (cleanup(), resolve(entry));
        const onEnd = () => (cleanup(), resolve(null));
        const onError = (error: Error) => (cleanup(), reject(new ZipFormatError(reasonOf(error))));
        this.zip.on('entry', onEntry).on('end', onEnd).on('error', onError);
        this.zip.readEntry();
      });
      if (raw === null) return;
      const nameBytes = raw.fileName as unknown as Buffer; // a Buffer, since decodeStrings is off
      yield {
        name: yauzl.getFileNameLowLevel(raw.generalPurposeBitFlag, nameBytes, raw.extraFields, false),
        encrypted: raw.isEncrypted(),
        method: raw.compressionMethod,
        crc32: raw.crc32,
        compressedSize: raw.compressedSize,
        uncompressedSize: raw.uncompressedSize,
        raw,
      };
    }
  }

  /**
   * The entry's uncompressed bytes, checked against its declared size and its CRC-32. Inflation stops
   * once it passes the declared size, so a header that lies cannot make it allocate more; the caller
   * refuses declared sizes over its limit before calling this.
   */
  async read(entry: ZipEntryRecord): Promise<Buffer> {
    // Some writers deflate an empty file to no bytes at all, which zlib would call truncated.
    if (entry.compressedSize === 0 && entry.uncompressedSize === 0 && entry.crc32 === 0) return Buffer.alloc(0);
    const stored = await this.readStored(entry);
    const bytes = entry.method === DEFLATED ? await inflateEntry(stored, entry) : stored;
    if (bytes.length > entry.uncompressedSize) throw expandsBeyond(entry);
    if (bytes.length < entry.uncompressedSize) {
      throw new ZipFormatError(
        `entry '${entry.name}' holds ${formatBytes(bytes.length)}, not the ${formatBytes(entry.uncompressedSize)} its header declares`,
      );
    }
    if (zlib.crc32(bytes) !== entry.crc32)
      throw new ZipFormatError(`the checksum (CRC-32) of entry '${entry.name}' does not match`);
    return bytes;
  }

  /** The entry's bytes as stored in the archive (compressed, for a deflated entry), after yauzl's bounds checks. */
  private async readStored(entry: ZipEntryRecord): Promise<Buffer> {
    const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) => {
      this.zip.openReadStream(entry.raw, { decodeFileData: false }, (error, readStream) =>
        error ? reject(error) : resolve(readStream),
      );
    }).catch((error: unknown) => {
      throw new ZipFormatError(reasonOf(error, entry.name));
    });
    return new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
      stream.on('error', (error: Error) => {
        (stream as unknown as { destroy?: () => void }).destroy?.();
        reject(new ZipFormatError(reasonOf(error, entry.name)));
      });
    });
  }

  close(): void {
    this.zip.close();
  }
}

const MB = 1024 * 1024;
const DEFLATED = 8;
/**
 * Entries up to this size inflate on the event loop, in well under a millisecond: for a typical
 * photo a hop to libuv's thread pool costs more than the inflation (bench:upload), and 1,000 of
 * them queue behind each other and behind the image writes. Larger entries inflate in the pool.
 */
const INFLATE_ON_LOOP_BYTES = 256 * 1024;
const inflateRaw = promisify(zlib.inflateRaw);

function expandsBeyond(entry: ZipEntryRecord): ZipFormatError {
  return new ZipFormatError(
    `entry '${entry.name}' expands beyond the ${formatBytes(entry.uncompressedSize)} its header declares`,
  );
}

/** A deflated entry's bytes: at most one byte past its declared size (that byte tells "more" from "exactly"). */
async function inflateEntry(compressed: Buffer, entry: ZipEntryRecord): Promise<Buffer> {
  const options = { maxOutputLength: entry.uncompressedSize + 1 };
  try {
    return entry.uncompressedSize <= INFLATE_ON_LOOP_BYTES
      ? zlib.inflateRawSync(compressed, options)
      : await inflateRaw(compressed, options);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') throw expandsBeyond(entry);
    if (code?.startsWith('Z_')) throw new ZipFormatError(`the compressed data of entry '${entry.name}' is damaged`);
    throw error;
  }
}

/** 1.5 MB, 12 KB, 300 bytes: sizes as a user reads them. */
export function formatBytes(bytes: number): string {
  if (bytes >= MB) return `${Number((bytes / MB).toFixed(1))} MB`;
  if (bytes >= 1024) return `${Number((bytes / 1024).toFixed(1))} KB`;
  return `${bytes} bytes`;
}
