import { useEffect, useState } from 'preact/hooks';
import type { Api, ApiFailure, Classifier, ClassifyResponse } from './api';
import { useDropZone } from './drop-zone';
import { formatBytes, type Limits } from './limits';

const BUILT_INS = [
  { id: 'default', label: 'default (objects, colours)' },
  { id: 'explicit', label: 'explicit (adult content)' },
];

/** Classify one image (dropped, pasted, picked or by URL) with chosen classifiers; scores as bars. */
export function TryIt(props: {
  api: Api;
  classifiers: Classifier[];
  limits: Limits;
  onFailure: (error: unknown) => ApiFailure;
}) {
  const { api, classifiers, limits } = props;
  const [file, setFile] = useState<File | null>(null);
  const [preview, setPreview] = useState<string | null>(null);
  const [url, setUrl] = useState('');
  const [chosen, setChosen] = useState<Set<string>>(
    () => new Set(['default', ...classifiers.filter((c) => c.status === 'ready').map((c) => c.classifier_id)]),
  );
  const [threshold, setThreshold] = useState(0.5);
  const [result, setResult] = useState<ClassifyResponse | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const pick = (picked: File | null | undefined) => {
    if (!picked) return;
    setError(null);
    setResult(null);
    if (picked.size > limits.maxClassifyImageBytes) {
      setError(
        `That image is ${formatBytes(picked.size)}; the service classifies images of at most ${formatBytes(limits.maxClassifyImageBytes)}. Pick a smaller one.`,
      );
      return;
    }
    setFile(picked);
    setUrl('');
  };

  useEffect(() => {
    if (!file) return setPreview(null);
    const objectUrl = URL.createObjectURL(file);
    setPreview(objectUrl);
    return () => URL.revokeObjectURL(objectUrl);
  }, [file]);

  // Pasting an image anywhere on this page picks it.
  useEffect(() => {
    const onPaste = (event: ClipboardEvent) => {
      const item = Array.from(event.clipboardData?.items ?? []).find(
        (i) => i.kind === 'file' && i.type.startsWith('image/'),
      );
      if (item) pick(item.getAsFile());
    };
    document.addEventListener('paste', onPaste);
    return () => document.removeEventListener('paste', onPaste);
  }, []);

  const drop = useDropZone((transfer) => pick(transfer.files[0]));

  const toggle = (id: string) =>
    setChosen((previous) => {
      const next = new Set(previous);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });

  const classify = async (event: Event) => {
    event.preventDefault();
    setError(null);
    if (!file && !url.trim()) return setError('Drop, paste or pick an image, or type its URL, first.');
    if (chosen.size === 0) return setError('Tick at least one classifier.');
    setBusy(true);
    try {
      // Threshold 0 brings every score; the slider then hides those below it without another call.
      setResult(await api.classify(file ? { file } : { url: url.trim() }, [...chosen], 0));
    } catch (e) {
      const failure = props.onFailure(e);
      if (failure.kind !== 'unauthorized') setError(`The service could not classify it: ${failure.message}`);
    } finally {
      setBusy(false);
    }
  };

  const customs = classifiers.filter((c) => c.status !== 'failed');
  return (
    <div class="split">
      <form class="card" onSubmit={classify} aria-label="Try a classifier">
        <h2>Try it</h2>
        <div class={`slot image-drop${drop.over ? ' over' : ''}`} {...drop.handlers}>
          {preview ? (
            <img src={preview} alt="The image to classify" class="preview" />
          ) : (
            <p class="drop-hint">Drop or paste an image here</p>
          )}
          <label class="picker small">
            choose an image
            <input
              type="file"
              accept="image/*,.zip"
              data-testid="image-input"
              onChange={(e) => pick(e.currentTarget.files?.[0])}
            />
          </label>
        </div>
        <label>
          …or an image URL
          <input
            type="url"
            placeholder="https://example.com/photo.jpg"
            value={url}
            onInput={(e) => {
              setUrl(e.currentTarget.value);
              if (e.currentTarget.value) setFile(null);
            }}
          />
        </label>
        <fieldset>
          <legend>Classifiers</legend>
          {customs.length === 0 && <p class="muted small">No custom classifiers yet.</p>}
          {customs.map((c) => (
            <label class="check" key={c.classifier_id}>
              <input type="checkbox" checked={chosen.has(c.classifier_id)} onChange={() => toggle(c.classifier_id)} />
              {c.name}{' '}
              <span class="muted small">({c.status === 'training' ? 'still training: not usable yet' : c.status})</span>
            </label>
          ))}
          {BUILT_INS.map((b) => (
            <label class="check" key={b.id}>
              <input type="checkbox" checked={chosen.has(b.id)} onChange={() => toggle(b.id)} />
              {b.label}
            </label>
          ))}
        </fieldset>
        <label>
          Threshold: <output data-testid="threshold">{threshold.toFixed(2)}</output>
          <input
            type="range"
            min={0}
            max={1}
            step={0.01}
            value={threshold}
            onInput={(e) => setThreshold(Number(e.currentTarget.value))}
            aria-label="Threshold"
          />
        </label>
        {error && (
          <p class="notice error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Classifying…' : 'Classify'}
        </button>
      </form>
      <section class="card results" aria-label="Results">
        <h2>Scores</h2>
        {!result && (
          <p class="muted">
            Scores appear here, one bar per class, highest first. Classes below the threshold are hidden.
          </p>
        )}
        {result && <Results result={result} threshold={threshold} />}
      </section>
    </div>
  );
}

/** Classes shown per classifier before "show all": the built-in `default` names up to a hundred at threshold 0. */
const FIRST_CLASSES = 10;
const BUILT_IN_IDS = new Set(BUILT_INS.map((b) => b.id));

function Results({ result, threshold }: { result: ClassifyResponse; threshold: number }) {
  const [expanded, setExpanded] = useState<Set<string>>(new Set());
  return (
    <div data-testid="results">
      {result.warnings?.map((w) => (
        <p class="notice warning" key={w.warning_id + w.description}>
          <strong>{w.warning_id}</strong>: {w.description}
        </p>
      ))}
      {result.images.map((image, i) => (
        <div key={i}>
          <p class="muted small">{image.image ?? image.resolved_url ?? image.source_url}</p>
          {image.error && (
            <p class="notice error" role="alert">
              {image.error.description}
            </p>
          )}
          {[...(image.classifiers ?? [])]
            // The person's own classifiers first, the built-ins after.
            .sort((a, b) => Number(BUILT_IN_IDS.has(a.classifier_id)) - Number(BUILT_IN_IDS.has(b.classifier_id)))
            .map((c) => {
              const passing = c.classes.filter((k) => k.score >= threshold);
              const shown = expanded.has(c.classifier_id) ? passing : passing.slice(0, FIRST_CLASSES);
              return (
                <div class="classifier-result" key={c.classifier_id} data-classifier={c.classifier_id}>
                  <h3>{c.name}</h3>
                  {passing.length === 0 && <p class="muted small">No class reaches {threshold.toFixed(2)}.</p>}
                  {shown.map((k) => (
                    <div class="score" key={k.class}>
                      <div class="score-label">
                        <span class="class-name">{k.class}</span> <span class="score-value">{k.score.toFixed(3)}</span>
                        {k.type_hierarchy && <span class="muted small hierarchy">{k.type_hierarchy}</span>}
                      </div>
                      <div class="bar">
                        <div class="fill" style={{ width: `${Math.round(k.score * 100)}%` }} />
                      </div>
                    </div>
                  ))}
                  {passing.length > shown.length && (
                    <button
                      type="button"
                      class="link small"
                      onClick={() => setExpanded((all) => new Set(all).add(c.classifier_id))}
                    >
                      show {passing.length - shown.length} more
                    </button>
                  )}
                  {c.classes.length > passing.length && (
                    <p class="muted small">{c.classes.length - passing.length} below the threshold hidden.</p>
                  )}
                </div>
              );
            })}
        </div>
      ))}
    </div>
  );
}
