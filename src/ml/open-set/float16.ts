/** IEEE 754 half precision, for storing unit-vector embeddings at half the size (relative error ≤ 2⁻¹¹). */

const floatView = new Float32Array(1);
const intView = new Uint32Array(floatView.buffer);

/** Rounds to the nearest half (ties to even); overflow becomes ±Infinity, tiny values subnormals or ±0. */
export function toFloat16Bits(value: number): number {
  floatView[0] = value;
  const x = intView[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0); // NaN, ±Infinity
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rounded = (mantissa + half - 1 + ((mantissa >> shift) & 1)) >> shift;
    return sign | rounded;
  }
  const rounded = mantissa + 0xfff + ((mantissa >> 13) & 1);
  if (rounded & 0x800000) return e + 1 >= 0x1f ? sign | 0x7c00 : sign | ((e + 1) << 10);
  return sign | (e << 10) | (rounded >> 13);
}

export function fromFloat16Bits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
let halfToFloat: Float32Array | undefined;

/** Every half's float32 value, computed once (256 KB): decoding is then one lookup per value. */
function halfTable(): Float32Array {
  halfToFloat ??= Float32Array.from({ length: 65536 }, (_, bits) => fromFloat16Bits(bits));
  return halfToFloat;
}

/** Values as little-endian halves. */
export function encodeFloat16(values: ArrayLike<number>): Buffer {
  const halves = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i += 1) halves[i] = toFloat16Bits(values[i]);
  const out = Buffer.from(halves.buffer, halves.byteOffset, halves.byteLength);
  return LITTLE_ENDIAN ? out : out.swap16();
}

/** Little-endian halves back to float32 (exact: every half is a float32). */
export function decodeFloat16(bytes: Buffer, count = bytes.length / 2): Float32Array {
  if (bytes.length < count * 2) throw new RangeError(`${count} halves need ${count * 2} bytes, got ${bytes.length}`);
  const table = halfTable();
  const out = new Float32Array(count);
  if (!LITTLE_ENDIAN) {
    for (let i = 0; i < count; i += 1) out[i] = table[bytes.readUInt16LE(i * 2)];
    return out;
  }
  // An aligned copy (a fresh ArrayBuffer), read as 16-bit words.
  const copy = new Uint8Array(count * 2);
  copy.set(bytes.subarray(0, count * 2));
  const halves = new Uint16Array(copy.buffer);
  for (let i = 0; i < count; i += 1) out[i] = table[halves[i]];
  return out;
}

/** The values rounded to the nearest half, as float32: what encodeFloat16 then decodeFloat16 give. */
export function roundToFloat16(values: Float32Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i += 1) out[i] = table[toFloat16Bits(values[i])];
  return out;
}
