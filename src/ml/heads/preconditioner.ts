import * as ort from 'onnxruntime-node';
import { OnnxGraphBuilder } from '../onnx/onnx-graph-builder';
import { symmetricEigen, transpose } from './linear-algebra';
import { cachedSession } from './onnx-session';
import { seededRandom } from './random';

/**
 * Backbone embeddings vary mostly along a few directions, so the logistic
 * problems are badly conditioned: with the weak regularisation that suits them,
 * the Hessian's largest and smallest eigenvalues differ by 10³–10⁴ and L-BFGS
 * needs hundreds of rounds. Substituting w = P·u, where P shrinks the top
 * principal directions of the features by √(l2 / h) (h: approximate Hessian
 * eigenvalue along the direction), leaves a problem with the same solution and
 * a much flatter spectrum: 40–60 rounds instead of hundreds.
 *
 * With few examples the weights live in the span of the examples, so training
 * happens in that span's coordinates (at most one per example) instead of in
 * all embedding dimensions.
 */
export interface ConditionedProblem {
  /** Features [rows, dim] row-major: the centred embeddings, or their coordinates in the examples' span. */
  features: Float32Array;
  /** The same features transposed, [dim, rows] row-major (logistic-graph.ts reads both). */
  transposed: Float32Array;
  dim: number;
  /**
   * The substitution: models are trained in coordinates u whose weights on `features` are
   * P·u, P = I + V·diag(scales − 1)·Vᵀ, V = directions, [dim, k] row-major with orthonormal columns.
   * The L2 penalty in u: ½·l2·(‖u − V·Vᵀu‖² + Σ scales_i²·(v_iᵀu)²).
   */
  directions: Float32Array;
  scales: Float32Array;
  /** Weights on the centred embedding for trained coordinates u (without the bias). */
  weightsFor(u: Float64Array): Float64Array;
}

/** Directions flattened; beyond this the spectrum of real embeddings is already below typical l2. */
const RANK = 64;
const OVERSAMPLING = 16;
/** Up to this many examples, train in the span of the examples (its eigen-decomposition is cheap). */
const SMALL_SET = RANK + OVERSAMPLING;
/**
 * Log-loss curvature σ(z)·(1 − σ(z)) assumed per example (sample weights average 1).
 * It is 0.25 at z = 0, but at the solution most examples are classified
 * confidently and contribute far less. 0.01 took the fewest rounds on real
 * embeddings (Fashion-MNIST, 1,500 and 10,000 examples) and synthetic ones
 * before the open-set bank; with the bank's real pictures in every training
 * (most far from every class, so confidently negative), 0.003 takes fewer: 40
 * synthetic examples + the 2,602-item bank, slowest model 124 → 76 rounds and
 * loss evaluations 1,320 → 993; 10,000 examples, slowest model 155 → 67 rounds
 * (2026-12-07, in a trial with warm-started fold models, since dropped).
 * bench:train compares it with 0.01 in every run.
 */
export const ASSUMED_CURVATURE = 0.003;
/** Eigenvalues below this share of the largest are rounding noise (float32 features). */
const NEGLIGIBLE = 1e-12;

export async function precondition(
  features: Float32Array,
  rows: number,
  dim: number,
  l2: number,
  seed: number,
  threads: number,
  curvature = ASSUMED_CURVATURE,
): Promise<ConditionedProblem> {
  return rows <= SMALL_SET
    ? inSpanOfExamples(features, rows, dim, l2, curvature)
    : await shrinkTopDirections(features, rows, dim, l2, seed, threads, curvature);
}

/** √(l2 / h) for each covariance eigenvalue: the factor that flattens the Hessian along its direction. */
function flatteningScales(eigenvalues: ArrayLike<number>, l2: number, curvature: number): Float64Array {
  return Float64Array.from(eigenvalues, (value) => Math.sqrt(l2 / (curvature * Math.max(0, value) + l2)));
}

/**
 * Few examples: from the eigen-decomposition X·Xᵀ = U·Λ·Uᵀ, the coordinates of
 * example i along the principal directions are U_ir·√Λ_r (directions
 * Xᵀ·U_r / √Λ_r). P scales coordinate r by its flattening factor c_r (V = I),
 * so the penalty on coordinate r is l2·c_r².
 */
function inSpanOfExamples(
  features: Float32Array,
  rows: number,
  dim: number,
  l2: number,
  curvature: number,
): ConditionedProblem {
  const gram = new Float64Array(rows * rows);
  for (let i = 0; i < rows; i++) {
    const xi = features.subarray(i * dim, (i + 1) * dim);
    for (let j = i; j < rows; j++) {
      const xj = features.subarray(j * dim, (j + 1) * dim);
      let sum = 0;
      for (let k = 0; k < dim; k++) sum += xi[k] * xj[k];
      gram[i * rows + j] = gram[j * rows + i] = sum;
    }
  }
  const { values, vectors } = symmetricEigen(gram, rows);
  const rank = Math.max(1, values.filter((value) => value > NEGLIGIBLE * values[0]).length);
  const scales = flatteningScales(values.subarray(0, rank), l2, curvature);
  const coordinates = new Float32Array(rows * rank);
  for (let i = 0; i < rows; i++) {
    for (let r = 0; r < rank; r++) coordinates[i * rank + r] = vectors[r][i] * Math.sqrt(Math.max(0, values[r]));
  }
  const identity = new Float32Array(rank * rank);
  for (let r = 0; r < rank; r++) identity[r * rank + r] = 1;
  return {
    features: coordinates,
    transposed: transpose(coordinates, rows, rank),
    dim: rank,
    directions: identity,
    scales: Float32Array.from(scales),
    weightsFor(u) {
      const perExample = new Float64Array(rows);
      for (let r = 0; r < rank; r++) {
        if (!(values[r] > 0)) continue;
        const coefficient = (scales[r] / Math.sqrt(values[r])) * u[r];
        for (let i = 0; i < rows; i++) perExample[i] += vectors[r][i] * coefficient;
      }
      const w = new Float64Array(dim);
      for (let i = 0; i < rows; i++) {
        const a = perExample[i];
        const offset = i * dim;
        for (let k = 0; k < dim; k++) w[k] += a * features[offset + k];
      }
      return w;
    },
  };
}

/** Xᵀ·(X·Q): the (unnormalised) covariance applied to a block of vectors; XT = Xᵀ given, so no product transposes. */
function buildGramProductModel(): Uint8Array {
  const g = new OnnxGraphBuilder('gram_product');
  const x = g.input('X', ['n', 'd']);
  const xt = g.input('XT', ['d', 'n']);
  const q = g.input('Q', ['d', 's']);
  g.node('MatMul', [xt, g.node('MatMul', [x, q])], {}, 'XtXQ');
  g.output('XtXQ', ['d', 's']);
  return g.toBuffer();
}

/** A·B, or Aᵀ·B with `transposeA`. */
function buildProductModel(transposeA: boolean): () => Uint8Array {
  return () => {
    const g = new OnnxGraphBuilder('product');
    const a = g.input('A', transposeA ? ['k', 'm'] : ['m', 'k']);
    const b = g.input('B', ['k', 'n']);
    g.node('Gemm', [a, b], { transA: transposeA ? 1 : 0 }, 'C');
    g.output('C', ['m', 'n']);
    return g.toBuffer();
  };
}

/** Matrices are row-major Float32Arrays with their shapes. */
interface Matrix {
  data: Float32Array;
  rows: number;
  cols: number;
}

/**
 * Many examples: find the top principal directions V by one step of randomised
 * subspace iteration plus Rayleigh–Ritz, and use P = I + V·diag(c − 1)·Vᵀ,
 * c = flattening factors. The heavy products run in onnxruntime. Memory: the transposed
 * features (rows × dim float32) beside the caller's.
 */
async function shrinkTopDirections(
  features: Float32Array,
  rows: number,
  dim: number,
  l2: number,
  seed: number,
  threads: number,
  curvature: number,
): Promise<ConditionedProblem> {
  const [gramSession, productSession, transposedProductSession] = await Promise.all([
    cachedSession('gram-product', threads, buildGramProductModel),
    cachedSession('product', threads, buildProductModel(false)),
    cachedSession('transposed-product', threads, buildProductModel(true)),
  ]);
  const transposed = transpose(features, rows, dim);
  const x = new ort.Tensor('float32', features, [rows, dim]);
  const xt = new ort.Tensor('float32', transposed, [dim, rows]);
  const tensor = (m: Matrix) => new ort.Tensor('float32', m.data, [m.rows, m.cols]);
  const gramProduct = async (q: Matrix): Promise<Matrix> => {
    const out = await gramSession.run({ X: x, XT: xt, Q: tensor(q) });
    return { data: out.XtXQ.data as Float32Array, rows: dim, cols: q.cols };
  };
  const product = async (a: Matrix, b: Matrix, transposeA = false): Promise<Matrix> => {
    const out = await (transposeA ? transposedProductSession : productSession).run({ A: tensor(a), B: tensor(b) });
    return { data: out.C.data as Float32Array, rows: transposeA ? a.cols : a.rows, cols: b.cols };
  };
  const orthonormalize = async (q: Matrix): Promise<Matrix> =>
    product(q, { data: orthonormalizer(q), rows: q.cols, cols: q.cols });

  // Random ±1 start; columns of C·Ω lean towards the dominant directions.
  const sketch = Math.min(RANK + OVERSAMPLING, dim);
  const random = seededRandom(seed ^ 0x5bd1e995);
  const start = Float32Array.from({ length: dim * sketch }, () => (random() < 0.5 ? -1 : 1));
  // Twice: the first pass leaves float32 rounding that the second removes.
  const basis = await orthonormalize(await orthonormalize(await gramProduct({ data: start, rows: dim, cols: sketch })));

  // Rayleigh–Ritz: the covariance restricted to the basis, B = Qᵀ·C·Q, eigen-decomposed.
  const restricted = await product(basis, await gramProduct(basis), true);
  const b = new Float64Array(sketch * sketch);
  for (let i = 0; i < sketch; i++) {
    for (let j = i; j < sketch; j++)
      b[i * sketch + j] = b[j * sketch + i] = (restricted.data[i * sketch + j] + restricted.data[j * sketch + i]) / 2;
  }
  const { values, vectors } = symmetricEigen(b, sketch);
  const rank = Math.min(RANK, sketch);
  const rotation = new Float32Array(sketch * rank);
  for (let i = 0; i < sketch; i++) for (let r = 0; r < rank; r++) rotation[i * rank + r] = vectors[r][i];
  const directions = (await product(basis, { data: rotation, rows: sketch, cols: rank })).data;

  const scales = flatteningScales(values.subarray(0, rank), l2, curvature);
  return {
    features,
    transposed,
    dim,
    directions,
    scales: Float32Array.from(scales),
    weightsFor(u) {
      // w = P·u = u + V·diag(c − 1)·Vᵀ·u
      const projections = new Float64Array(rank);
      for (let k = 0, at = 0; k < dim; k++)
        for (let r = 0; r < rank; r++, at++) projections[r] += directions[at] * u[k];
      for (let r = 0; r < rank; r++) projections[r] *= scales[r] - 1;
      const w = Float64Array.from(u);
      for (let k = 0, at = 0; k < dim; k++)
        for (let r = 0; r < rank; r++, at++) w[k] += directions[at] * projections[r];
      return w;
    },
  };
}

/**
 * Cholesky-QR: an upper-triangular T such that the columns of Q·T are
 * orthonormal, from the Gram matrix QᵀQ (accumulated in double precision).
 * A column that is numerically dependent on earlier ones gets a zero column in T.
 */
function orthonormalizer(q: Matrix): Float32Array {
  const { rows, cols: s } = q;
  const gram = new Float64Array(s * s);
  for (let k = 0; k < rows; k++) {
    const row = q.data.subarray(k * s, (k + 1) * s);
    for (let i = 0; i < s; i++) {
      const qi = row[i];
      if (qi === 0) continue;
      for (let j = i; j < s; j++) gram[i * s + j] += qi * row[j];
    }
  }
  // Cholesky QᵀQ = RᵀR with R upper-triangular, skipping dependent columns.
  const r = new Float64Array(s * s);
  const kept = new Uint8Array(s);
  for (let j = 0; j < s; j++) {
    let pivot = gram[j * s + j];
    for (let i = 0; i < j; i++) pivot -= r[i * s + j] ** 2;
    if (!(pivot > 1e-10 * gram[j * s + j])) continue;
    kept[j] = 1;
    const diagonal = Math.sqrt(pivot);
    r[j * s + j] = diagonal;
    for (let k = j + 1; k < s; k++) {
      let sum = gram[j * s + k];
      for (let i = 0; i < j; i++) sum -= r[i * s + j] * r[i * s + k];
      r[j * s + k] = sum / diagonal;
    }
  }
  // T = R⁻¹ by back-substitution, column by column.
  const t = new Float32Array(s * s);
  const column = new Float64Array(s);
  for (let j = 0; j < s; j++) {
    if (!kept[j]) continue;
    column.fill(0);
    column[j] = 1 / r[j * s + j];
    for (let i = j - 1; i >= 0; i--) {
      if (!kept[i]) continue;
      let sum = 0;
      for (let l = i + 1; l <= j; l++) sum += r[i * s + l] * column[l];
      column[i] = -sum / r[i * s + i];
    }
    for (let i = 0; i <= j; i++) t[i * s + j] = column[i];
  }
  return t;
}
