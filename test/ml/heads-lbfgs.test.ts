import { minimizeAll, type BatchEvaluator } from '../../src/ml/heads/lbfgs';
import { sigmoid } from '../../src/ml/heads/platt';

const options = { decreaseTolerance: 1e-12, maxIterations: 500, memory: 10 };

describe('batched L-BFGS', () => {
  it('minimises several ill-conditioned quadratics at once, each to its own optimum', async () => {
    // f_p(x) = 1 + ½ Σ c_k (x_k − t_k)², curvatures spread by 10³, a different optimum per problem.
    const dim = 20;
    const curvatures = Float64Array.from({ length: dim }, (_, k) => 10 ** ((3 * k) / (dim - 1)));
    const targets = [1, -2, 0.5].map((t) => Float64Array.from({ length: dim }, (_, k) => t * (1 + k / 10)));
    const batches: number[][] = [];
    const evaluate: BatchEvaluator<null> = async (problems, points) => {
      batches.push([...problems]);
      return problems.map((p, j) => {
        const gradient = new Float64Array(dim);
        let value = 1;
        for (let k = 0; k < dim; k++) {
          const d = points[j][k] - targets[p][k];
          value += 0.5 * curvatures[k] * d * d;
          gradient[k] = curvatures[k] * d;
        }
        return { value, gradient, extra: null };
      });
    };
    const results = await minimizeAll(
      targets.map(() => new Float64Array(dim)),
      evaluate,
      options,
    );
    results.forEach((result, p) => {
      expect(result.converged).toBe(true);
      result.point.forEach((x, k) => expect(x).toBeCloseTo(targets[p][k], 5));
    });
    // Every round evaluates the unfinished problems together; finished ones drop out.
    expect(batches[0]).toEqual([0, 1, 2]);
    for (let r = 1; r < batches.length; r++) batches[r].forEach((p) => expect(batches[r - 1]).toContain(p));
    // A float64 textbook L-BFGS (memory 10) needs about 140 iterations on one of these.
    expect(batches.length).toBeLessThan(250);
  });

  it('solves regularised logistic regressions like Newton’s method does', async () => {
    const xs = [-2, -1.5, -1, -0.5, 0.2, 0.4, 1, 1.5, 2, -0.3];
    const labelSets = [
      [0, 0, 0, 1, 0, 1, 1, 1, 1, 1],
      [1, 1, 0, 1, 0, 0, 0, 1, 0, 0],
    ];
    const l2 = 0.1;
    const objective = (ys: number[], w: number, b: number) => {
      const o = { value: 0.5 * l2 * w * w, gw: l2 * w, gb: 0, hww: l2, hwb: 0, hbb: 0 };
      xs.forEach((x, i) => {
        const z = w * x + b;
        const p = sigmoid(z);
        o.value += Math.log1p(Math.exp(-Math.abs(z))) + Math.max(z, 0) - ys[i] * z;
        o.gw += (p - ys[i]) * x;
        o.gb += p - ys[i];
        o.hww += p * (1 - p) * x * x;
        o.hwb += p * (1 - p) * x;
        o.hbb += p * (1 - p);
      });
      return o;
    };
    const newton = labelSets.map((ys) => {
      let w = 0;
      let b = 0;
      for (let i = 0; i < 50; i++) {
        const o = objective(ys, w, b);
        const det = o.hww * o.hbb - o.hwb * o.hwb;
        w -= (o.hbb * o.gw - o.hwb * o.gb) / det;
        b -= (o.hww * o.gb - o.hwb * o.gw) / det;
      }
      return [w, b];
    });
    const results = await minimizeAll(
      labelSets.map(() => new Float64Array(2)),
      async (problems, points) =>
        problems.map((p, j) => {
          const o = objective(labelSets[p], points[j][0], points[j][1]);
          return { value: o.value, gradient: Float64Array.of(o.gw, o.gb), extra: null };
        }),
      options,
    );
    results.forEach((result, p) => {
      expect(result.point[0]).toBeCloseTo(newton[p][0], 4);
      expect(result.point[1]).toBeCloseTo(newton[p][1], 4);
    });
  });

  it('keeps the extra of the accepted point', async () => {
    const [result] = await minimizeAll(
      [Float64Array.of(0)],
      async (_, [point]) => [
        { value: (point[0] - 5) ** 2 + 1, gradient: Float64Array.of(2 * (point[0] - 5)), extra: point[0] },
      ],
      options,
    );
    expect(result.extra).toBe(result.point[0]);
    expect(result.point[0]).toBeCloseTo(5, 8);
  });
});
