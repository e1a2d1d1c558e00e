import { useCallback, useEffect, useState } from 'preact/hooks';
import type { ApiFailure, Api, Classifier, Example, ExampleChanges, Mistake } from './api';
import { formatDate } from './classifier-list';
import { groupMistakes } from './mistake-groups';
import { ExampleThumbnail } from './thumbnail';

/** Examples per page of a class grid, and mistakes per page of "Needs a look" (the API allows up to 200). */
export const GRID_PAGE = 24;
export const MISTAKES_PAGE = 20;

/** Sends one `changes` call; resolves with null when it was applied, or the server's reason when refused. */
export type ApplyChanges = (changes: ExampleChanges) => Promise<string | null>;

const labelOf = (e: Example) => (e.negative ? 'negatives' : (e.class ?? '—'));
/** Examples stored before file names were kept have none: their id stands in. */
const nameOf = (e: Example) => e.file_name ?? e.example_id;
const score = (value: number) => value.toFixed(2);

/** What the serving version's out-of-fold evaluation made of an example, in words. */
function Verdict({ example }: { example: Example }) {
  const e = example.evaluation;
  if (!e) return <span class="verdict muted small">not evaluated yet</span>;
  if (e.correct)
    return <span class="verdict ok small">{e.predicted_class ? `✓ ${score(e.score)}` : `✓ no class`}</span>;
  return (
    <span class="verdict wrong small" data-testid="verdict">
      looks like <strong>{e.predicted_class ?? 'no class'}</strong> ({score(e.score)})
    </span>
  );
}

/** One example: its thumbnail, file name and verdict, and a checkbox to select it (the whole tile is its label). */
function ExampleTile(props: {
  api: Api;
  classifierId: string;
  example: Example;
  selected: boolean;
  onToggle: (example: Example) => void;
}) {
  const { example: e } = props;
  return (
    <label
      class={props.selected ? 'tile selected' : 'tile'}
      data-testid="example"
      data-example={e.example_id}
      data-file={nameOf(e)}
      title={`${nameOf(e)} · ${labelOf(e)} · added ${formatDate(e.created)}`}
    >
      <input type="checkbox" checked={props.selected} onChange={() => props.onToggle(e)} />
      <ExampleThumbnail
        api={props.api}
        classifierId={props.classifierId}
        exampleId={e.example_id}
        alt={`${nameOf(e)} in ${labelOf(e)}`}
      />
      <span class="file small">{nameOf(e)}</span>
      <span class="small muted">in {labelOf(e)}</span>
      <Verdict example={e} />
    </label>
  );
}

/** Selected examples by id: one selection per tab, cleared once a change is applied. */
function useSelection() {
  const [selected, setSelected] = useState<Map<string, Example>>(new Map());
  const toggle = useCallback(
    (example: Example) =>
      setSelected((old) => {
        const next = new Map(old);
        if (next.has(example.example_id)) next.delete(example.example_id);
        else next.set(example.example_id, example);
        return next;
      }),
    [],
  );
  const clear = useCallback(() => setSelected(new Map()), []);
  return { selected, toggle, clear, setSelected };
}

const NEGATIVE = '\u0000negative';

/**
 * What to do with the selected examples: move them all to a class or to the negatives, or remove them
 * (after a confirmation), each as one `changes` call. The server's refusal shows verbatim.
 */
function SelectionBar(props: {
  selected: Example[];
  classes: string[];
  retraining: boolean;
  apply: ApplyChanges;
  onDone: () => void;
  onClear: () => void;
}) {
  const [target, setTarget] = useState<string>('');
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const count = props.selected.length;
  useEffect(() => {
    setError(null);
    if (count === 0) setConfirming(false);
  }, [count]);

  const run = async (changes: ExampleChanges) => {
    setBusy(true);
    setError(null);
    const refused = await props.apply(changes);
    setBusy(false);
    setConfirming(false);
    if (refused) setError(refused);
    else props.onDone();
  };
  const move = () => {
    if (!target) return setError('Pick where to move the selected examples first: a class, or the negatives.');
    run({
      move: props.selected.map((e) =>
        target === NEGATIVE
          ? { example_id: e.example_id, negative: true as const }
          : { example_id: e.example_id, class: target },
      ),
    });
  };
  const plural = count === 1 ? 'example' : 'examples';

  return (
    <div class="selection-bar" role="region" aria-label="Change the selected examples" data-testid="selection-bar">
      <span>
        <strong data-testid="selected-count">{count}</strong> {plural} selected
        {count > 0 && (
          <button class="link" onClick={props.onClear}>
            Clear
          </button>
        )}
      </span>
      <label class="inline">
        Move to{' '}
        <select value={target} onChange={(e) => setTarget(e.currentTarget.value)} data-testid="move-target">
          <option value="">choose…</option>
          {props.classes.map((c) => (
            <option value={c} key={c}>
              class {c}
            </option>
          ))}
          <option value={NEGATIVE}>the negatives</option>
        </select>
      </label>
      <button class="primary" disabled={count === 0 || busy} onClick={move}>
        {busy ? 'Applying…' : 'Move'}
      </button>
      {confirming ? (
        <span class="confirm" role="alertdialog" aria-label="Confirm removal">
          Remove {count} {plural} for good? No later version trains on {count === 1 ? 'it' : 'them'}.{' '}
          <button
            class="danger"
            disabled={busy}
            onClick={() => run({ remove: props.selected.map((e) => e.example_id) })}
          >
            Remove for good
          </button>{' '}
          <button onClick={() => setConfirming(false)}>Keep</button>
        </span>
      ) : (
        <button class="danger" disabled={count === 0 || busy} onClick={() => setConfirming(true)}>
          Remove…
        </button>
      )}
      {props.retraining && (
        <p class="muted small">
          A retrain is running: a change now is applied on top of it, as the version after (or with) it.
        </p>
      )}
      {error && (
        <p class="notice error" role="alert" data-testid="change-error">
          The change was not applied: {error}
        </p>
      )}
    </div>
  );
}

/** Paged loading of a list: the items so far, the next page's token, and the last failure's message. */
function usePages<T>(loadPage: (token?: string) => Promise<{ items: T[]; next?: string }>, reload: unknown[]) {
  const [items, setItems] = useState<T[] | null>(null);
  const [next, setNext] = useState<string | undefined>();
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [generation, setGeneration] = useState(0);

  useEffect(() => {
    let live = true;
    setLoading(true);
    setError(null);
    loadPage().then(
      (page) => {
        if (!live) return;
        setItems(page.items);
        setNext(page.next);
        setLoading(false);
      },
      (e: Error) => {
        if (!live) return;
        setError(e.message);
        setLoading(false);
      },
    );
    return () => {
      live = false;
    };
  }, [...reload, generation]);

  const more = async () => {
    if (!next) return;
    setLoading(true);
    setError(null);
    try {
      const page = await loadPage(next);
      setItems((old) => [...(old ?? []), ...page.items]);
      setNext(page.next);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setLoading(false);
    }
  };
  return { items, next, error, loading, more, again: () => setGeneration((g) => g + 1) };
}

/** A paged list's error (with a retry) or its first load; nothing once items are there. */
function PageState(props: { what: string; error: string | null; loading: boolean; again: () => void }) {
  if (props.error)
    return (
      <p class="notice error" role="alert">
        Could not read {props.what}: {props.error}{' '}
        <button class="link" onClick={props.again}>
          Try again
        </button>
      </p>
    );
  return props.loading ? <p class="muted">Loading…</p> : null;
}

function LoadMore(props: { next?: string; loading: boolean; more: () => void; what: string }) {
  if (!props.next) return null;
  return (
    <button class="load-more" disabled={props.loading} onClick={props.more}>
      {props.loading ? 'Loading…' : `Load more ${props.what}`}
    </button>
  );
}

/** The class grid: one class's (or the negatives') examples with thumbnails, paged, newest first. */
export function ClassGrid(props: {
  api: Api;
  classifier: Classifier;
  /** Changes when the examples may have changed (a change applied, a new version serving). */
  reloadKey: string;
  apply: ApplyChanges;
  onFailure: (error: unknown) => ApiFailure;
}) {
  const c = props.classifier;
  const classes = c.classes.map((k) => k.class);
  const [shown, setShown] = useState<string>(classes[0] ?? NEGATIVE);
  const { selected, toggle, clear } = useSelection();
  const filter = shown === NEGATIVE ? { negative: true as const } : { class: shown };
  const pages = usePages(
    (token) =>
      props.api
        .examples(c.classifier_id, filter, GRID_PAGE, token)
        .then((p) => ({ items: p.examples, next: p.next_page_token }))
        .catch((error) => Promise.reject(props.onFailure(error))),
    [props.api, c.classifier_id, shown, props.reloadKey],
  );
  const retraining = c.status === 'retraining' || c.status === 'training';

  return (
    <div class="class-grid" data-testid="class-grid">
      <div class="class-picker" role="group" aria-label="Class to show">
        {classes.map((k) => (
          <button
            key={k}
            aria-pressed={shown === k}
            class={shown === k ? 'chip-button on' : 'chip-button'}
            onClick={() => setShown(k)}
          >
            {k}
          </button>
        ))}
        <button
          aria-pressed={shown === NEGATIVE}
          class={shown === NEGATIVE ? 'chip-button on' : 'chip-button'}
          onClick={() => setShown(NEGATIVE)}
        >
          Negatives
        </button>
      </div>
      <SelectionBar
        selected={[...selected.values()]}
        classes={classes}
        retraining={retraining}
        apply={props.apply}
        onDone={clear}
        onClear={clear}
      />
      <PageState what="the examples" error={pages.error} loading={pages.items === null} again={pages.again} />
      {pages.items?.length === 0 && (
        <p class="muted">{shown === NEGATIVE ? 'No negative examples.' : `No examples in ${shown}.`}</p>
      )}
      {!!pages.items?.length && (
        <div class="tiles" role="list" aria-label={shown === NEGATIVE ? 'Negative examples' : `Examples of ${shown}`}>
          {pages.items.map((e) => (
            <div role="listitem" key={e.example_id}>
              <ExampleTile
                api={props.api}
                classifierId={c.classifier_id}
                example={e}
                selected={selected.has(e.example_id)}
                onToggle={toggle}
              />
            </div>
          ))}
        </div>
      )}
      <LoadMore next={pages.next} loading={pages.loading} more={pages.more} what="examples" />
    </div>
  );
}

/** The fix a mislabelled example most likely needs, in one click: move it to the class it was taken for. */
function QuickMove(props: { example: Example; to: string; apply: ApplyChanges }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const move = async () => {
    setBusy(true);
    setError(null);
    const refused = await props.apply({ move: [{ example_id: props.example.example_id, class: props.to }] });
    setBusy(false);
    if (refused) setError(refused);
  };
  return (
    <div class="quick-move">
      <button onClick={move} disabled={busy} aria-label={`Move ${nameOf(props.example)} to ${props.to}`}>
        {busy ? 'Moving…' : `Move it to ${props.to}`}
      </button>
      {error && (
        <p class="notice error" role="alert">
          The change was not applied: {error}
        </p>
      )}
    </div>
  );
}

/**
 * "Needs a look": examples the evaluation got wrong (labelled one class, predicted another) and
 * near-duplicates filed under two classes, most confident first, to select and fix.
 */
export function NeedsALook(props: {
  api: Api;
  classifier: Classifier;
  reloadKey: string;
  apply: ApplyChanges;
  onFailure: (error: unknown) => ApiFailure;
}) {
  const c = props.classifier;
  const classes = c.classes.map((k) => k.class);
  const { selected, toggle, clear } = useSelection();
  const pages = usePages<Mistake>(
    (token) =>
      props.api
        .mistakes(c.classifier_id, MISTAKES_PAGE, token)
        .then((p) => ({ items: p.mistakes, next: p.next_page_token }))
        .catch((error) => Promise.reject(props.onFailure(error))),
    [props.api, c.classifier_id, props.reloadKey],
  );
  const retraining = c.status === 'retraining' || c.status === 'training';
  const tile = (e: Example) => (
    <ExampleTile
      api={props.api}
      classifierId={c.classifier_id}
      example={e}
      selected={selected.has(e.example_id)}
      onToggle={toggle}
    />
  );

  return (
    <div class="needs-a-look" data-testid="needs-a-look">
      <p class="muted small">
        From the out-of-fold evaluation of the version serving now
        {c.evaluation ? ` (version ${c.evaluation.version_id})` : ''}: each example was scored by a model that did not
        train on it. A wrong label, or an image that belongs to no class, usually shows up here.
        {retraining && ' A retrain is running: this list is updated when its version is ready.'}
      </p>
      <SelectionBar
        selected={[...selected.values()]}
        classes={classes}
        retraining={retraining}
        apply={props.apply}
        onDone={clear}
        onClear={clear}
      />
      <PageState what="what needs a look" error={pages.error} loading={pages.items === null} again={pages.again} />
      {pages.items?.length === 0 && (
        <p class="muted" data-testid="no-mistakes">
          Nothing needs a look: the evaluation agrees with every label, and no near-duplicate sits in two classes.
        </p>
      )}
      {!!pages.items?.length && (
        <ol class="mistakes" aria-label="Examples that need a look">
          {groupMistakes(pages.items).map((g) => (
            <li
              class="mistake"
              key={g.example.example_id}
              data-testid="mistake"
              data-kinds={[g.mislabeled && 'mislabeled', g.duplicates.length && 'cross_class_duplicate']
                .filter(Boolean)
                .join(' ')}
            >
              {tile(g.example)}
              <div class="why">
                {g.mislabeled && (
                  <p data-testid="mislabeled-reason">
                    <strong>Maybe mislabelled.</strong> Labelled <strong>{labelOf(g.example)}</strong>; a model that did
                    not train on it says <strong>{g.mislabeled.predicted ?? 'no class'}</strong>
                    {g.example.evaluation && <> (score {score(g.example.evaluation.score)})</>}.
                  </p>
                )}
                {g.duplicates.length > 0 && (
                  <p data-testid="duplicates-reason">
                    <strong>Nearly the same picture</strong> as {g.duplicates.length}{' '}
                    {g.duplicates.length === 1 ? 'example' : 'examples'} in{' '}
                    {[...new Set(g.duplicates.map((d) => labelOf(d.example)))].join(', ')}: one picture cannot teach two
                    classes; keep it in one.
                  </p>
                )}
                <div class="small muted">confidence {score(g.confidence)}</div>
                {g.mislabeled?.predicted && !retraining && (
                  <QuickMove example={g.example} to={g.mislabeled.predicted} apply={props.apply} />
                )}
                {g.duplicates.length > 0 && (
                  <ul class="partners" aria-label={`Near-duplicates of ${nameOf(g.example)}`}>
                    {g.duplicates.map((d) => (
                      <li key={d.example.example_id}>
                        {tile(d.example)}
                        <span class="small muted">distance {d.distance.toFixed(3)}</span>
                      </li>
                    ))}
                  </ul>
                )}
              </div>
            </li>
          ))}
        </ol>
      )}
      <LoadMore next={pages.next} loading={pages.loading} more={pages.more} what="mistakes" />
    </div>
  );
}
