import fc from 'fast-check';
import { applyGate, buildGate, gateDistance, gateDistances, insideGate } from '../../src/ml/heads/knn-gate';
import { seededRandom } from '../../src/ml/heads/random';
import { decodeFloat16, encodeFloat16, fromFloat16Bits, toFloat16Bits } from '../../src/ml/open-set/float16';

function unit(values: number[]): Float32Array {
  const norm = Math.hypot(...values);
  return Float32Array.from(values, (v) => v / norm);
}

describe('float16', () => {
  it('round-trips exactly representable values and rounds others to the nearest half', () => {
    for (const value of [0, 1, -1, 0.5, 65504, -(2 ** -14), 2 ** -24])
      expect(fromFloat16Bits(toFloat16Bits(value))).toBe(value);
    expect(fromFloat16Bits(toFloat16Bits(1 + 2 ** -12))).toBe(1); // tie → even
    expect(fromFloat16Bits(toFloat16Bits(1 + 3 * 2 ** -12))).toBe(1 + 2 ** -10);
    expect(fromFloat16Bits(toFloat16Bits(1e6))).toBe(Infinity);
    expect(Number.isNaN(fromFloat16Bits(toFloat16Bits(NaN)))).toBe(true);
    const values = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 0.1);
    const back = decodeFloat16(encodeFloat16(values));
    values.forEach((v, i) => expect(Math.abs(back[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -25));
  });
});

describe('k-NN gate', () => {
  // Class 0: points around (1, 0, 0); class 1: around (0, 1, 0); one lone positive of class 2.
  const around = (axis: number, spread: number, i: number) =>
    unit([0, 1, 2].map((k) => (k === axis ? 1 : spread * Math.sin(7 * i + k))));
  const embeddings = [
    ...Array.from({ length: 6 }, (_, i) => around(0, 0.1, i)),
    ...Array.from({ length: 6 }, (_, i) => around(1, 0.2, i)),
    around(2, 0, 0),
  ];
  const labels = [0, 1, 2].map((c) =>
    Uint8Array.from(embeddings, (_, i) => (Math.min(2, Math.floor(i / 6)) === c ? 1 : 0)),
  );

  it('sets each radius to the largest leave-one-out k-NN distance of its positives (the pooled floor off)', async () => {
    const gate = await buildGate(embeddings, labels, 3, { k: 3, seed: 1, pooledQuantile: 0 });
    expect(gate.counts).toEqual([6, 6, 1]);
    const stored = (c: number, i: number) => gate.positives.subarray((c * 6 + i) * 3, (c * 6 + i + 1) * 3);
    // Each positive's distance to the others, leaving itself out, is at most the radius, and one reaches it.
    for (const c of [0, 1]) {
      const loo = Array.from({ length: 6 }, (_, i) => {
        const others = Array.from({ length: 6 }, (__, j) => j).filter((j) => j !== i);
        const distances = others
          .map((j) => Math.hypot(...stored(c, i).map((v, k) => v - stored(c, j)[k])))
          .sort((a, b) => a - b);
        return (distances[0] + distances[1] + distances[2]) / 3;
      });
      expect(gate.radius[c]).toBeCloseTo(Math.max(...loo), 5);
    }
    expect(gate.radius[1]).toBeGreaterThan(gate.radius[0]); // the wider class gets the wider radius
    expect(gate.radius[2]).toBe(Infinity); // one positive: no spread to learn a radius from
    // With the pooled floor (the default) a radius is never narrower.
    const pooled = await buildGate(embeddings, labels, 3, { k: 3, seed: 1 });
    pooled.radius.forEach((r, c) => expect(r).toBeGreaterThanOrEqual(gate.radius[c]));
  });

  it('keeps scores below 0.5 as they are, lets near images through and caps far ones below 0.5, lower the farther', async () => {
    const gate = await buildGate(embeddings, labels, 3, { k: 3, seed: 1 });
    const near = around(0, 0.1, 3);
    expect(applyGate(gate, near, [0.9, 0.2, 0.4])).toEqual([0.9, 0.2, 0.4]);
    const far = unit([0.2, 0.2, 1]);
    const farther = unit([-1, 0, 0.1]);
    const [capped] = applyGate(gate, far, [0.9, 0, 0]);
    const [cappedMore] = applyGate(gate, farther, [0.9, 0, 0]);
    expect(capped).toBeLessThan(0.5);
    expect(capped).toBeCloseTo((0.5 * gate.radius[0]) / gateDistance(gate, 0, far), 12);
    expect(cappedMore).toBeLessThan(capped);
    // The lone positive's class has no radius: its scores pass unchanged.
    expect(applyGate(gate, farther, [0, 0, 0.8])[2]).toBe(0.8);
  });

  it('stores at most maxPositives per class, the same ones for the same seed', async () => {
    const a = await buildGate(embeddings, labels, 3, { maxPositives: 4, seed: 5 });
    const b = await buildGate(embeddings, labels, 3, { maxPositives: 4, seed: 5 });
    expect(a.counts).toEqual([4, 4, 1]);
    expect(a.positives).toEqual(b.positives);
  });
});

describe('gateDistances (the batched gate distance)', () => {
  /** `count` unit vectors of `dim` values around `centres` directions (clustered like embeddings). */
  function clustered(count: number, dim: number, spread: number, random: () => number): Float32Array[] {
    const centres = Array.from({ length: 3 }, () => Array.from({ length: dim }, () => random() - 0.5));
    return Array.from({ length: count }, (_, i) => unit(centres[i % 3].map((v) => v + spread * (random() - 0.5))));
  }

  it('equals gateDistance image by image within 1e-5, through the GEMM and for classes of few positives', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 0, max: 30 }),
        fc.integer({ min: 8, max: 96 }),
        fc.double({ min: 0.05, max: 2, noNaN: true }),
        async (seed, positives, images, dim, spread) => {
          const random = seededRandom(seed);
          const embeddings = clustered(positives + 3, dim, spread, random);
          // Class 0: the first `positives`; class 1: the last 3 (fewer than k + the slack: measured directly).
          const labels = [0, 1].map((c) =>
            Uint8Array.from(embeddings, (_, i) => ((i < positives ? 0 : 1) === c ? 1 : 0)),
          );
          const gate = await buildGate(embeddings, labels, dim, { seed, maxPositives: 32 });
          const queries = [...clustered(images, dim, spread, random), ...embeddings.slice(0, 2)];
          const stacked = new Float32Array(queries.length * dim);
          queries.forEach((q, i) => stacked.set(q, i * dim));
          for (const c of [0, 1]) {
            const batched = await gateDistances(gate, c, stacked, queries.length, dim);
            queries.forEach((q, i) => expect(Math.abs(batched[i] - gateDistance(gate, c, q))).toBeLessThan(1e-5));
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('refuses rows that are not m images of dim values, and gives NaN for a class without positives', async () => {
    const random = seededRandom(4);
    const embeddings = clustered(6, 8, 0.3, random);
    const gate = await buildGate(embeddings, [Uint8Array.of(1, 1, 1, 1, 1, 1)], 8, { seed: 1 });
    await expect(gateDistances(gate, 0, new Float32Array(15), 2, 8)).rejects.toThrow(RangeError);
    const empty = { ...gate, counts: [0], positives: new Float32Array(0) };
    expect(Array.from(await gateDistances(empty, 0, new Float32Array(8), 1, 8))).toEqual([NaN]);
  });

  it('decides insideGate: a row is inside a class exactly when its gate distance is within the radius × margin', async () => {
    const random = seededRandom(8);
    const dim = 32;
    const embeddings = clustered(60, dim, 0.6, random);
    const labels = [0, 1].map((c) => Uint8Array.from(embeddings, (_, i) => (i % 2 === c ? 1 : 0)));
    const gate = await buildGate(embeddings, labels, dim, { seed: 2 });
    const rows = clustered(80, dim, 1.2, random);
    const masks = await insideGate(gate, rows, dim, 1, 1.25);
    let inside = 0;
    for (const c of [0, 1]) {
      rows.forEach((row, i) => {
        const d = gateDistance(gate, c, row);
        // Rows within float rounding of the border could go either way; none of these is.
        if (Math.abs(d - 1.25 * gate.radius[c]) > 1e-4) expect(masks[c][i]).toBe(d <= 1.25 * gate.radius[c] ? 1 : 0);
        inside += masks[c][i];
      });
    }
    expect(inside).toBeGreaterThan(0);
    expect(inside).toBeLessThan(160);
  });
});
