import { applyGate, buildGate, gateDistance } from '../../src/ml/heads/knn-gate';
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
