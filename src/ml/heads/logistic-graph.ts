import * as ort from 'onnxruntime-node';
import { OnnxGraphBuilder } from '../onnx/onnx-graph-builder';
import { cachedSession } from './onnx-session';
import type { ConditionedProblem } from './preconditioner';

/**
 * Regularised, weighted logistic loss and its gradient for many independent
 * linear models at once, evaluated by onnxruntime so the big matrix products
 * run on its multi-threaded GEMM instead of in JavaScript.
 *
 * The models are trained in preconditioned coordinates u (see preconditioner.ts): the weights on the
 * features are w = P·u, P = I + V·diag(scale − 1)·Vᵀ, V orthonormal [d,k], applied here to the [d,m]
 * weights rather than once to the [n,d] features (same decisions; the features need no preconditioned
 * copy, and P costs 4·d·k·m per run against the data's 4·n·d·m). The L2 penalty on w reads
 * ½·l2·(‖u − V·t‖² + Σ scale_i²·t_i²) with t = Vᵀ·u.
 * (Written as ‖u‖² + Σ (scale_i² − 1)·t_i² it would cancel catastrophically in float32.)
 *
 * Inputs: X [n,d], XT [d,n] (X transposed: the gradient's product then streams it instead of
 * transposing X in blocks on every run, 2× faster at n = 10,800, d = 3,648), U [d,m] (one model per
 * column), b [1,m], Y [n,m] (0/1 targets), S [n,m] (sample weights; 0 leaves a row out of a column),
 * V [d,k], scale [k,1], l2 [1].
 * Outputs: decision [n,m] = X·P·U + b; loss [n,m] (weighted per-row log-loss, summed
 * by the caller in double precision); penalty [1,m]; grad_u [d,m]; grad_b [1,m].
 */
function buildLogisticLossModel(): Uint8Array {
  const g = new OnnxGraphBuilder('weighted_logistic_loss');
  const x = g.input('X', ['n', 'd']);
  const xt = g.input('XT', ['d', 'n']);
  const u = g.input('U', ['d', 'm']);
  const b = g.input('b', [1, 'm']);
  const y = g.input('Y', ['n', 'm']);
  const s = g.input('S', ['n', 'm']);
  const v = g.input('V', ['d', 'k']);
  const scale = g.input('scale', ['k', 1]);
  const l2 = g.input('l2', [1]);
  const one = g.initializer({ name: 'one', dims: [], data: Float32Array.of(1) });
  const half = g.initializer({ name: 'half', dims: [], data: Float32Array.of(0.5) });
  const axis0 = g.initializer({ name: 'axis0', dims: [1], data: BigInt64Array.of(0n) });

  // P·A = (A − V·VᵀA) + V·(scale ⊙ VᵀA), given its projections VᵀA.
  const orthogonalPart = (a: string, projections: string) => g.node('Sub', [a, g.node('MatMul', [v, projections])]);
  const projections = g.node('Gemm', [v, u], { transA: 1 }); // t: [k,m]
  const orthogonal = orthogonalPart(u, projections);
  const scaledProjections = g.node('Mul', [scale, projections]);
  const w = g.node('Add', [orthogonal, g.node('MatMul', [v, scaledProjections])]);

  const z = g.node('Gemm', [x, w, b], {}, 'decision');
  // −log-likelihood = softplus((1 − 2y)·z) for y ∈ {0,1}: unlike softplus(z) − y·z it does not
  // cancel for confident correct predictions, so float32 keeps its relative precision.
  const sign = g.node('Sub', [one, g.node('Add', [y, y])]);
  g.node('Mul', [s, g.node('Softplus', [g.node('Mul', [sign, z])])], {}, 'loss');

  const squares = g.node('Add', [
    g.node('ReduceSum', [g.node('Mul', [orthogonal, orthogonal]), axis0], { keepdims: 1 }),
    g.node('ReduceSum', [g.node('Mul', [scaledProjections, scaledProjections]), axis0], { keepdims: 1 }),
  ]);
  g.node('Mul', [g.node('Mul', [half, l2]), squares], {}, 'penalty');

  const residual = g.node('Mul', [s, g.node('Sub', [g.node('Sigmoid', [z]), y])]);
  // The gradient in u: Pᵀ·Xᵀ·residual (P is symmetric) plus the penalty's, l2·((u − V·t) + V·(scale² ⊙ t)).
  const gradW = g.node('MatMul', [xt, residual]);
  const gradWProjections = g.node('Gemm', [v, gradW], { transA: 1 });
  const dataGradient = g.node('Add', [
    orthogonalPart(gradW, gradWProjections),
    g.node('MatMul', [v, g.node('Mul', [scale, gradWProjections])]),
  ]);
  const penaltyGradient = g.node('Mul', [
    l2,
    g.node('Add', [orthogonal, g.node('MatMul', [v, g.node('Mul', [scale, scaledProjections])])]),
  ]);
  g.node('Add', [dataGradient, penaltyGradient], {}, 'grad_u');
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

  /** The problem's features [rows, dim] and their transpose; directions [dim, k] row-major; scales [k]. */
  static async create(
    problem: ConditionedProblem,
    rows: number,
    l2: number,
    threads: number,
  ): Promise<LogisticLossEvaluator> {
    const session = await cachedSession('logistic-loss', threads, buildLogisticLossModel);
    const { dim, scales } = problem;
    const k = scales.length;
    return new LogisticLossEvaluator(
      session,
      {
        X: new ort.Tensor('float32', problem.features, [rows, dim]),
        XT: new ort.Tensor('float32', problem.transposed, [dim, rows]),
        V: new ort.Tensor('float32', problem.directions, [dim, k]),
        scale: new ort.Tensor('float32', scales, [k, 1]),
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
