/**
 * What keeps training with the open-set bank cheap, on a generated case that fails without it: the
 * bank's farthest-first (k-centre) order, so a prefix of it keeps every kind of picture, and the
 * training bank cut to that prefix.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { seededRandom } from '../../src/ml/heads/random';
import { farthestFirstOrder } from '../../src/ml/open-set/coreset';
import { encodeInt8Vectors } from '../../src/ml/open-set/int8';
import { BANK_MANIFEST, loadNegativeBank, trainingBank, type BankManifest } from '../../src/ml/open-set/negative-bank';

const DIM = 24;

function unit(values: ArrayLike<number>): Float32Array {
  const norm = Math.hypot(...Array.from(values));
  return Float32Array.from(values, (v) => v / norm);
}

/** A bank of `groups` kinds of picture along their own axes; kind g has `sizes[g]` near-copies. */
function groupedBank(sizes: number[], random: () => number): { rows: Float32Array[]; group: number[] } {
  const rows: Float32Array[] = [];
  const group: number[] = [];
  sizes.forEach((size, g) => {
    for (let i = 0; i < size; i++) {
      rows.push(unit(Array.from({ length: DIM }, (_, k) => (k === g ? 1 : 0.05 * random()))));
      group.push(g);
    }
  });
  return { rows, group };
}

describe("the bank's farthest-first order", () => {
  // Most of the bank is one kind of picture (say, drawings), a few kinds have only a handful each.
  const random = seededRandom(11);
  const sizes = [300, 3, 2, 4, 1, 2, 3, 5];
  const { rows, group } = groupedBank(sizes, random);

  it('is a permutation whose first items cover every kind of picture, where the first rows in file order cover one', async () => {
    const order = await farthestFirstOrder(rows);
    expect([...order].sort((a, b) => a - b)).toEqual(rows.map((_, i) => i));
    const prefix = new Set(order.slice(0, sizes.length).map((i) => group[i]));
    expect(prefix.size).toBe(sizes.length);
    // A plain cut of the same size keeps one kind only: what the order is for.
    expect(new Set(group.slice(0, sizes.length)).size).toBe(1);
  });

  it('is what trainingBank keeps a prefix of, and loadNegativeBank refuses an order that is not a permutation', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bank-order-'));
    try {
      const order = await farthestFirstOrder(rows);
      const manifest: BankManifest = {
        format: 2,
        packKey: 'test@1',
        dim: DIM,
        encoding: 'int8',
        vectors: 'bank.i8',
        photos: rows.map((_, i) => ({
          source: `pkg:${group[i]}/${i}.png`,
          licence: 'CC0-1.0',
          kind: 'drawing',
          topic: `${group[i]}`,
        })),
        synthetic: [],
        coreset: order,
      };
      fs.writeFileSync(path.join(dir, 'bank.i8'), encodeInt8Vectors(rows, DIM));
      fs.writeFileSync(path.join(dir, BANK_MANIFEST), JSON.stringify(manifest));
      const bank = loadNegativeBank('test@1', dir)!;
      const cut = trainingBank(bank, 10);
      expect(cut.embeddings).toHaveLength(10);
      expect(cut.sources).toEqual(order.slice(0, 10).map((i) => bank.sources[i]));
      expect(new Set(cut.sources.map((source) => source.split(/[:/]/)[1])).size).toBe(sizes.length);
      expect(trainingBank(bank, 1000)).toBe(bank);

      fs.writeFileSync(
        path.join(dir, BANK_MANIFEST),
        JSON.stringify({ ...manifest, coreset: [...order.slice(1), 0, 0] }),
      );
      expect(() => loadNegativeBank('test@1', dir)).toThrow(/not a permutation/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
