import type { Classifier } from './api';

export const formatDate = (iso: string | undefined) => (iso ? new Date(iso).toLocaleString() : '—');

/** Status word plus, while training, a progress bar from `training_progress` (0–100). */
export function StatusBadge({ classifier }: { classifier: Classifier }) {
  const training = classifier.status === 'training' || classifier.status === 'retraining';
  return (
    <span class="status-cell">
      <span class={`badge ${classifier.status}`} data-testid="status">
        {classifier.status}
      </span>
      {training && (
        <progress max={100} value={classifier.training_progress ?? 0} aria-label={`${classifier.status} progress`}>
          {classifier.training_progress ?? 0}%
        </progress>
      )}
    </span>
  );
}

export function ClassifierList(props: {
  classifiers: Classifier[] | null;
  selected?: string;
  onSelect: (id: string) => void;
  onNew: () => void;
}) {
  const { classifiers } = props;
  return (
    <section class="card list" aria-label="Your classifiers">
      <div class="row spread">
        <h2>Your classifiers</h2>
        <button class="primary" onClick={props.onNew}>
          New classifier
        </button>
      </div>
      {classifiers === null && <p class="muted">Loading…</p>}
      {classifiers?.length === 0 && <p class="muted">None yet. Create one from zips of example images.</p>}
      {!!classifiers?.length && (
        <table class="classifiers">
          <thead>
            <tr>
              <th>Name</th>
              <th>Status</th>
              <th>Classes</th>
              <th>Created / retrained</th>
            </tr>
          </thead>
          <tbody>
            {classifiers.map((c) => (
              <tr
                key={c.classifier_id}
                class={c.classifier_id === props.selected ? 'selected' : ''}
                data-classifier={c.classifier_id}
                onClick={() => props.onSelect(c.classifier_id)}
              >
                <td>
                  <a href={`#${c.classifier_id}`} onClick={(e) => e.preventDefault()}>
                    {c.name}
                  </a>
                  <div class="muted small">{c.classifier_id}</div>
                </td>
                <td>
                  <StatusBadge classifier={c} />
                </td>
                <td>{c.classes.map((k) => k.class).join(', ')}</td>
                <td class="small">
                  {formatDate(c.created)}
                  {c.retrained && <div class="muted">retrained {formatDate(c.retrained)}</div>}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
