/**
 * L-BFGS for many independent smooth problems of one size, minimised together
 * so that each round evaluates every unfinished problem in one batched call
 * (one onnxruntime run). Each problem keeps its own curvature memory and its
 * own backtracking line search; problems that finish drop out of later rounds.
 */

export interface ProblemEvaluation<T> {
  value: number;
  gradient: Float64Array;
  /** Whatever the caller wants kept for the accepted point (e.g. decision values). */
  extra: T;
}

export type BatchEvaluator<T> = (problems: number[], points: Float64Array[]) => Promise<Array<ProblemEvaluation<T>>>;

export interface LbfgsOptions {
  /** Stop a problem when ‖gradient‖ ≤ gradientTolerance · ‖initial gradient‖. */
  gradientTolerance: number;
  /** Stop a problem after this many accepted steps. */
  maxIterations: number;
  memory: number;
  onRound?: (finishedFraction: number, round: number) => void;
}

export interface LbfgsResult<T> {
  point: Float64Array;
  value: number;
  extra: T;
  iterations: number;
  converged: boolean;
}

const ARMIJO = 1e-4;
/** Relative rounding noise of a float32-evaluated objective. */
const NOISE = 1e-6;
/** Hager–Zhang's approximate Wolfe bound (2δ − 1) with δ = 0.1. */
const APPROXIMATE_WOLFE = 0.8;
const MAX_BACKTRACKS = 10;

class ProblemState<T> {
  point: Float64Array;
  value = Infinity;
  gradient: Float64Array;
  extra!: T;
  initialGradientNorm = 0;
  iterations = 0;
  converged = false;
  finished = false;

  readonly steps: Float64Array[] = [];
  readonly gradientChanges: Float64Array[] = [];
  readonly curvatures: number[] = [];

  direction: Float64Array;
  slope = 0;
  stepLength = 1;
  backtracks = 0;
  trial: Float64Array;

  constructor(start: Float64Array) {
    this.point = Float64Array.from(start);
    this.trial = Float64Array.from(start);
    this.gradient = new Float64Array(start.length);
    this.direction = new Float64Array(start.length);
  }
}

export async function minimizeAll<T>(starts: Float64Array[], evaluate: BatchEvaluator<T>, options: LbfgsOptions): Promise<Array<LbfgsResult<T>>> {
  const states = starts.map((start) => new ProblemState<T>(start));
  let pending = states.map((_, i) => i);
  let firstRound = true;
  for (let round = 0; pending.length > 0; round++) {
    const evaluations = await evaluate(pending, pending.map((i) => states[i].trial));
    pending.forEach((problem, k) => {
      const state = states[problem];
      if (firstRound) start(state, evaluations[k], options);
      else advance(state, evaluations[k], options);
    });
    firstRound = false;
    pending = pending.filter((i) => !states[i].finished);
    options.onRound?.(1 - pending.length / states.length, round);
  }
  return states.map((s) => ({ point: s.point, value: s.value, extra: s.extra, iterations: s.iterations, converged: s.converged }));
}

function start<T>(state: ProblemState<T>, evaluation: ProblemEvaluation<T>, options: LbfgsOptions): void {
  accept(state, evaluation);
  state.initialGradientNorm = norm(state.gradient);
  if (state.initialGradientNorm === 0) {
    state.converged = state.finished = true;
    return;
  }
  beginLineSearch(state);
}

function advance<T>(state: ProblemState<T>, evaluation: ProblemEvaluation<T>, options: LbfgsOptions): void {
  const { value, gradient } = evaluation;
  if (acceptable(state, value, gradient)) {
    const step = new Float64Array(state.point.length);
    const gradientChange = new Float64Array(state.point.length);
    for (let k = 0; k < step.length; k++) {
      step[k] = state.trial[k] - state.point[k];
      gradientChange[k] = gradient[k] - state.gradient[k];
    }
    const curvature = dot(step, gradientChange);
    // Skip pairs without positive curvature: they would break the positive-definite update.
    if (curvature > 1e-12 * dot(gradientChange, gradientChange)) {
      if (state.steps.length === options.memory) {
        state.steps.shift();
        state.gradientChanges.shift();
        state.curvatures.shift();
      }
      state.steps.push(step);
      state.gradientChanges.push(gradientChange);
      state.curvatures.push(curvature);
    }
    state.point.set(state.trial);
    accept(state, evaluation);
    state.iterations++;
    if (norm(state.gradient) <= options.gradientTolerance * state.initialGradientNorm) {
      state.converged = state.finished = true;
    } else if (state.iterations >= options.maxIterations) {
      state.finished = true;
    } else {
      beginLineSearch(state);
    }
    return;
  }
  // Float32 noise near the optimum makes tiny improvements unverifiable: give up after many halvings.
  state.backtracks++;
  if (state.backtracks > MAX_BACKTRACKS) {
    state.finished = true;
    state.converged = norm(state.gradient) <= Math.sqrt(options.gradientTolerance) * state.initialGradientNorm;
    return;
  }
  const excess = value - state.value - state.slope * state.stepLength;
  const interpolated = Number.isFinite(excess) && excess > 0 ? (-state.slope * state.stepLength ** 2) / (2 * excess) : 0;
  state.stepLength = Math.min(0.5 * state.stepLength, Math.max(0.1 * state.stepLength, interpolated));
  setTrial(state);
}

/**
 * Armijo sufficient decrease, or, where float32 evaluation noise hides a
 * decrease that small, Hager–Zhang's approximate Wolfe test: the value did not
 * rise beyond the noise and the slope along the search line has not overshot.
 */
function acceptable<T>(state: ProblemState<T>, value: number, gradient: Float64Array): boolean {
  if (!Number.isFinite(value)) return false;
  if (value <= state.value + ARMIJO * state.stepLength * state.slope) return true;
  return value <= state.value + NOISE * Math.abs(state.value) && dot(gradient, state.direction) <= -APPROXIMATE_WOLFE * state.slope;
}

function accept<T>(state: ProblemState<T>, evaluation: ProblemEvaluation<T>): void {
  state.value = evaluation.value;
  state.gradient = evaluation.gradient;
  state.extra = evaluation.extra;
}

/** Two-loop recursion for the quasi-Newton direction, then a unit trial step. */
function beginLineSearch<T>(state: ProblemState<T>): void {
  const q = Float64Array.from(state.gradient);
  const count = state.steps.length;
  const alphas = new Float64Array(count);
  for (let k = count - 1; k >= 0; k--) {
    alphas[k] = dot(state.steps[k], q) / state.curvatures[k];
    axpy(-alphas[k], state.gradientChanges[k], q);
  }
  const newest = count - 1;
  const scale = count > 0
    ? state.curvatures[newest] / dot(state.gradientChanges[newest], state.gradientChanges[newest])
    : 1 / norm(state.gradient);
  for (let k = 0; k < q.length; k++) q[k] *= scale;
  for (let k = 0; k < count; k++) {
    const beta = dot(state.gradientChanges[k], q) / state.curvatures[k];
    axpy(alphas[k] - beta, state.steps[k], q);
  }
  for (let k = 0; k < q.length; k++) state.direction[k] = -q[k];
  state.slope = dot(state.direction, state.gradient);
  if (!(state.slope < 0)) {
    // Lost descent (rounding): restart from steepest descent.
    state.steps.length = state.gradientChanges.length = state.curvatures.length = 0;
    const g = norm(state.gradient);
    for (let k = 0; k < q.length; k++) state.direction[k] = -state.gradient[k] / g;
    state.slope = -g;
  }
  state.stepLength = 1;
  state.backtracks = 0;
  setTrial(state);
}

function setTrial<T>(state: ProblemState<T>): void {
  for (let k = 0; k < state.point.length; k++) state.trial[k] = state.point[k] + state.stepLength * state.direction[k];
}

function dot(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let k = 0; k < a.length; k++) sum += a[k] * b[k];
  return sum;
}

function norm(a: Float64Array): number {
  return Math.sqrt(dot(a, a));
}

function axpy(alpha: number, x: Float64Array, y: Float64Array): void {
  for (let k = 0; k < x.length; k++) y[k] += alpha * x[k];
}
