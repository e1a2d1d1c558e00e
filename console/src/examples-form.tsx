import { useState } from 'preact/hooks';
import type { Api, ApiFailure, Classifier } from './api';
import { useDropZone } from './drop-zone';
import { formatBytes, type Limits } from './limits';
import { FORBIDDEN_CLASS_CHARACTERS, filesOfDrop, filesOfInput, prepareExamples, type PreparedZip } from './zips';

type Mode = { kind: 'create' } | { kind: 'update'; classifier: Classifier };

interface Slot {
  id: number;
  className: string;
  zip: PreparedZip | null;
  /** Why the dropped files could not be used. */
  error: string | null;
  busy: boolean;
}

let nextSlotId = 1;
const emptySlot = (): Slot => ({ id: nextSlotId++, className: '', zip: null, error: null, busy: false });

/** Problems that stop the upload (`blocking`) and warnings the server may still refuse on. */
export function checkExamples(
  mode: Mode['kind'],
  name: string,
  slots: Slot[],
  negatives: Slot,
  limits: Limits,
): { blocking: string[]; warnings: string[] } {
  const blocking: string[] = [];
  const warnings: string[] = [];
  if (mode === 'create' && name.trim() === '') blocking.push('Give the classifier a name.');
  const used = slots.filter((s) => s.zip || s.className.trim());
  const seen = new Set<string>();
  for (const slot of used) {
    const cls = slot.className.trim();
    if (!cls) blocking.push('Every class slot with examples needs a class name.');
    else if (!slot.zip) blocking.push(`Drop examples on the class “${cls}”, or clear its name.`);
    const bad = cls.match(FORBIDDEN_CLASS_CHARACTERS);
    if (bad)
      blocking.push(
        `The class name “${cls}” contains “${bad[0]}”; class names cannot contain $ * - { } \\ | / ' " \` [ ].`,
      );
    if (cls && seen.has(cls)) blocking.push(`The class “${cls}” appears twice; put all its images in one slot.`);
    seen.add(cls);
  }
  const zips = [
    ...used.map((s) => ({ what: `“${s.className.trim() || 'unnamed'}”`, zip: s.zip })),
    { what: 'the negative examples', zip: negatives.zip },
  ];
  let total = 0;
  for (const { what, zip } of zips) {
    if (!zip) continue;
    total += zip.bytes;
    if (zip.bytes > limits.maxZipBytes) {
      blocking.push(
        `The zip for ${what} is ${formatBytes(zip.bytes)}; each zip may hold at most ${formatBytes(limits.maxZipBytes)}. Split it over two uploads.`,
      );
    }
    if (zip.images !== undefined && zip.images > limits.maxImagesPerZip) {
      blocking.push(
        `The zip for ${what} holds ${zip.images} images; at most ${limits.maxImagesPerZip} per zip are accepted.`,
      );
    }
    if (zip.images !== undefined && zip.images < limits.minImagesPerZip) {
      warnings.push(
        `The zip for ${what} seems to hold only ${zip.images} image${zip.images === 1 ? '' : 's'}; the service needs at least ${limits.minImagesPerZip} per zip and will probably refuse it.`,
      );
    }
    if (zip.images === undefined)
      warnings.push(`The zip for ${what} could not be read here; the service will check it.`);
  }
  if (total > limits.maxRequestBytes) {
    blocking.push(
      `All zips together are ${formatBytes(total)}; one upload may carry at most ${formatBytes(limits.maxRequestBytes)}. Send some classes later with “Add examples”.`,
    );
  }
  const positives = used.filter((s) => s.zip).length;
  if (mode === 'create' && (positives === 0 || positives + (negatives.zip ? 1 : 0) < 2)) {
    blocking.push('Fill at least two slots: two classes, or one class and the negative examples.');
  }
  if (mode === 'update' && positives === 0 && !negatives.zip) blocking.push('Drop examples on at least one slot.');
  return { blocking, warnings };
}

/**
 * Named class slots plus a negatives slot, each taking a zip, images or folders (dragged or picked).
 * Creates a classifier (`create`) or adds classes and images to one (`update`).
 */
export function ExamplesForm(props: {
  mode: Mode;
  api: Api;
  limits: Limits;
  onFailure: (error: unknown) => ApiFailure;
  onDone: (classifier: Classifier) => void;
  onCancel?: () => void;
}) {
  const { mode, limits } = props;
  const [name, setName] = useState('');
  const [slots, setSlots] = useState<Slot[]>(() =>
    mode.kind === 'create' ? [emptySlot(), emptySlot()] : [emptySlot()],
  );
  const [negatives, setNegatives] = useState<Slot>(() => ({ ...emptySlot(), className: 'negative' }));
  const [refusal, setRefusal] = useState<string | null>(null);
  const [sending, setSending] = useState(false);
  const [attempted, setAttempted] = useState(false);

  const updateSlot = (id: number, change: Partial<Slot>) => {
    if (id === negatives.id) setNegatives((s) => ({ ...s, ...change }));
    else setSlots((all) => all.map((s) => (s.id === id ? { ...s, ...change } : s)));
  };

  const accept = async (slot: Slot, picked: Promise<Array<{ file: File; path: string }>>) => {
    updateSlot(slot.id, { busy: true, error: null });
    try {
      const zip = await prepareExamples(await picked);
      const className = slot.id === negatives.id || slot.className.trim() ? slot.className : zip.suggestedName;
      updateSlot(slot.id, { zip, className, busy: false });
    } catch (error) {
      updateSlot(slot.id, { busy: false, error: (error as Error).message });
    }
  };

  const { blocking, warnings } = checkExamples(mode.kind, name, slots, negatives, limits);

  const submit = async (event: Event) => {
    event.preventDefault();
    setAttempted(true);
    setRefusal(null);
    if (blocking.length > 0) return;
    const form = new FormData();
    if (mode.kind === 'create') form.append('name', name.trim());
    for (const slot of slots) {
      if (slot.zip)
        form.append(`${slot.className.trim()}_positive_examples`, slot.zip.blob, `${slot.className.trim()}.zip`);
    }
    if (negatives.zip) form.append('negative_examples', negatives.zip.blob, 'negative_examples.zip');
    setSending(true);
    try {
      const result =
        mode.kind === 'create'
          ? await props.api.createClassifier(form)
          : await props.api.updateClassifier(mode.classifier.classifier_id, form);
      props.onDone(result);
    } catch (error) {
      const failure = props.onFailure(error);
      if (failure.kind !== 'unauthorized') setRefusal(failure.message);
    } finally {
      setSending(false);
    }
  };

  const existing = mode.kind === 'update' ? mode.classifier.classes.map((c) => c.class) : [];
  return (
    <form
      class={mode.kind === 'create' ? 'card examples' : 'examples'}
      onSubmit={submit}
      aria-label={mode.kind === 'create' ? 'New classifier' : 'Add examples'}
    >
      {mode.kind === 'create' && (
        <>
          <h2>New classifier</h2>
          <p class="muted">
            Drop a zip of example images on each class (or the images themselves, or folders of them: they are zipped
            here). Each zip needs {limits.minImagesPerZip} to {limits.maxImagesPerZip} images and at most{' '}
            {formatBytes(limits.maxZipBytes)}. Negative examples show what is none of the classes; they are optional.
          </p>
          <label>
            Name
            <input
              name="name"
              value={name}
              onInput={(e) => setName(e.currentTarget.value)}
              placeholder="e.g. dog breeds"
            />
          </label>
        </>
      )}
      {mode.kind === 'update' && (
        <p class="muted">
          Name a new class, or an existing one ({existing.join(', ')}) to add images to it. The current version keeps
          answering until the retrain finishes.
        </p>
      )}
      <datalist id="existing-classes">
        {existing.map((c) => (
          <option value={c} key={c} />
        ))}
      </datalist>
      <div class="slots">
        {slots.map((slot, i) => (
          <DropSlot
            key={slot.id}
            slot={slot}
            title={`Class ${i + 1}`}
            onName={(className) => updateSlot(slot.id, { className })}
            onFiles={(picked) => accept(slot, picked)}
            onClear={
              slots.length > 1
                ? () => setSlots((all) => all.filter((s) => s.id !== slot.id))
                : () => updateSlot(slot.id, { zip: null, className: '', error: null })
            }
          />
        ))}
        <DropSlot
          slot={negatives}
          title="Negative examples (optional)"
          negative
          onFiles={(picked) => accept(negatives, picked)}
          onClear={() => setNegatives((s) => ({ ...s, zip: null, error: null }))}
        />
      </div>
      <button type="button" onClick={() => setSlots((all) => [...all, emptySlot()])}>
        + Add a class
      </button>
      {warnings.map((w) => (
        <p class="notice warning" key={w}>
          {w}
        </p>
      ))}
      {attempted &&
        blocking.map((b) => (
          <p class="notice error" key={b} data-testid="check">
            {b}
          </p>
        ))}
      {refusal && (
        <div class="notice error" role="alert" data-testid="refusal">
          <strong>The service refused the upload:</strong>
          <p class="verbatim">{refusal}</p>
          <p class="small">Nothing was stored. Fix what it names and send again.</p>
        </div>
      )}
      <div class="row">
        <button type="submit" class="primary" disabled={sending || slots.some((s) => s.busy) || negatives.busy}>
          {sending ? 'Uploading…' : mode.kind === 'create' ? 'Create and train' : 'Upload and retrain'}
        </button>
        {props.onCancel && (
          <button type="button" onClick={props.onCancel}>
            Cancel
          </button>
        )}
      </div>
    </form>
  );
}

function DropSlot(props: {
  slot: Slot;
  title: string;
  negative?: boolean;
  onName?: (name: string) => void;
  onFiles: (picked: Promise<Array<{ file: File; path: string }>>) => void;
  onClear: () => void;
}) {
  const { slot } = props;
  const { over, handlers } = useDropZone((transfer) => props.onFiles(filesOfDrop(transfer)));
  return (
    <div
      class={`slot${over ? ' over' : ''}${slot.zip ? ' filled' : ''}`}
      data-testid={props.negative ? 'slot-negative' : 'slot'}
      {...handlers}
    >
      <div class="row spread">
        <strong>{props.title}</strong>
        <button type="button" class="link small" onClick={props.onClear} aria-label={`Clear ${props.title}`}>
          clear
        </button>
      </div>
      {!props.negative && (
        <input
          class="class-name"
          aria-label={`${props.title} name`}
          placeholder="class name"
          list="existing-classes"
          value={slot.className}
          onInput={(e) => props.onName?.(e.currentTarget.value)}
        />
      )}
      <p class="drop-hint">
        {slot.busy
          ? 'Reading…'
          : slot.zip
            ? `${slot.zip.label} · ${slot.zip.images ?? '?'} images · ${formatBytes(slot.zip.bytes)}`
            : 'Drop a zip, images or a folder here'}
      </p>
      <div class="pickers small">
        <label class="picker">
          choose files
          <input
            type="file"
            multiple
            accept=".zip,image/*"
            data-testid="file-input"
            onChange={(e) => props.onFiles(Promise.resolve(filesOfInput(e.currentTarget.files)))}
          />
        </label>
        <label class="picker">
          choose a folder
          <input
            type="file"
            {...{ webkitdirectory: '' }}
            onChange={(e) => props.onFiles(Promise.resolve(filesOfInput(e.currentTarget.files)))}
          />
        </label>
      </div>
      {slot.error && <p class="notice error small">{slot.error}</p>}
    </div>
  );
}
