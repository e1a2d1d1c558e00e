import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from 'chart.js';
import { useEffect, useRef } from 'preact/hooks';
import type { Evaluation } from './api';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

const METRICS = [
  { key: 'precision', label: 'Precision', color: '#2563eb' },
  { key: 'recall', label: 'Recall', color: '#16a34a' },
  { key: 'f1', label: 'F1', color: '#d97706' },
  { key: 'roc_auc', label: 'ROC-AUC', color: '#7c3aed' },
] as const;

const fixed = (value: number | null) => (value === null ? '—' : value.toFixed(3));
const noneLabel = (label: string | null, asActual: boolean) => label ?? (asActual ? 'negative examples' : 'no class');

/** Off-diagonal cells of the confusion matrix, most frequent first. */
export function confusions(matrix: NonNullable<Evaluation['confusion_matrix']>) {
  const out: Array<{ actual: string | null; predicted: string | null; count: number; share: number }> = [];
  matrix.counts.forEach((row, a) => {
    const total = row.reduce((sum, n) => sum + n, 0);
    row.forEach((count, p) => {
      if (a !== p && count > 0)
        out.push({ actual: matrix.labels[a], predicted: matrix.labels[p], count, share: count / total });
    });
  });
  return out.sort((x, y) => y.count - x.count || y.share - x.share);
}

/** One version's cross-validated evaluation: a table, a bar chart and the classes most confused. */
export function EvaluationView({ evaluation }: { evaluation: Evaluation }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (!canvas.current) return;
    const chart = new Chart(canvas.current, {
      type: 'bar',
      data: {
        labels: evaluation.classes.map((c) => c.class),
        datasets: METRICS.map((m) => ({
          label: m.label,
          backgroundColor: m.color,
          // No bar for a null ROC-AUC (one label only): drawing 0 would claim the worst possible ranking.
          data: evaluation.classes.map((c) => c[m.key]),
        })),
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { y: { min: 0, max: 1 } },
        plugins: { legend: { position: 'bottom' } },
      },
    });
    return () => chart.destroy();
  }, [evaluation]);

  const matrix = evaluation.confusion_matrix;
  const mixups = matrix ? confusions(matrix).slice(0, 5) : [];
  return (
    <div class="evaluation" data-testid="evaluation">
      <p class="muted small">
        {evaluation.method === 'holdout' ? 'Held-out split' : `${evaluation.folds}-fold cross-validation`} over{' '}
        {evaluation.examples} examples, scores at threshold 0.5
        {evaluation.accuracy !== undefined && <> · top-1 accuracy {(evaluation.accuracy * 100).toFixed(1)}%</>}.
      </p>
      <table class="metrics">
        <thead>
          <tr>
            <th>Class</th>
            <th>Precision</th>
            <th>Recall</th>
            <th>F1</th>
            <th>ROC-AUC</th>
            <th>Support</th>
          </tr>
        </thead>
        <tbody>
          {evaluation.classes.map((c) => (
            <tr key={c.class}>
              <td>{c.class}</td>
              <td>{fixed(c.precision)}</td>
              <td>{fixed(c.recall)}</td>
              <td>{fixed(c.f1)}</td>
              <td>{fixed(c.roc_auc)}</td>
              <td>{c.support}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div class="chart">
        <canvas ref={canvas} role="img" aria-label="Precision, recall, F1 and ROC-AUC per class" />
      </div>
      <h4>Most confused</h4>
      {!matrix && (
        <p class="muted small">
          This version was trained before confusion matrices were kept; the next retrain records one.
        </p>
      )}
      {matrix && mixups.length === 0 && (
        <p class="muted small" data-testid="confusions">
          No example was mistaken for another class in cross-validation.
        </p>
      )}
      {mixups.length > 0 && (
        <ul class="confusions" data-testid="confusions">
          {mixups.map((m) => (
            <li key={`${m.actual}>${m.predicted}`}>
              <strong>{m.count}</strong> of {noneLabel(m.actual, true)} taken for{' '}
              <strong>{noneLabel(m.predicted, false)}</strong> ({(m.share * 100).toFixed(0)}%)
            </li>
          ))}
        </ul>
      )}
      {matrix && (
        <details>
          <summary class="small">Confusion matrix (rows: actual, columns: predicted)</summary>
          <table class="matrix small">
            <thead>
              <tr>
                <th />
                {matrix.labels.map((l, i) => (
                  <th key={i}>{noneLabel(l, false)}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {matrix.counts.map((row, a) => (
                <tr key={a}>
                  <th>{noneLabel(matrix.labels[a], true)}</th>
                  {row.map((n, p) => (
                    <td key={p} class={a === p ? 'diag' : n > 0 ? 'off' : ''}>
                      {n}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </details>
      )}
    </div>
  );
}
