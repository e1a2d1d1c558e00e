/**
 * Int8 vectors with one float32 scale each: how the open-set bank ships its embeddings at a quarter of
 * float32 (3648 + 4 bytes a vector instead of 14592). Each vector v is stored as its scale s = max|vᵢ| / 127
 * (little-endian float32) followed by round(vᵢ / s) as signed bytes, so each value is off by at most s / 2
 * (half a quantisation step; symmetric linear quantisation, as in ONNX Runtime's per-tensor int8).
 */

/** Bytes one vector of `dim` values takes: its float32 scale, then one byte a value. */
export function int8VectorBytes(dim: number): number {
  return 4 + dim;
}

/** The vectors (all of length `dim`) as int8 with a scale each, concatenated. */
export function encodeInt8Vectors(vectors: ArrayLike<number>[], dim: number): Buffer {
  const stride = int8VectorBytes(dim);
  const out = Buffer.alloc(vectors.length * stride);
  vectors.forEach((vector, row) => {
    if (vector.length !== dim) throw new RangeError(`vector ${row} has ${vector.length} values, expected ${dim}`);
    let max = 0;
    for (let i = 0; i < dim; i += 1) max = Math.max(max, Math.abs(vector[i]));
    const scale = max / 127;
    const offset = row * stride;
    out.writeFloatLE(scale, offset);
    if (scale === 0) return;
    for (let i = 0; i < dim; i += 1) out.writeInt8(Math.round(vector[i] / Math.fround(scale)), offset + 4 + i);
  });
  return out;
}

/**
 * encodeInt8Vectors' bytes back to float32, in one buffer of `count × dim` values (row i at i × dim).
 * Throws a RangeError when the byte count is not `count` vectors of `dim`.
 */
export function decodeInt8Vectors(bytes: Buffer, count: number, dim: number): Float32Array {
  const stride = int8VectorBytes(dim);
  if (bytes.length !== count * stride) {
    throw new RangeError(`${count} int8 vectors of ${dim} values need ${count * stride} bytes, got ${bytes.length}`);
  }
  const out = new Float32Array(count * dim);
  const values = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let row = 0; row < count; row += 1) {
    const offset = row * stride;
    const scale = bytes.readFloatLE(offset);
    const base = row * dim;
    for (let i = 0; i < dim; i += 1) out[base + i] = values[offset + 4 + i] * scale;
  }
  return out;
}
