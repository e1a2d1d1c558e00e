import * as ort from 'onnxruntime-node';
import { OnnxGraphBuilder } from '../onnx/onnx-graph-builder';
import { cachedSession } from './onnx-session';

/**
 * Regularised, weighted logistic loss and its gradient for many independent
 * linear models at once, evaluated by onnxruntime so the big matrix products
 * run on its multi-threaded GEMM instead of in JavaScript.
 *
 * The models are trained in preconditioned coordinates u (see preconditioner.ts),
 * where the L2 penalty on the embedding weights reads
 * ½·l2·(‖u − V·t‖² + Σ squaredScale_i·t_i²) with t = Vᵀ·u, V orthonormal.
 * (Written as ‖u‖² + Σ (squaredScale_i − 1)·t_i² it would cancel catastrophically in float32.)
 *
 * Inputs: X [n,d], U [d,m] (one model per column), b [1,m], Y [n,m] (0/1 targets),
 * S [n,m] (sample weights; 0 leaves a row out of a column), V [d,k], squaredScale [k,1], l2 [1].
 * Outputs: decision [n,m] = X·U + b; loss [n,m] (weighted per-row log-loss, summed
 * by the caller in double precision); penalty [1,m]; grad_u [d,m]; grad_b [1,m].
 */
function buildLogisticLossModel(): Uint8Array {
  const g = new OnnxGraphBuilder('weighted_logistic_loss');
  const x = g.input('X', ['n', 'd']);
  const u = g.input('U', ['d', 'm']);
  const b = g.input('b', [1, 'm']);
  const y = g.input('Y', ['n', 'm']);
  const s = g.input('S', ['n', 'm']);
  const v = g.input('V', ['d', 'k']);
  const squaredScale = g.input('squaredScale', ['k', 1]);
  const l2 = g.input('l2', [1]);
  const one = g.initializer({ name: 'one', dims: [], data: Float32Array.of(1) });
  const half = g.initializer({ name: 'half', dims: [], data: Float32Array.of(0.5) });
  const axis0 = g.initializer({ name: 'axis0', dims: [1], data: BigInt64Array.of(0n) });

  const z = g.node('Gemm', [x, u, b], {}, 'decision');
  // −log-likelihood = softplus((1 − 2y)·z) for y ∈ {0,1}: unlike softplus(z) − y·z it does not
  // cancel for confident correct predictions, so float32 keeps its relative precision.
  const sign = g.node('Sub', [one, g.node('Add', [y, y])]);
  g.node('Mul', [s, g.node('Softplus', [g.node('Mul', [sign, z])])], {}, 'loss');

  const projections = g.node('Gemm', [v, u], { transA: 1 }); // t: [k,m]
  const orthogonal = g.node('Sub', [u, g.node('MatMul', [v, projections])]);
  const scaledProjections = g.node('Mul', [squaredScale, projections]);
  const squares = g.node('Add', [
    g.node('ReduceSum', [g.node('Mul', [orthogonal, orthogonal]), axis0], { keepdims: 1 }),
    g.node('ReduceSum', [g.node('Mul', [scaledProjections, projections]), axis0], { keepdims: 1 }),
  ]);
  g.node('Mul', [g.node('Mul', [half, l2]), squares], {}, 'penalty');

  const residual = g.node('Mul', [s, g.node('Sub', [g.node('Sigmoid', [z]), y])]);
  const penaltyGradient = g.node('Mul', [l2, g.node('Add', [orthogonal, g.node('MatMul', [v, scaledProjections])])]);
  g.node('Gemm', [x, residual, penaltyGradient], { transA: 1 }, 'grad_u');
  g.node('ReduceSum', [residual, axis0], { keepdims: 1 }, 'grad_b');

  g.output('decision', ['n', 'm']);
  g.output('loss', ['n', 'm']);
  g.output('penalty', [1, 'm']);
  g.output('grad_u', ['d', 'm']);
  g.output('grad_b', [1, 'm']);
  return g.toBuffer();
}

export interface LossAndGradient {
  /** [n,m] row-major. */
  decision: Float32Array;
  /** Regularised objective of each column. */
  value: Float64Array;
  /** [d,m] row-major. */
  gradU: Float32Array;
  gradB: Float32Array;
}

/** Evaluates the loss graph for fixed features and penalty, and per-call column sets. */
export class LogisticLossEvaluator {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly fixed: Record<string, ort.Tensor>,
    readonly rows: number,
    readonly dim: number,
  ) {}

  /** features: [rows, dim] row-major; penalty directions: [dim, k] row-major; squaredScale: [k]. */
  static async create(
    features: Float32Array,
    rows: number,
    dim: number,
    penalty: { directions: Float32Array; squaredScale: Float32Array },
    l2: number,
    threads: number,
  ): Promise<LogisticLossEvaluator> {
    const session = await cachedSession('logistic-loss', threads, buildLogisticLossModel);
    const k = penalty.squaredScale.length;
    return new LogisticLossEvaluator(
      session,
      {
        X: new ort.Tensor('float32', features, [rows, dim]),
        V: new ort.Tensor('float32', penalty.directions, [dim, k]),
        squaredScale: new ort.Tensor('float32', penalty.squaredScale, [k, 1]),
        l2: new ort.Tensor('float32', Float32Array.of(l2), [1]),
      },
      rows,
      dim,
    );
  }

  /** u: [d,m], b: [m], targets and weights: [n,m], all row-major. */
  async evaluate(
    u: Float32Array,
    b: Float32Array,
    targets: Float32Array,
    weights: Float32Array,
    columns: number,
  ): Promise<LossAndGradient> {
    const { rows, dim } = this;
    const out = await this.session.run({
      ...this.fixed,
      U: new ort.Tensor('float32', u, [dim, columns]),
      b: new ort.Tensor('float32', b, [1, columns]),
      Y: new ort.Tensor('float32', targets, [rows, columns]),
      S: new ort.Tensor('float32', weights, [rows, columns]),
    });
    const rowLoss = out.loss.data as Float32Array;
    const value = Float64Array.from(out.penalty.data as Float32Array);
    for (let i = 0; i < rows; i++) {
      const base = i * columns;
      for (let j = 0; j < columns; j++) value[j] += rowLoss[base + j];
    }
    return {
      decision: out.decision.data as Float32Array,
      value,
      gradU: out.grad_u.data as Float32Array,
      gradB: out.grad_b.data as Float32Array,
    };
  }
}
