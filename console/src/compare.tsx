import type { Versions } from './api';

type VersionEntry = Versions['versions'][number];

const fixed = (value: number | undefined) => (value === undefined ? '—' : value.toFixed(3));

function Change({ before, after }: { before?: number; after?: number }) {
  if (before === undefined || after === undefined) return <span class="delta">new</span>;
  const d = after - before;
  // Below half a thousandth is what the table's three decimals cannot show: no change.
  if (Math.abs(d) < 0.0005) return <span class="delta same">±0</span>;
  return (
    <span class={d > 0 ? 'delta up' : 'delta down'}>
      {d > 0 ? '▲ +' : '▼ −'}
      {Math.abs(d).toFixed(3)}
    </span>
  );
}

/** What changed in a version's examples (`changes` on the version entry, when it came from a remove/move). */
export function changesText(v: VersionEntry): string | null {
  return v.changes ? `${v.changes.moved} moved, ${v.changes.removed} removed` : null;
}

/**
 * Two versions' cross-validated evaluations side by side: per class precision and recall before and
 * after, and the change. Classes of only one side show — on the other.
 */
export function VersionComparison({ before, after }: { before: VersionEntry; after: VersionEntry }) {
  const names = [
    ...after.evaluation.classes.map((c) => c.class),
    ...before.evaluation.classes
      .map((c) => c.class)
      .filter((n) => !after.evaluation.classes.some((c) => c.class === n)),
  ];
  const of = (v: VersionEntry, name: string) => v.evaluation.classes.find((c) => c.class === name);
  const changed = changesText(after);
  return (
    <div class="comparison" data-testid="comparison" data-before={before.version_id} data-after={after.version_id}>
      <p class="small">
        Version <strong>{after.version_id}</strong> ({after.examples} examples{changed ? `; ${changed}` : ''}) against
        version <strong>{before.version_id}</strong> ({before.examples} examples), both cross-validated at threshold
        0.5.
      </p>
      <table class="metrics compare">
        <caption class="sr-only">
          Precision and recall per class, version {before.version_id} and version {after.version_id}
        </caption>
        <thead>
          <tr>
            <th scope="col">Class</th>
            <th scope="col">Precision v{before.version_id}</th>
            <th scope="col">Precision v{after.version_id}</th>
            <th scope="col">Change</th>
            <th scope="col">Recall v{before.version_id}</th>
            <th scope="col">Recall v{after.version_id}</th>
            <th scope="col">Change</th>
          </tr>
        </thead>
        <tbody>
          {names.map((name) => {
            const b = of(before, name);
            const a = of(after, name);
            return (
              <tr key={name} data-class={name}>
                <th scope="row">{name}</th>
                <td data-metric="precision-before">{fixed(b?.precision)}</td>
                <td data-metric="precision-after">{fixed(a?.precision)}</td>
                <td>
                  <Change before={b?.precision} after={a?.precision} />
                </td>
                <td data-metric="recall-before">{fixed(b?.recall)}</td>
                <td data-metric="recall-after">{fixed(a?.recall)}</td>
                <td>
                  <Change before={b?.recall} after={a?.recall} />
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
