/** Small dense linear algebra in double precision (vectors are Float64Arrays), and a float32 transpose. */

export function dot(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let k = 0; k < a.length; k++) sum += a[k] * b[k];
  return sum;
}

/**
 * Eigen-decomposition of a symmetric matrix (cyclic Jacobi rotations).
 * `matrix` is size×size row-major; returns eigenvalues in descending order and
 * the matching eigenvectors.
 */
export function symmetricEigen(matrix: Float64Array, size: number): { values: Float64Array; vectors: Float64Array[] } {
  const a = Float64Array.from(matrix);
  const e = new Float64Array(size * size);
  for (let i = 0; i < size; i++) e[i * size + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let offDiagonal = 0;
    let diagonal = 0;
    for (let p = 0; p < size; p++) {
      diagonal += a[p * size + p] ** 2;
      for (let q = p + 1; q < size; q++) offDiagonal += a[p * size + q] ** 2;
    }
    if (offDiagonal <= 1e-30 * diagonal || offDiagonal === 0) break;
    for (let p = 0; p < size; p++) {
      for (let q = p + 1; q < size; q++) {
        const apq = a[p * size + q];
        if (apq === 0) continue;
        const theta = (a[q * size + q] - a[p * size + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < size; k++) {
          const akp = a[k * size + p];
          const akq = a[k * size + q];
          a[k * size + p] = c * akp - s * akq;
          a[k * size + q] = s * akp + c * akq;
        }
        for (let k = 0; k < size; k++) {
          const apk = a[p * size + k];
          const aqk = a[q * size + k];
          a[p * size + k] = c * apk - s * aqk;
          a[q * size + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < size; k++) {
          const ekp = e[k * size + p];
          const ekq = e[k * size + q];
          e[k * size + p] = c * ekp - s * ekq;
          e[k * size + q] = s * ekp + c * ekq;
        }
      }
    }
  }
  const order = Array.from({ length: size }, (_, i) => i).sort((i, j) => a[j * size + j] - a[i * size + i]);
  return {
    values: Float64Array.from(order, (i) => a[i * size + i]),
    vectors: order.map((i) => Float64Array.from({ length: size }, (_, k) => e[k * size + i])),
  };
}

/** Rows × columns of the transposing copy handled at once: a tile's source and destination stay in L1. */
const TILE = 32;

/** The transpose [cols, rows] of a row-major [rows, cols] matrix, copied tile by tile (cache-friendly). */
export function transpose(matrix: Float32Array, rows: number, cols: number): Float32Array {
  if (matrix.length !== rows * cols) throw new RangeError(`${matrix.length} values are not ${rows} × ${cols}`);
  const out = new Float32Array(rows * cols);
  for (let i0 = 0; i0 < rows; i0 += TILE) {
    const i1 = Math.min(rows, i0 + TILE);
    for (let k0 = 0; k0 < cols; k0 += TILE) {
      const k1 = Math.min(cols, k0 + TILE);
      for (let i = i0; i < i1; i++) {
        const from = i * cols;
        for (let k = k0; k < k1; k++) out[k * rows + i] = matrix[from + k];
      }
    }
  }
  return out;
}
