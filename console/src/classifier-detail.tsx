import { useEffect, useRef, useState } from 'preact/hooks';
import type { Api, ApiFailure, Classifier, ExampleChanges, Versions } from './api';
import type { Notice } from './app';
import { formatDate, StatusBadge } from './classifier-list';
import { changesText, VersionComparison } from './compare';
import { EvaluationView } from './evaluation';
import { ClassGrid, NeedsALook } from './examples';
import { ExamplesForm } from './examples-form';
import type { Limits } from './limits';

const TABS = [
  { id: 'overview', label: 'Overview' },
  { id: 'examples', label: 'Examples' },
  { id: 'mistakes', label: 'Needs a look' },
] as const;
type Tab = (typeof TABS)[number]['id'];

/** A change of examples this page sent, followed until its version serves. */
interface SentChange {
  /** The version serving when it was sent (undefined: none yet). */
  fromVersion: number | undefined;
  /**
   * That version's entry as it was then: a removal takes the versions trained on the removed example out
   * of the list once its retrain publishes, and the page still shows what it was.
   */
  before: Versions['versions'][number] | undefined;
  moved: number;
  removed: number;
  sentAt: number;
  /** When the page saw the new version serving (or the retrain fail). */
  doneAt?: number;
}

/** The version a version replaced: from the history when it records one, else the one before it in the list. */
function previousOf(versions: Versions, versionId: number): number | undefined {
  const trained = [...versions.history].reverse().find((h) => h.version_id === versionId);
  if (trained?.previous_version_id != null) return trained.previous_version_id;
  const index = versions.versions.findIndex((v) => v.version_id === versionId);
  return index > 0 ? versions.versions[index - 1].version_id : undefined;
}

/** Tabs as WAI-ARIA describes them: arrows, Home and End move between them. */
function Tabs(props: { tab: Tab; onTab: (tab: Tab) => void; idPrefix: string }) {
  const refs = useRef<Array<HTMLButtonElement | null>>([]);
  const onKey = (event: KeyboardEvent, index: number) => {
    const to =
      event.key === 'ArrowRight'
        ? (index + 1) % TABS.length
        : event.key === 'ArrowLeft'
          ? (index + TABS.length - 1) % TABS.length
          : event.key === 'Home'
            ? 0
            : event.key === 'End'
              ? TABS.length - 1
              : undefined;
    if (to === undefined) return;
    event.preventDefault();
    props.onTab(TABS[to].id);
    refs.current[to]?.focus();
  };
  return (
    <div class="subtabs" role="tablist" aria-label="Classifier views">
      {TABS.map((t, i) => (
        <button
          key={t.id}
          ref={(el) => {
            refs.current[i] = el;
          }}
          role="tab"
          id={`${props.idPrefix}-tab-${t.id}`}
          aria-controls={`${props.idPrefix}-panel-${t.id}`}
          aria-selected={props.tab === t.id}
          tabIndex={props.tab === t.id ? 0 : -1}
          class={props.tab === t.id ? 'subtab active' : 'subtab'}
          onClick={() => props.onTab(t.id)}
          onKeyDown={(e) => onKey(e, i)}
        >
          {t.label}
        </button>
      ))}
    </div>
  );
}

export function ClassifierDetail(props: {
  api: Api;
  classifier: Classifier;
  limits: Limits;
  onFailure: (error: unknown) => ApiFailure;
  onGone: (id: string) => void;
  onChanged: (notice?: Notice) => void;
  /** The classifier as an answer gave it, before the list is read again. */
  onUpdated: (classifier: Classifier) => void;
  onDeleted: (name: string) => void;
}) {
  const { api, classifier: c } = props;
  const [versions, setVersions] = useState<Versions | null>(null);
  const [versionsError, setVersionsError] = useState<string | null>(null);
  const [shownVersion, setShownVersion] = useState<number | null>(null);
  const [confirming, setConfirming] = useState(false);
  const [deleteError, setDeleteError] = useState<string | null>(null);
  const [adding, setAdding] = useState(false);
  const [tab, setTab] = useState<Tab>('overview');
  const [sent, setSent] = useState<SentChange | null>(null);
  const [applied, setApplied] = useState(0);
  const [baseline, setBaseline] = useState<number | null>(null);
  const training = c.status === 'training' || c.status === 'retraining';
  const currentVersion = c.evaluation?.version_id;

  // A sent change is done when a newer version serves, or when the retrain failed.
  useEffect(() => {
    if (!sent || sent.doneAt !== undefined || training) return;
    if (c.status === 'failed' || currentVersion !== sent.fromVersion) setSent({ ...sent, doneAt: Date.now() });
  }, [sent, training, c.status, currentVersion]);

  /** One `changes` call; the server's refusal comes back as text for the selection bar to show. */
  const apply = async (changes: ExampleChanges): Promise<string | null> => {
    try {
      const changed = await api.changeExamples(c.classifier_id, changes);
      setSent({
        fromVersion: currentVersion,
        before: versions?.versions.find((v) => v.version_id === currentVersion),
        moved: changed.changes.moved,
        removed: changed.changes.removed,
        sentAt: Date.now(),
      });
      setApplied((n) => n + 1);
      props.onUpdated(changed);
      return null;
    } catch (error) {
      const failure = props.onFailure(error);
      // The examples may have changed meanwhile (another tab): show them as they are now.
      setApplied((n) => n + 1);
      return failure.message;
    }
  };
  const reloadKey = `${currentVersion}/${applied}`;

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
  const againstId = shown && versions ? (baseline ?? previousOf(versions, shown.version_id)) : undefined;
  const against = versions?.versions.find((v) => v.version_id === againstId && v !== shown);
  const sentBefore = sent?.before;
  const sentAfter = versions?.versions.find((v) => v.version_id === currentVersion);
  const idPrefix = `c-${c.classifier_id}`;
  return (
    <section class="card detail" aria-label={`Classifier ${c.name}`}>
      <div class="row spread">
        <div>
          <h2>{c.name}</h2>
          <div class="muted small">{c.classifier_id}</div>
        </div>
        <StatusBadge classifier={c} />
      </div>
      {/* A change of examples being followed says this itself, below. */}
      {c.status === 'retraining' && !(sent && sent.doneAt === undefined) && (
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
      {sent && (
        <div class="notice change-panel" role="status" aria-live="polite" data-testid="change-panel">
          {sent.doneAt === undefined ? (
            <p data-testid="change-progress">
              Retraining with your change ({sent.moved} moved, {sent.removed} removed): {c.training_progress ?? 0}%
              after {Math.round((Date.now() - sent.sentAt) / 1000)} s.{' '}
              {sent.fromVersion !== undefined
                ? `Version ${sent.fromVersion} keeps answering classify calls until the new one is ready.`
                : ''}
            </p>
          ) : c.status === 'failed' ? (
            <p class="notice error">The retrain with your change failed: {c.explanation ?? 'no reason was given.'}</p>
          ) : (
            <>
              <p data-testid="change-done">
                Version {currentVersion} is ready ({sent.moved} moved, {sent.removed} removed), trained in{' '}
                <span data-testid="change-seconds">{((sent.doneAt - sent.sentAt) / 1000).toFixed(1)}</span> s.
              </p>
              {sentBefore && sentAfter && sentBefore !== sentAfter && (
                <VersionComparison before={sentBefore} after={sentAfter} />
              )}
            </>
          )}
          <button class="link" onClick={() => setSent(null)}>
            Dismiss
          </button>
        </div>
      )}
      <Tabs tab={tab} onTab={setTab} idPrefix={idPrefix} />
      {tab === 'examples' && (
        <div role="tabpanel" id={`${idPrefix}-panel-examples`} aria-labelledby={`${idPrefix}-tab-examples`}>
          <ClassGrid api={api} classifier={c} reloadKey={reloadKey} apply={apply} onFailure={props.onFailure} />
        </div>
      )}
      {tab === 'mistakes' && (
        <div role="tabpanel" id={`${idPrefix}-panel-mistakes`} aria-labelledby={`${idPrefix}-tab-mistakes`}>
          <NeedsALook api={api} classifier={c} reloadKey={reloadKey} apply={apply} onFailure={props.onFailure} />
        </div>
      )}
      {tab === 'overview' && (
        <div role="tabpanel" id={`${idPrefix}-panel-overview`} aria-labelledby={`${idPrefix}-tab-overview`}>
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
                  onChange={(e) => {
                    setShownVersion(Number(e.currentTarget.value));
                    setBaseline(null);
                  }}
                  data-testid="version-select"
                >
                  {versions.versions.map((v) => (
                    <option value={String(v.version_id)} key={v.version_id}>
                      {v.version_id} · {formatDate(v.created)} · {v.examples} examples
                      {changesText(v) ? ` · ${changesText(v)}` : ''}
                      {v.version_id === versions.current_version_id ? ' (current)' : ''}
                    </option>
                  ))}
                </select>
              </label>
              {shown && <EvaluationView evaluation={shown.evaluation} />}
              {shown && versions.versions.length > 1 && (
                <>
                  <h4>Against an earlier version</h4>
                  <label class="inline">
                    Compare with version{' '}
                    <select
                      value={String(against?.version_id ?? '')}
                      onChange={(e) => setBaseline(Number(e.currentTarget.value))}
                      data-testid="baseline-select"
                    >
                      {!against && <option value="">choose…</option>}
                      {versions.versions
                        .filter((v) => v !== shown)
                        .map((v) => (
                          <option value={String(v.version_id)} key={v.version_id}>
                            {v.version_id} · {formatDate(v.created)}
                          </option>
                        ))}
                    </select>
                  </label>
                  {against && <VersionComparison before={against} after={shown} />}
                </>
              )}
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
        </div>
      )}
    </section>
  );
}
