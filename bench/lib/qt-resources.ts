import fs from 'node:fs';
import zlib from 'node:zlib';

/** One file of a Qt resource bundle. */
export interface QtResourceFile {
  /** Path inside the bundle, e.g. "gcompris/src/activities/…/resource/x.jpg". */
  path: string;
  read(): Buffer;
}

const COMPRESSED_ZLIB = 0x01;
const DIRECTORY = 0x02;
const COMPRESSED_ZSTD = 0x04;

/**
 * Lists the files of a compiled Qt resource bundle (`.rcc`, format versions 1–3): a header, a tree of
 * nodes, a names table (UTF-16BE) and data blobs, optionally zlib-compressed (qCompress: a 4-byte size,
 * then a zlib stream). Files compressed with zstd are left out (Node has no zstd before 22).
 */
export function readQtResources(file: string): QtResourceFile[] {
  const bytes = fs.readFileSync(file);
  if (bytes.toString('latin1', 0, 4) !== 'qres') throw new Error(`${file}: not a Qt resource bundle`);
  const version = bytes.readUInt32BE(4);
  const tree = bytes.readUInt32BE(8);
  const data = bytes.readUInt32BE(12);
  const names = bytes.readUInt32BE(16);
  if (version < 1 || version > 3) throw new Error(`${file}: rcc format version ${version} is not supported`);
  const nodeSize = version >= 2 ? 22 : 14;
  const nameAt = (offset: number): string => {
    const at = names + offset;
    const length = bytes.readUInt16BE(at);
    const chars = Buffer.from(bytes.subarray(at + 6, at + 6 + 2 * length));
    return chars.swap16().toString('utf16le');
  };
  const files: QtResourceFile[] = [];
  const visit = (node: number, prefix: string): void => {
    const at = tree + node * nodeSize;
    const name = node === 0 ? '' : nameAt(bytes.readUInt32BE(at));
    const flags = bytes.readUInt16BE(at + 4);
    const path = prefix && name ? `${prefix}/${name}` : prefix || name;
    if (flags & DIRECTORY) {
      const count = bytes.readUInt32BE(at + 6);
      const first = bytes.readUInt32BE(at + 10);
      for (let child = first; child < first + count; child += 1) visit(child, path);
      return;
    }
    if (flags & COMPRESSED_ZSTD) return;
    const blob = data + bytes.readUInt32BE(at + 10);
    const size = bytes.readUInt32BE(blob);
    files.push({
      path,
      read: () => {
        const payload = bytes.subarray(blob + 4, blob + 4 + size);
        return flags & COMPRESSED_ZLIB ? zlib.inflateSync(payload.subarray(4)) : Buffer.from(payload);
      },
    });
  };
  visit(0, '');
  return files;
}
