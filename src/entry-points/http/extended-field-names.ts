import { Transform, type TransformCallback } from 'node:stream';
import { decodeExtended, format, parse } from 'content-disposition';
import { ApiError } from '../../errors';

/** Longer part headers are left as they are (busboy refuses them itself). */
const MAX_HEADER_BYTES = 16 * 1024;
const HEADER_END = Buffer.from('\r\n\r\n');
const CLOSE_DELIMITER = Buffer.from('--');

/** The boundary of a multipart/form-data Content-Type, or undefined. */
export function multipartBoundary(contentType: string | undefined): string | undefined {
  const match = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? '');
  return match?.[1] ?? match?.[2];
}

function unreadableName(detail: string): ApiError {
  return new ApiError(
    400,
    `A form field name sent in RFC 2231 form (name*=) could not be read: ${detail}. ` +
      `Send field names as UTF-8, as name="Müll_positive_examples" or name*=utf-8''M%C3%BCll_positive_examples.`,
  );
}

/**
 * One part's Content-Disposition line (bytes as latin1 characters) with its RFC 2231 `name*`
 * parameter (charset'language'percent-encoded, as some HTTP clients send non-ASCII field names)
 * turned into the plain `name` parameter busboy reads, in UTF-8; `name*` wins over a `name` sent
 * beside it as a fallback (RFC 2231 §4). Other parameters keep their bytes and meaning.
 */
function plainNameLine(line: string): string {
  const colon = line.indexOf(':');
  let disposition;
  try {
    // Unextended: the other parameters stay as busboy would read them (quoted-string escapes included).
    disposition = parse(line.slice(colon + 1).trim(), { extended: false });
  } catch {
    throw unreadableName(`the part header '${line.slice(0, 200)}' is malformed`);
  }
  const extended = disposition.parameters['name*'];
  if (extended === undefined) return line;
  const name = decodeExtended(extended);
  if (name === undefined)
    throw unreadableName(
      `'${extended.slice(0, 100)}' is not UTF-8 or ISO-8859-1 in the form charset'language'percent-encoded-name`,
    );
  delete disposition.parameters['name*'];
  disposition.parameters.name = Buffer.from(name, 'utf8').toString('latin1');
  return `${line.slice(0, colon)}: ${format(disposition)}`;
}

function rewriteHeader(block: Buffer): Buffer {
  const text = block.toString('latin1');
  if (!/name\*/i.test(text)) return block;
  const lines = text.split('\r\n').map((line) => (/^content-disposition\s*:/i.test(line) ? plainNameLine(line) : line));
  return Buffer.from(lines.join('\r\n'), 'latin1');
}

/**
 * Rewrites, in a multipart/form-data body on its way to busboy, the part headers that name their
 * field only or also in RFC 2231 form (`name*=utf-8''M%C3%BCll_positive_examples`): busboy decodes
 * `filename*` but takes a field's name from `name` alone, so such a field would arrive nameless or
 * under its ASCII fallback (`M?ll`). Everything else passes through unchanged. An undecodable name
 * fails the stream with a 400 saying how to send it.
 */
export class ExtendedFieldNames extends Transform {
  private readonly delimiter: Buffer;
  /** Bytes not yet passed on: the end of the body seen so far, or a part header still arriving. */
  private pending: Buffer;
  private inHeader = false;
  private done = false;
  /** The CRLF put in front of the body so that the first delimiter looks like every other one. */
  private leadingBytesToDrop = 2;

  constructor(boundary: string) {
    super();
    this.delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
    this.pending = Buffer.from('\r\n');
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.pending = Buffer.concat([this.pending, chunk]);
      this.scan();
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    this.pass(this.pending);
    callback();
  }

  private scan(): void {
    while (!this.done) {
      if (this.inHeader) {
        if (this.pending.length < CLOSE_DELIMITER.length) return;
        if (this.pending.subarray(0, CLOSE_DELIMITER.length).equals(CLOSE_DELIMITER)) {
          this.done = true; // the close delimiter: the rest is the epilogue
          break;
        }
        const end = this.pending.indexOf(HEADER_END);
        if (end < 0) {
          if (this.pending.length > MAX_HEADER_BYTES) this.inHeader = false;
          return;
        }
        this.pass(rewriteHeader(this.pending.subarray(0, end + HEADER_END.length)));
        this.pending = this.pending.subarray(end + HEADER_END.length);
        this.inHeader = false;
        continue;
      }
      const at = this.pending.indexOf(this.delimiter);
      if (at < 0) {
        // Keep what could be the start of a delimiter split across chunks.
        const keep = Math.min(this.pending.length, this.delimiter.length - 1);
        this.pass(this.pending.subarray(0, this.pending.length - keep));
        this.pending = this.pending.subarray(this.pending.length - keep);
        return;
      }
      this.pass(this.pending.subarray(0, at + this.delimiter.length));
      this.pending = this.pending.subarray(at + this.delimiter.length);
      this.inHeader = true;
    }
    this.pass(this.pending);
    this.pending = Buffer.alloc(0);
  }

  private pass(bytes: Buffer): void {
    const drop = Math.min(this.leadingBytesToDrop, bytes.length);
    this.leadingBytesToDrop -= drop;
    if (bytes.length > drop) this.push(bytes.subarray(drop));
  }
}
