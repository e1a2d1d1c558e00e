import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { Api, ApiFailure, type Classifier } from './api';
import { ClassifierDetail } from './classifier-detail';
import { ClassifierList } from './classifier-list';
import { ExamplesForm } from './examples-form';
import { readLimits } from './limits';
import { TryIt } from './try-it';

const KEY_STORAGE = 'wvr-console.apiKey';
const limits = readLimits();

type View = { page: 'classifiers'; selected?: string } | { page: 'new' } | { page: 'try' };

/** A message for the top of the page: what happened and what to do. */
export interface Notice {
  tone: 'error' | 'info' | 'success';
  text: string;
}

export function App() {
  const [key, setKey] = useState<string | null>(() => sessionStorage.getItem(KEY_STORAGE));
  const [loginMessage, setLoginMessage] = useState<string | null>(null);
  const api = useMemo(() => (key ? new Api(key) : null), [key]);

  const signOut = useCallback((message: string | null) => {
    sessionStorage.removeItem(KEY_STORAGE);
    setKey(null);
    setLoginMessage(message);
  }, []);

  if (!api) {
    return (
      <Login
        message={loginMessage}
        onSignedIn={(k) => {
          sessionStorage.setItem(KEY_STORAGE, k);
          setLoginMessage(null);
          setKey(k);
        }}
      />
    );
  }
  return <Console api={api} signOut={signOut} />;
}

function Login({ message, onSignedIn }: { message: string | null; onSignedIn: (key: string) => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(message);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    const typed = key.trim();
    if (!typed)
      return setError(
        'Type your API key first. The operator prints one at first start, or makes one with `npm run keys -- add <owner>`.',
      );
    setBusy(true);
    try {
      await new Api(typed).listClassifiers();
      onSignedIn(typed);
    } catch (error) {
      const failure = error as ApiFailure;
      setError(failure.kind === 'unauthorized' ? `The service refused this key: ${failure.message}` : failure.message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <form class="card" onSubmit={submit}>
        <h1>Visual Recognition console</h1>
        <p class="muted">
          Train image classifiers from example zips and try them, with the same Watson v3 API your programs use.
        </p>
        <label>
          API key
          <input
            type="password"
            name="apikey"
            autocomplete="current-password"
            value={key}
            onInput={(e) => setKey(e.currentTarget.value)}
            autofocus
          />
        </label>
        {error && (
          <p class="notice error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        <p class="muted small">
          The key stays in this browser tab only (session storage) and is sent as HTTP Basic{' '}
          <code>apikey:&lt;key&gt;</code>.
        </p>
      </form>
    </main>
  );
}

const goneNotice = (id: string): Notice => ({
  tone: 'error',
  text: `The classifier ${id} no longer exists: it was deleted, perhaps in another tab. Pick another one or create a new one.`,
});

/** How often the list is read: often while something trains, rarely otherwise. */
const POLL_TRAINING_MS = 1500;
const POLL_IDLE_MS = 8000;
const POLL_OFFLINE_MS = 3000;
const NOTICE_FADE_MS = 12_000;

function Console({ api, signOut }: { api: Api; signOut: (message: string | null) => void }) {
  const [classifiers, setClassifiers] = useState<Classifier[] | null>(null);
  const [view, setView] = useState<View>({ page: 'classifiers' });
  const [offline, setOffline] = useState<string | null>(null);
  const [notice, setNotice] = useState<Notice | null>(null);
  const selectedRef = useRef<string | undefined>(undefined);
  selectedRef.current = view.page === 'classifiers' ? view.selected : undefined;
  const timer = useRef<number | undefined>(undefined);
  const listRef = useRef<Classifier[] | null>(null);

  /** Every failed call goes here: a refused key signs out, a lost connection shows a banner. */
  const handleFailure = useCallback(
    (error: unknown): ApiFailure => {
      const failure =
        error instanceof ApiFailure
          ? error
          : new ApiFailure(
              'server',
              undefined,
              `Something went wrong in the console: ${String(error)}. Reload the page.`,
            );
      if (failure.kind === 'unauthorized') {
        signOut(
          `The service no longer accepts your API key: “${failure.message}” It may have been revoked or replaced; sign in with a valid key.`,
        );
      }
      if (failure.kind === 'offline') setOffline(failure.message);
      return failure;
    },
    [signOut],
  );

  const refresh = useCallback(async () => {
    window.clearTimeout(timer.current);
    let next = POLL_IDLE_MS;
    try {
      const list = await api.listClassifiers();
      setOffline(null);
      const selected = selectedRef.current;
      if (
        selected &&
        listRef.current?.some((c) => c.classifier_id === selected) &&
        !list.some((c) => c.classifier_id === selected)
      ) {
        setNotice(goneNotice(selected));
        setView({ page: 'classifiers' });
      }
      listRef.current = list;
      setClassifiers(list);
      if (list.some((c) => c.status === 'training' || c.status === 'retraining')) next = POLL_TRAINING_MS;
    } catch (error) {
      const failure = handleFailure(error);
      if (failure.kind === 'unauthorized') return;
      if (failure.kind === 'offline') next = POLL_OFFLINE_MS;
      else setNotice({ tone: 'error', text: `Could not read your classifiers: ${failure.message}` });
    }
    timer.current = window.setTimeout(refresh, next);
  }, [api, handleFailure]);

  useEffect(() => {
    refresh();
    return () => window.clearTimeout(timer.current);
  }, [refresh]);

  // Good news fades after a while; errors stay until dismissed.
  useEffect(() => {
    if (!notice || notice.tone === 'error') return;
    const fade = window.setTimeout(() => setNotice(null), NOTICE_FADE_MS);
    return () => window.clearTimeout(fade);
  }, [notice]);

  /** A classifier that answered 404 to an action: gone from the list, with a message. */
  const classifierGone = (id: string) => {
    setNotice(goneNotice(id));
    listRef.current = listRef.current?.filter((c) => c.classifier_id !== id) ?? null;
    setClassifiers(listRef.current);
    setView({ page: 'classifiers' });
  };

  const selected =
    view.page === 'classifiers' && view.selected
      ? classifiers?.find((c) => c.classifier_id === view.selected)
      : undefined;

  return (
    <div class="shell">
      <header class="top">
        <strong class="brand">Visual Recognition</strong>
        <nav>
          <button
            class={view.page === 'classifiers' ? 'tab active' : 'tab'}
            onClick={() => setView({ page: 'classifiers' })}
          >
            Classifiers
          </button>
          <button class={view.page === 'new' ? 'tab active' : 'tab'} onClick={() => setView({ page: 'new' })}>
            New classifier
          </button>
          <button class={view.page === 'try' ? 'tab active' : 'tab'} onClick={() => setView({ page: 'try' })}>
            Try it
          </button>
        </nav>
        <button class="link" onClick={() => signOut(null)}>
          Sign out
        </button>
      </header>
      {offline && (
        <p class="notice error banner" role="alert" data-testid="offline">
          {offline}
        </p>
      )}
      {notice && (
        <p
          class={`notice ${notice.tone} banner`}
          role={notice.tone === 'error' ? 'alert' : 'status'}
          data-testid="notice"
        >
          {notice.text}{' '}
          <button class="link" onClick={() => setNotice(null)}>
            Dismiss
          </button>
        </p>
      )}
      <main class="content">
        {view.page === 'classifiers' && (
          <div class="split">
            <ClassifierList
              classifiers={classifiers}
              selected={view.page === 'classifiers' ? view.selected : undefined}
              onSelect={(id) => {
                setNotice(null);
                setView({ page: 'classifiers', selected: id });
              }}
              onNew={() => setView({ page: 'new' })}
            />
            {selected ? (
              <ClassifierDetail
                key={selected.classifier_id}
                api={api}
                classifier={selected}
                limits={limits}
                onFailure={handleFailure}
                onGone={classifierGone}
                onChanged={(message) => {
                  if (message) setNotice(message);
                  refresh();
                }}
                onUpdated={(updated) => {
                  listRef.current =
                    listRef.current?.map((c) => (c.classifier_id === updated.classifier_id ? updated : c)) ?? null;
                  setClassifiers(listRef.current);
                  refresh();
                }}
                onDeleted={(name) => {
                  setNotice({ tone: 'success', text: `Deleted ${name}, with its examples and versions.` });
                  setView({ page: 'classifiers' });
                  refresh();
                }}
              />
            ) : (
              <section class="card empty">
                <p>
                  {classifiers?.length
                    ? 'Pick a classifier to see its classes, evaluation and versions.'
                    : 'Create a classifier from a few zips of example images, then try it on new images.'}
                </p>
              </section>
            )}
          </div>
        )}
        {view.page === 'new' && (
          <ExamplesForm
            mode={{ kind: 'create' }}
            api={api}
            limits={limits}
            onFailure={handleFailure}
            onDone={(created) => {
              setNotice({
                tone: 'success',
                text: `Created ${created.name}. It is training now; the list follows its progress.`,
              });
              listRef.current = [
                ...(listRef.current ?? []).filter((c) => c.classifier_id !== created.classifier_id),
                created,
              ];
              setClassifiers(listRef.current);
              setView({ page: 'classifiers', selected: created.classifier_id });
              refresh();
            }}
          />
        )}
        {view.page === 'try' && (
          <TryIt api={api} classifiers={classifiers ?? []} limits={limits} onFailure={handleFailure} />
        )}
      </main>
    </div>
  );
}
