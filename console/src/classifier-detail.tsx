import { useEffect, useState } from 'preact/hooks';
import type { Api, ApiFailure, Classifier, Versions } from './api';
import type { Notice } from './app';
import { formatDate, StatusBadge } from './classifier-list';
import { EvaluationView } from './evaluation';
import { ExamplesForm } from './examples-form';
import type { Limits } from './limits';

export function ClassifierDetail(props: {
  api: Api;
  classifier: Classifier;
  limits: Limits;
  onFailure: (error: unknown) => ApiFailure;
  onGone: (id: string) => void;
  onChanged: (notice?: Notice) => void;
  onDeleted: (name: string) => void;
}) {
  const { api, classifier: c } = props;
  const [versions, setVersions] = useState<Versions | null>(null);
  const [versionsError, setVersionsError] = useState<string | null>(null);
  const [shownVersion, setShownVersion] = useState<number | null>(null);
  const [confirming, setConfirming] = useState(false);
  const [deleteError, setDeleteError] = useState<string | null>(null);
  const [adding, setAdding] = useState(false);
  const training = c.status === 'training' || c.status === 'retraining';
  const currentVersion = c.evaluation?.version_id;

  // Versions change when a training finishes: read them again when the current version does.
  useEffect(() => {
    let live = true;
    api.versions(c.classifier_id).then(
      (v) => {
        if (!live) return;
        setVersions(v);
        setVersionsError(null);
        setShownVersion(v.current_version_id);
      },
      (error) => {
        if (!live) return;
        const failure = props.onFailure(error);
        if (failure.kind === 'not-found') props.onGone(c.classifier_id);
        else setVersionsError(`Could not read the versions: ${failure.message}`);
      },
    );
    return () => {
      live = false;
    };
  }, [api, c.classifier_id, currentVersion]);

  const remove = async () => {
    setDeleteError(null);
    try {
      await api.deleteClassifier(c.classifier_id);
      props.onDeleted(c.name);
    } catch (error) {
      const failure = props.onFailure(error);
      if (failure.kind === 'not-found') props.onGone(c.classifier_id);
      else setDeleteError(`The classifier was not deleted: ${failure.message}`);
    }
  };

  const shown = versions?.versions.find((v) => v.version_id === shownVersion);
  return (
    <section class="card detail" aria-label={`Classifier ${c.name}`}>
      <div class="row spread">
        <div>
          <h2>{c.name}</h2>
          <div class="muted small">{c.classifier_id}</div>
        </div>
        <StatusBadge classifier={c} />
      </div>
      {c.status === 'retraining' && (
        <p class="notice info" data-testid="retraining-note">
          Retraining on the new examples ({c.training_progress ?? 0}%). Until it finishes, classify calls keep getting
          answers from
          {currentVersion !== undefined ? ` version ${currentVersion}` : ' the previous version'}.
        </p>
      )}
      {c.status === 'training' && (
        <p class="notice info">
          Training the first version ({c.training_progress ?? 0}%). It can classify once it is ready.
        </p>
      )}
      {c.status === 'failed' && (
        <p class="notice error">
          Training failed: {c.explanation ?? 'no reason was given.'} Add or replace examples to try again.
        </p>
      )}
      <dl class="facts">
        <dt>Classes</dt>
        <dd>
          {c.classes.map((k) => (
            <span class="chip" key={k.class}>
              {k.class}
            </span>
          ))}
        </dd>
        <dt>Created</dt>
        <dd>{formatDate(c.created)}</dd>
        {c.retrained && (
          <>
            <dt>Retrained</dt>
            <dd>{formatDate(c.retrained)}</dd>
          </>
        )}
        <dt>Updated</dt>
        <dd>{formatDate(c.updated)}</dd>
      </dl>

      <h3>Evaluation</h3>
      {versionsError && <p class="notice error">{versionsError}</p>}
      {versions && versions.versions.length === 0 && (
        <p class="muted">No version yet: the evaluation appears when the first training finishes.</p>
      )}
      {versions && versions.versions.length > 0 && (
        <>
          <label class="inline">
            Version{' '}
            <select
              value={String(shownVersion)}
              onChange={(e) => setShownVersion(Number(e.currentTarget.value))}
              data-testid="version-select"
            >
              {versions.versions.map((v) => (
                <option value={String(v.version_id)} key={v.version_id}>
                  {v.version_id} · {formatDate(v.created)} · {v.examples} examples
                  {v.version_id === versions.current_version_id ? ' (current)' : ''}
                </option>
              ))}
            </select>
          </label>
          {shown && <EvaluationView evaluation={shown.evaluation} />}
        </>
      )}

      <h3>Add classes or images</h3>
      {adding ? (
        <ExamplesForm
          mode={{ kind: 'update', classifier: c }}
          api={api}
          limits={props.limits}
          onFailure={(error) => {
            const failure = props.onFailure(error);
            if (failure.kind === 'not-found') props.onGone(c.classifier_id);
            return failure;
          }}
          onDone={() => {
            setAdding(false);
            props.onChanged({
              tone: 'info',
              text: `${c.name} is retraining with the new examples. The previous version keeps answering classify calls until the new one is ready.`,
            });
          }}
          onCancel={() => setAdding(false)}
        />
      ) : (
        <button onClick={() => setAdding(true)}>Add examples…</button>
      )}

      <h3>Delete</h3>
      {confirming ? (
        <div class="confirm" role="alertdialog" aria-label="Confirm delete">
          <p>
            Delete <strong>{c.name}</strong> with all its examples and versions? Programs that classify with{' '}
            <code>{c.classifier_id}</code> will get a warning instead of its classes. This cannot be undone.
          </p>
          <button class="danger" onClick={remove}>
            Delete for good
          </button>{' '}
          <button onClick={() => setConfirming(false)}>Keep it</button>
        </div>
      ) : (
        <button class="danger" onClick={() => setConfirming(true)}>
          Delete classifier…
        </button>
      )}
      {deleteError && (
        <p class="notice error" role="alert">
          {deleteError}
        </p>
      )}
      {training && <p class="muted small">Deleting now also stops its training.</p>}
    </section>
  );
}
