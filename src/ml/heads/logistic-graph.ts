import * as ort from 'onnxruntime-node';
import { OnnxGraphBuilder } from '../onnx/onnx-graph-builder';

/**
 * Weighted logistic loss and its gradient for many independent linear models at
 * once, evaluated by onnxruntime so the two big matrix products run on its
 * multi-threaded GEMM instead of in JavaScript.
 *
 * Inputs: X [n,d] (features), W [d,m] (one model per column), b [1,m],
 * Y [n,m] (0/1 targets), S [n,m] (sample weights; 0 leaves a row out of a column).
 * Outputs: decision [n,m] = X·W + b, loss [n,m] (weighted per-row log-loss, summed by the caller in
 * double precision), grad_w [d,m] = Xᵀ·R and grad_b [1,m] = Σ R where
 * R = S ⊙ (sigmoid(X·W + b) − Y).
 */
function buildLogisticLossModel(): Uint8Array {
  const g = new OnnxGraphBuilder('weighted_logistic_loss');
  const x = g.input('X', ['n', 'd']);
  const w = g.input('W', ['d', 'm']);
  const b = g.input('b', [1, 'm']);
  const y = g.input('Y', ['n', 'm']);
  const s = g.input('S', ['n', 'm']);

  const z = g.node('Gemm', [x, w, b], {}, 'decision');
  // −log-likelihood = softplus((1 − 2y)·z) for y ∈ {0,1}: unlike softplus(z) − y·z it does not
  // cancel for confident correct predictions, so float32 keeps its relative precision.
  const one = g.initializer({ name: 'one', dims: [], data: Float32Array.of(1) });
  const sign = g.node('Sub', [one, g.node('Add', [y, y])]);
  g.node('Mul', [s, g.node('Softplus', [g.node('Mul', [sign, z])])], {}, 'loss');
  const residual = g.node('Mul', [s, g.node('Sub', [g.node('Sigmoid', [z]), y])]);
  g.node('Gemm', [x, residual], { transA: 1 }, 'grad_w');
  const axis0 = g.initializer({ name: 'axis0', dims: [1], data: BigInt64Array.of(0n) });
  g.node('ReduceSum', [residual, axis0], { keepdims: 1 }, 'grad_b');

  g.output('decision', ['n', 'm']);
  g.output('loss', ['n', 'm']);
  g.output('grad_w', ['d', 'm']);
  g.output('grad_b', [1, 'm']);
  return g.toBuffer();
}

export interface LossAndGradient {
  /** [n,m] row-major. */
  decision: Float32Array;
  /** Weighted log-loss of each column (regulariser not included). */
  loss: Float64Array;
  /** [d,m] row-major. */
  gradW: Float32Array;
  gradB: Float32Array;
}

/** One session per thread count, shared: the graph is tiny and sessions are safe to run concurrently. */
const sessions = new Map<number, Promise<ort.InferenceSession>>();

function sessionFor(threads: number): Promise<ort.InferenceSession> {
  let session = sessions.get(threads);
  if (!session) {
    session = ort.InferenceSession.create(buildLogisticLossModel(), {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
    sessions.set(threads, session);
  }
  return session;
}

/** Evaluates the loss graph for a fixed X and per-call column sets. */
export class LogisticLossEvaluator {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly x: ort.Tensor,
    readonly rows: number,
    readonly dim: number,
  ) {}

  static async create(features: Float32Array, rows: number, dim: number, threads: number): Promise<LogisticLossEvaluator> {
    const session = await sessionFor(threads);
    return new LogisticLossEvaluator(session, new ort.Tensor('float32', features, [rows, dim]), rows, dim);
  }

  /** w: [d,m], b: [m], targets and weights: [n,m], all row-major. */
  async evaluate(w: Float32Array, b: Float32Array, targets: Float32Array, weights: Float32Array, columns: number): Promise<LossAndGradient> {
    const { rows, dim } = this;
    const out = await this.session.run({
      X: this.x,
      W: new ort.Tensor('float32', w, [dim, columns]),
      b: new ort.Tensor('float32', b, [1, columns]),
      Y: new ort.Tensor('float32', targets, [rows, columns]),
      S: new ort.Tensor('float32', weights, [rows, columns]),
    });
    const rowLoss = out.loss.data as Float32Array;
    const loss = new Float64Array(columns);
    for (let i = 0; i < rows; i++) {
      const base = i * columns;
      for (let j = 0; j < columns; j++) loss[j] += rowLoss[base + j];
    }
    return { decision: out.decision.data as Float32Array, loss, gradW: out.grad_w.data as Float32Array, gradB: out.grad_b.data as Float32Array };
  }
}
