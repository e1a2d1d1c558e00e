/**
 * Platt scaling: fits p = sigmoid(a·z + b) to decision values by weighted
 * log-loss with Platt's smoothed targets, using Newton's method with
 * backtracking (the 2-parameter problem is convex).
 */
export function fitPlatt(
  decisions: ArrayLike<number>,
  labels: ArrayLike<number>,
  weights: ArrayLike<number>,
): { a: number; b: number } {
  let positives = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i]) positives++;
  const negatives = labels.length - positives;
  const positiveTarget = (positives + 1) / (positives + 2);
  const negativeTarget = 1 / (negatives + 2);

  const objective = (a: number, b: number): number => {
    let total = 0;
    for (let i = 0; i < decisions.length; i++) {
      const t = labels[i] ? positiveTarget : negativeTarget;
      const u = a * decisions[i] + b;
      total += weights[i] * (softplus(u) - t * u);
    }
    return total;
  };

  let a = 1;
  let b = 0;
  let value = objective(a, b);
  for (let iteration = 0; iteration < 100; iteration++) {
    let ga = 0,
      gb = 0,
      haa = 1e-12,
      hab = 0,
      hbb = 1e-12;
    for (let i = 0; i < decisions.length; i++) {
      const t = labels[i] ? positiveTarget : negativeTarget;
      const z = decisions[i];
      const p = sigmoid(a * z + b);
      const w = weights[i];
      const r = w * (p - t);
      const h = w * p * (1 - p);
      ga += r * z;
      gb += r;
      haa += h * z * z;
      hab += h * z;
      hbb += h;
    }
    if (Math.abs(ga) < 1e-9 && Math.abs(gb) < 1e-9) break;
    const det = haa * hbb - hab * hab;
    const da = -(hbb * ga - hab * gb) / det;
    const db = -(haa * gb - hab * ga) / det;
    const slope = ga * da + gb * db;
    let step = 1;
    let next = objective(a + da, b + db);
    while (next > value + 1e-4 * step * slope && step > 1e-10) {
      step /= 2;
      next = objective(a + step * da, b + step * db);
    }
    if (step <= 1e-10) break;
    a += step * da;
    b += step * db;
    const improvement = value - next;
    value = next;
    if (improvement <= 1e-12 * Math.max(1, Math.abs(value))) break;
  }
  return { a, b };
}

export function sigmoid(u: number): number {
  return u >= 0 ? 1 / (1 + Math.exp(-u)) : Math.exp(u) / (1 + Math.exp(u));
}

function softplus(u: number): number {
  return u > 0 ? u + Math.log1p(Math.exp(-u)) : Math.log1p(Math.exp(u));
}
