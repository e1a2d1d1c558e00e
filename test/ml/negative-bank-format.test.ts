import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { encodeFloat16 } from '../../src/ml/open-set/float16';
import { decodeInt8Vectors, encodeInt8Vectors, int8VectorBytes } from '../../src/ml/open-set/int8';
import { BANK_MANIFEST, loadNegativeBank, type BankManifest } from '../../src/ml/open-set/negative-bank';

const unit = (values: number[]): Float32Array => {
  const norm = Math.hypot(...values) || 1;
  return Float32Array.from(values, (v) => v / norm);
};
const vectors = (dim: number) =>
  fc.array(fc.array(fc.float({ min: -1, max: 1, noNaN: true }), { minLength: dim, maxLength: dim }), {
    minLength: 1,
    maxLength: 8,
  });

describe('int8 vectors with a scale each', () => {
  it('round-trips every value within half a quantisation step (max |v| / 254)', () => {
    fc.assert(
      fc.property(vectors(37), (rows) => {
        const decoded = decodeInt8Vectors(encodeInt8Vectors(rows, 37), rows.length, 37);
        rows.forEach((row, r) => {
          const step = Math.max(...row.map(Math.abs)) / 127;
          row.forEach((value, i) => {
            expect(Math.abs(decoded[r * 37 + i] - value)).toBeLessThanOrEqual(
              step / 2 + 1e-6 * Math.abs(value) + 1e-12,
            );
          });
        });
      }),
    );
  });

  it('keeps unit embeddings at cosine ≥ 0.9999 to themselves at the bank dimension (3648)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
        // ReLU-like features: mostly small non-negative values with a few large ones, as the networks' pooled taps.
        let state = seed;
        const next = () => (state = (state * 48271) % 2147483647) / 2147483647;
        const v = unit(Array.from({ length: 3648 }, () => (next() < 0.5 ? 0 : next() ** 4)));
        const back = decodeInt8Vectors(encodeInt8Vectors([v], 3648), 1, 3648);
        let dot = 0;
        for (let i = 0; i < 3648; i += 1) dot += v[i] * back[i];
        expect(dot / Math.hypot(...back)).toBeGreaterThanOrEqual(0.9999);
      }),
      { numRuns: 20 },
    );
  });

  it('stores an all-zero vector as zeros and rejects a byte count that is not whole vectors', () => {
    const bytes = encodeInt8Vectors([new Float32Array(5)], 5);
    expect(bytes).toHaveLength(int8VectorBytes(5));
    expect([...decodeInt8Vectors(bytes, 1, 5)]).toEqual([0, 0, 0, 0, 0]);
    expect(() => decodeInt8Vectors(bytes.subarray(1), 1, 5)).toThrow(RangeError);
    expect(() => encodeInt8Vectors([new Float32Array(4)], 5)).toThrow(RangeError);
  });
});

describe('loadNegativeBank', () => {
  const dim = 6;
  const rows = [unit([1, 2, 0, 0, 0, 1]), unit([0, 0, 3, 1, 0, 0]), unit([1, 0, 0, 0, 5, 0])];
  let dir: string;
  const manifest = (over: Partial<BankManifest> = {}): BankManifest => ({
    format: 2,
    packKey: 'test@1',
    dim,
    encoding: 'int8',
    vectors: 'bank.i8',
    photos: [
      { source: 'pkg-a:cat.jpg', licence: 'CC0-1.0', kind: 'photo', topic: 'animals' },
      { source: 'pkg-b:chart.png', licence: 'BSD-3-Clause', kind: 'figure', topic: 'docs' },
    ],
    synthetic: [[0, 'grey28']],
    ...over,
  });
  const write = (m: BankManifest, bytes: Buffer) => {
    fs.writeFileSync(path.join(dir, BANK_MANIFEST), JSON.stringify(m));
    fs.writeFileSync(path.join(dir, m.vectors), bytes);
  };

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bank-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it.each([
    ['int8', encodeInt8Vectors(rows, dim), 1e-2],
    ['float16', Buffer.concat(rows.map((r) => encodeFloat16(r))), 1e-3],
    ['float32', Buffer.concat(rows.map((r) => Buffer.from(r.buffer))), 1e-7],
  ] as const)(
    'reads %s rows as unit vectors, photos first, then synthetic copies with their original’s source',
    (encoding, bytes, tolerance) => {
      write(manifest({ encoding, vectors: `bank.${encoding}` }), bytes);
      const bank = loadNegativeBank('test@1', dir)!;
      expect(bank.embeddings).toHaveLength(3);
      bank.embeddings.forEach((e, i) => {
        expect(Math.hypot(...e)).toBeCloseTo(1, 6);
        e.forEach((value, j) => expect(Math.abs(value - rows[i][j])).toBeLessThan(tolerance));
      });
      expect(bank.sources).toEqual(['pkg-a:cat.jpg', 'pkg-b:chart.png', 'pkg-a:cat.jpg']);
      expect(bank.variants).toEqual(['original', 'original', 'grey28']);
      expect(bank.packages).toEqual(['pkg-a', 'pkg-b', 'pkg-a']);
      expect(bank.kinds).toEqual(['photo', 'figure', 'photo']);
    },
  );

  it('gives no bank for another pack key, and throws on a bank that is present but broken', () => {
    write(manifest(), encodeInt8Vectors(rows, dim));
    expect(loadNegativeBank('other@1', dir)).toBeUndefined();
    write(manifest(), encodeInt8Vectors(rows.slice(0, 2), dim));
    expect(() => loadNegativeBank('test@1', dir)).toThrow(/expected 3 rows/);
    write(manifest({ synthetic: [[7, 'low48']] }), encodeInt8Vectors(rows, dim));
    expect(() => loadNegativeBank('test@1', dir)).toThrow(/photo 7 of 2/);
    write(
      manifest({ photos: [{ source: 'pkg:x.jpg', licence: 'CC-BY-SA-3.0', kind: 'photo', topic: '' }], synthetic: [] }),
      encodeInt8Vectors(rows.slice(0, 1), dim),
    );
    expect(() => loadNegativeBank('test@1', dir)).toThrow(); // a share-alike image never enters the bank
  });
});
