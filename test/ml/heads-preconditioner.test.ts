import fc from 'fast-check';
import { symmetricEigen, transpose } from '../../src/ml/heads/linear-algebra';
import { precondition } from '../../src/ml/heads/preconditioner';
import { seededRandom } from '../../src/ml/heads/random';

describe('linear algebra helpers', () => {
  it('eigen-decomposes a symmetric matrix, largest eigenvalue first', () => {
    // [[2,1],[1,2]] has eigenvalues 3 and 1 with eigenvectors (1,1)/√2 and (1,−1)/√2.
    const { values, vectors } = symmetricEigen(Float64Array.of(2, 1, 1, 2), 2);
    expect(values[0]).toBeCloseTo(3, 12);
    expect(values[1]).toBeCloseTo(1, 12);
    expect(Math.abs(vectors[0][0])).toBeCloseTo(Math.SQRT1_2, 12);
    expect(vectors[0][0] * vectors[0][1]).toBeGreaterThan(0);
    expect(vectors[1][0] * vectors[1][1]).toBeLessThan(0);
  });

  it('reconstructs a random symmetric matrix from its eigen-decomposition', () => {
    const size = 12;
    const random = seededRandom(3);
    const m = new Float64Array(size * size);
    for (let i = 0; i < size; i++) for (let j = i; j < size; j++) m[i * size + j] = m[j * size + i] = random() - 0.5;
    const { values, vectors } = symmetricEigen(m, size);
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        const rebuilt = values.reduce((sum, value, r) => sum + value * vectors[r][i] * vectors[r][j], 0);
        expect(rebuilt).toBeCloseTo(m[i * size + j], 10);
      }
    }
    for (let r = 1; r < size; r++) expect(values[r]).toBeLessThanOrEqual(values[r - 1]);
  });
});

describe('transpose', () => {
  it('puts every value of a rows × cols matrix at [col, row], for shapes around and across its tiles', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 70 }), (rows, cols) => {
        const matrix = Float32Array.from({ length: rows * cols }, (_, at) => at);
        const out = transpose(matrix, rows, cols);
        for (let i = 0; i < rows; i++) for (let k = 0; k < cols; k++) expect(out[k * rows + i]).toBe(i * cols + k);
      }),
    );
    expect(() => transpose(new Float32Array(5), 2, 3)).toThrow(RangeError);
  });
});

describe('preconditioner', () => {
  /** Centred features with a few strong directions, like embeddings. */
  function features(rows: number, dim: number): Float32Array {
    const random = seededRandom(rows);
    const x = new Float32Array(rows * dim);
    for (let i = 0; i < rows; i++) {
      const strong = [random() - 0.5, random() - 0.5, random() - 0.5];
      for (let k = 0; k < dim; k++) x[i * dim + k] = strong[k % 3] * (k < 30 ? 1 : 0.01) + 0.001 * (random() - 0.5);
    }
    const mean = new Float64Array(dim);
    for (let i = 0; i < rows; i++) for (let k = 0; k < dim; k++) mean[k] += x[i * dim + k] / rows;
    for (let i = 0; i < rows; i++) for (let k = 0; k < dim; k++) x[i * dim + k] -= mean[k];
    return x;
  }

  it.each([
    ['few examples: coordinates in their span', 25, 25],
    ['many examples: top directions shrunk', 300, 96],
  ])('keeps decisions and the penalty of the original weights: %s', async (_, rows, trainedDim) => {
    const dim = 96;
    const x = features(rows, dim);
    const problem = await precondition(x, rows, dim, 0.001, 1, 1);
    expect(problem.dim).toBeLessThanOrEqual(trainedDim);
    expect(problem.dim).toBeGreaterThan(trainedDim - 2);
    const { directions, scales, transposed } = problem;
    const trained = problem.features;
    const k = scales.length;
    // The strongest direction is shrunk the most: its penalty factor is far below 1.
    expect(Math.min(...scales)).toBeLessThan(0.3);
    for (let i = 0; i < rows; i++)
      for (let c = 0; c < problem.dim; c++) expect(transposed[c * rows + i]).toBe(trained[i * problem.dim + c]);

    const random = seededRandom(9);
    const u = Float64Array.from({ length: problem.dim }, () => random() - 0.5);
    const w = problem.weightsFor(u);
    expect(w).toHaveLength(dim);
    // P·u = u − V·t + V·(scales ⊙ t), t = Vᵀu.
    const t = new Float64Array(k);
    for (let c = 0; c < problem.dim; c++) for (let r = 0; r < k; r++) t[r] += directions[c * k + r] * u[c];
    const pu = Float64Array.from(u);
    for (let c = 0; c < problem.dim; c++)
      for (let r = 0; r < k; r++) pu[c] += directions[c * k + r] * (scales[r] - 1) * t[r];
    // features·(P·u) = X·w for every example.
    for (let i = 0; i < rows; i++) {
      let decision = 0;
      let original = 0;
      for (let c = 0; c < problem.dim; c++) decision += trained[i * problem.dim + c] * pu[c];
      for (let c = 0; c < dim; c++) original += x[i * dim + c] * w[c];
      expect(decision).toBeCloseTo(original, 4);
    }
    // ‖u − V·Vᵀu‖² + Σ scales_r²·(v_rᵀu)² = ‖w‖².
    let penalty = 0;
    for (let c = 0; c < problem.dim; c++) {
      let rest = u[c];
      for (let r = 0; r < k; r++) rest -= directions[c * k + r] * t[r];
      penalty += rest * rest;
    }
    for (let r = 0; r < k; r++) penalty += scales[r] ** 2 * t[r] * t[r];
    expect(penalty).toBeCloseTo(
      w.reduce((sum, v) => sum + v * v, 0),
      3,
    );
  });
});
