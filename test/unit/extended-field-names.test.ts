import crypto from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { ExtendedFieldNames, multipartBoundary } from '../../src/entry-points/http/extended-field-names';

const BOUNDARY = '----form7MA4YWxkTrZu0gW';

function body(parts: Array<[disposition: string, content: Buffer]>): Buffer {
  return Buffer.concat([
    Buffer.from('preamble\r\n'),
    ...parts.flatMap(([disposition, content]) => [
      Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: ${disposition}\r\n\r\n`, 'latin1'),
      content,
      Buffer.from('\r\n'),
    ]),
    Buffer.from(`--${BOUNDARY}--\r\nepilogue`),
  ]);
}

/** The body through the transform, cut into chunks of `size` bytes (1: every delimiter and header split). */
function through(bytes: Buffer, size: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
  return buffer(Readable.from(chunks).pipe(new ExtendedFieldNames(BOUNDARY)));
}

describe('ExtendedFieldNames', () => {
  // Content that holds a delimiter's beginning, and CRLFs, as zips may.
  const content = Buffer.concat([
    crypto.randomBytes(3000),
    Buffer.from(`\r\n--${BOUNDARY.slice(0, 10)}\r\n\r\n`),
    crypto.randomBytes(3000),
  ]);

  it('passes a body without name* through byte for byte, however it is cut', async () => {
    const plain = body([
      ['form-data; name="a_positive_examples"; filename="a.zip"', content],
      ['form-data; name="name"', Buffer.from('x')],
    ]);
    for (const size of [1, 7, 64, 65536]) expect((await through(plain, size)).equals(plain)).toBe(true);
  });

  it('turns name* into name, in UTF-8, whatever the chunks, leaving every other byte alone', async () => {
    const sent = body([
      ['form-data; name*=utf-8\'\'M%C3%BCll_positive_examples; filename="m\\"x\\".zip"', content],
      ['form-data; name="M?ll"; name*=ISO-8859-1\'\'M%FCll', Buffer.from('y')],
      ['form-data; name="plain"', Buffer.from('z')],
    ]);
    const expected = body(
      [
        ['form-data; filename="m\\"x\\".zip"; name="Müll_positive_examples"', content],
        ['form-data; name="Müll"', Buffer.from('y')],
        ['form-data; name="plain"', Buffer.from('z')],
      ].map(([d, c]) => [Buffer.from(d as string, 'utf8').toString('latin1'), c as Buffer]),
    );
    for (const size of [1, 5, 100, 65536])
      expect((await through(sent, size)).toString('latin1')).toBe(expected.toString('latin1'));
  });

  it('reads the boundary of a Content-Type, quoted or not', () => {
    expect(multipartBoundary(`multipart/form-data; boundary=${BOUNDARY}`)).toBe(BOUNDARY);
    expect(multipartBoundary('multipart/form-data; charset=utf-8; boundary="a b"')).toBe('a b');
    expect(multipartBoundary('application/json')).toBeUndefined();
  });
});
