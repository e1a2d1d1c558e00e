import { dot } from './linear-algebra';

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

/** Evaluates the problems `problems` (indices into the start list) at `points`. */
export type BatchEvaluator<T> = (problems: number[], points: Float64Array[]) => Promise<Array<ProblemEvaluation<T>>>;

export interface LbfgsOptions {
  /**
   * Stop a problem when the decrease its next quasi-Newton step predicts
   * (−gradientᵀ·direction, about twice the remaining gap to the optimum) is at
   * most this fraction of its value. Unlike a gradient-norm test this does not
   * depend on how the problem is parameterised.
   */
  decreaseTolerance: number;
  /** Stop a problem after this many accepted steps. */
  maxIterations: number;
  memory: number;
  onRound?: (finishedFraction: number, round: number) => void;
}

export interface LbfgsResult<T> {
  point: Float64Array;
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
  readonly point: Float64Array;
  readonly trial: Float64Array;
  readonly direction: Float64Array;
  gradient: Float64Array;
  value = Infinity;
  extra!: T;
  iterations = 0;
  converged = false;
  finished = false;
  slope = 0;
  stepLength = 1;
  backtracks = 0;
  /** Curvature pairs, oldest first; arrays are recycled when the memory is full. */
  readonly steps: Float64Array[] = [];
  readonly gradientChanges: Float64Array[] = [];
  readonly curvatures: number[] = [];

  constructor(start: Float64Array) {
    this.point = Float64Array.from(start);
    this.trial = Float64Array.from(start);
    this.gradient = new Float64Array(start.length);
    this.direction = new Float64Array(start.length);
  }
}

export async function minimizeAll<T>(
  starts: Float64Array[],
  evaluate: BatchEvaluator<T>,
  options: LbfgsOptions,
): Promise<Array<LbfgsResult<T>>> {
  const states = starts.map((start) => new ProblemState<T>(start));
  let pending = states.map((_, i) => i);
  for (let round = 0; pending.length > 0; round++) {
    const evaluations = await evaluate(
      pending,
      pending.map((i) => states[i].trial),
    );
    pending.forEach((problem, k) => {
      if (round === 0) start(states[problem], evaluations[k], options);
      else advance(states[problem], evaluations[k], options);
    });
    pending = pending.filter((i) => !states[i].finished);
    options.onRound?.(1 - pending.length / states.length, round);
  }
  return states.map((s) => ({ point: s.point, extra: s.extra, iterations: s.iterations, converged: s.converged }));
}

function start<T>(state: ProblemState<T>, evaluation: ProblemEvaluation<T>, options: LbfgsOptions): void {
  accept(state, evaluation);
  newDirection(state, options);
}

function advance<T>(state: ProblemState<T>, evaluation: ProblemEvaluation<T>, options: LbfgsOptions): void {
  if (acceptable(state, evaluation)) {
    remember(state, evaluation.gradient, options.memory);
    state.point.set(state.trial);
    accept(state, evaluation);
    state.iterations++;
    newDirection(state, options);
    return;
  }
  // Repeated failures mean float32 noise hides any further progress.
  state.backtracks++;
  if (state.backtracks > MAX_BACKTRACKS) {
    state.finished = true;
    return;
  }
  const step = state.stepLength;
  const excess = evaluation.value - state.value - state.slope * step;
  const interpolated = Number.isFinite(excess) && excess > 0 ? (-state.slope * step * step) / (2 * excess) : 0;
  state.stepLength = Math.min(0.5 * step, Math.max(0.1 * step, interpolated));
  setTrial(state);
}

/**
 * Armijo sufficient decrease, or, where float32 evaluation noise hides a
 * decrease that small, Hager–Zhang's approximate Wolfe test: the value did not
 * rise beyond the noise and the slope along the search line has not overshot.
 */
function acceptable<T>(state: ProblemState<T>, { value, gradient }: ProblemEvaluation<T>): boolean {
  if (!Number.isFinite(value)) return false;
  if (value <= state.value + ARMIJO * state.stepLength * state.slope) return true;
  return (
    value <= state.value + NOISE * Math.abs(state.value) &&
    dot(gradient, state.direction) <= -APPROXIMATE_WOLFE * state.slope
  );
}

/** Stores the (step, gradient change) pair of an accepted trial, unless it lacks positive curvature. */
function remember<T>(state: ProblemState<T>, gradient: Float64Array, memory: number): void {
  const full = state.steps.length === memory;
  const step = full ? state.steps.shift()! : new Float64Array(gradient.length);
  const change = full ? state.gradientChanges.shift()! : new Float64Array(gradient.length);
  if (full) state.curvatures.shift();
  let curvature = 0;
  let changeNorm = 0;
  for (let k = 0; k < step.length; k++) {
    const s = state.trial[k] - state.point[k];
    const y = gradient[k] - state.gradient[k];
    step[k] = s;
    change[k] = y;
    curvature += s * y;
    changeNorm += y * y;
  }
  // A pair without positive curvature would break the positive-definite update.
  if (curvature <= 1e-12 * changeNorm) return;
  state.steps.push(step);
  state.gradientChanges.push(change);
  state.curvatures.push(curvature);
}

function accept<T>(state: ProblemState<T>, evaluation: ProblemEvaluation<T>): void {
  state.value = evaluation.value;
  state.gradient = evaluation.gradient;
  state.extra = evaluation.extra;
}

/** Two-loop recursion for the quasi-Newton direction, the stopping test, then a unit trial step. */
function newDirection<T>(state: ProblemState<T>, options: LbfgsOptions): void {
  const { steps, gradientChanges, curvatures, gradient, direction } = state;
  const q = new Float64Array(gradient);
  const count = steps.length;
  const alphas = new Float64Array(count);
  for (let i = count - 1; i >= 0; i--) {
    const s = steps[i];
    const y = gradientChanges[i];
    const alpha = dot(s, q) / curvatures[i];
    alphas[i] = alpha;
    for (let k = 0; k < q.length; k++) q[k] -= alpha * y[k];
  }
  const gradientNorm = Math.sqrt(dot(gradient, gradient));
  // Initial inverse-Hessian scale: from the newest pair, else a unit first step.
  const scale =
    count > 0 ? curvatures[count - 1] / dot(gradientChanges[count - 1], gradientChanges[count - 1]) : 1 / gradientNorm;
  for (let k = 0; k < q.length; k++) q[k] *= scale;
  for (let i = 0; i < count; i++) {
    const s = steps[i];
    const y = gradientChanges[i];
    const correction = alphas[i] - dot(y, q) / curvatures[i];
    for (let k = 0; k < q.length; k++) q[k] += correction * s[k];
  }
  let slope = 0;
  for (let k = 0; k < q.length; k++) {
    direction[k] = -q[k];
    slope -= q[k] * gradient[k];
  }
  if (!(slope < 0) && gradientNorm > 0) {
    // Lost descent (rounding): forget the pairs and restart from steepest descent.
    steps.length = gradientChanges.length = curvatures.length = 0;
    for (let k = 0; k < q.length; k++) direction[k] = -gradient[k] / gradientNorm;
    slope = -gradientNorm;
  }
  state.slope = slope;
  state.stepLength = 1;
  state.backtracks = 0;
  if (!(-slope > options.decreaseTolerance * Math.abs(state.value))) state.converged = state.finished = true;
  else if (state.iterations >= options.maxIterations) state.finished = true;
  else setTrial(state);
}

function setTrial<T>(state: ProblemState<T>): void {
  const { point, trial, direction, stepLength } = state;
  for (let k = 0; k < point.length; k++) trial[k] = point[k] + stepLength * direction[k];
}
