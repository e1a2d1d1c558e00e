/** The public Watson v3 API as the console calls it: Basic `apikey:<key>`, `?version=` on every call. */

export const API_VERSION = '2018-03-19';

/** Why a call failed, so the page can say what to do. */
export type FailureKind = 'unauthorized' | 'not-found' | 'refused' | 'offline' | 'server';

export class ApiFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    /** HTTP status; undefined when no answer came back. */
    readonly status: number | undefined,
    /** The server's `error` text verbatim, or the console's own words when there was no answer. */
    message: string,
  ) {
    super(message);
  }
}

export interface EvaluationClass {
  class: string;
  precision: number;
  recall: number;
  f1: number;
  roc_auc: number | null;
  support: number;
}

export interface Evaluation {
  method: string;
  folds: number;
  examples: number;
  classes: EvaluationClass[];
  accuracy?: number;
  confusion_matrix?: { labels: Array<string | null>; counts: number[][] };
}

export interface Classifier {
  classifier_id: string;
  name: string;
  owner: string;
  status: 'ready' | 'training' | 'retraining' | 'failed' | string;
  explanation?: string;
  created: string;
  updated: string;
  retrained?: string;
  classes: Array<{ class: string }>;
  training_progress?: number;
  evaluation?: Evaluation & { version_id: number; created: string };
}

export interface Version {
  version_id: number;
  created: string;
  classes: Array<{ class: string }>;
  examples: number;
  pack: string;
  evaluation: Evaluation;
}

export interface Versions {
  classifier_id: string;
  current_version_id: number | null;
  versions: Version[];
}

export interface ClassResult {
  class: string;
  score: number;
  type_hierarchy?: string;
}

export interface ClassifyResponse {
  images: Array<{
    image?: string;
    source_url?: string;
    resolved_url?: string;
    classifiers?: Array<{ classifier_id: string; name: string; classes: ClassResult[] }>;
    error?: { code: number; description: string; error_id?: string };
  }>;
  images_processed?: number;
  custom_classes?: number;
  warnings?: Array<{ warning_id: string; description: string }>;
}

function basicCredentials(key: string): string {
  const bytes = new TextEncoder().encode(`apikey:${key}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

function kindOf(status: number): FailureKind {
  if (status === 401) return 'unauthorized';
  if (status === 404) return 'not-found';
  return status >= 500 ? 'server' : 'refused';
}

export class Api {
  constructor(private readonly key: string) {}

  /**
   * One call. Resolves with the JSON body of a 2xx answer (or of any answer `keep` accepts);
   * rejects with ApiFailure carrying the server's message verbatim, or 'offline' when no answer came.
   */
  private async call<T>(
    method: string,
    path: string,
    options: { query?: Record<string, string>; body?: FormData; keep?: (status: number, body: unknown) => boolean } = {},
  ): Promise<T> {
    const url = new URL(path, window.location.origin);
    url.searchParams.set('version', API_VERSION);
    for (const [name, value] of Object.entries(options.query ?? {})) url.searchParams.set(name, value);
    let response: Response;
    try {
      response = await fetch(url, { method, body: options.body, headers: { Authorization: basicCredentials(this.key) } });
    } catch {
      throw new ApiFailure(
        'offline',
        undefined,
        'The service did not answer. Check that it is still running and that this computer is online; the console keeps trying.',
      );
    }
    const text = await response.text();
    let body: unknown;
    try {
      body = text === '' ? {} : JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (body !== undefined && (response.ok || options.keep?.(response.status, body))) return body as T;
    const error = (body as { error?: unknown } | undefined)?.error;
    const message = typeof error === 'string' ? error : `${response.status} ${response.statusText}`.trim() || 'The service gave no reason.';
    throw new ApiFailure(kindOf(response.status), response.status, message);
  }

  listClassifiers(): Promise<Classifier[]> {
    return this.call<{ classifiers: Classifier[] }>('GET', '/v3/classifiers', { query: { verbose: 'true' } }).then((r) => r.classifiers);
  }

  getClassifier(id: string): Promise<Classifier> {
    return this.call('GET', `/v3/classifiers/${encodeURIComponent(id)}`);
  }

  createClassifier(form: FormData): Promise<Classifier> {
    return this.call('POST', '/v3/classifiers', { body: form });
  }

  updateClassifier(id: string, form: FormData): Promise<Classifier> {
    return this.call('POST', `/v3/classifiers/${encodeURIComponent(id)}`, { body: form });
  }

  deleteClassifier(id: string): Promise<unknown> {
    return this.call('DELETE', `/v3/classifiers/${encodeURIComponent(id)}`);
  }

  versions(id: string): Promise<Versions> {
    return this.call('GET', `/v3/classifiers/${encodeURIComponent(id)}/versions`);
  }

  /**
   * POST /v3/classify with an image, or GET with a URL. A 400 whose body has `images` (no valid
   * classifier) is Watson's normal answer shape and is returned, not thrown.
   */
  classify(input: { file: File } | { url: string }, classifierIds: string[], threshold: number): Promise<ClassifyResponse> {
    const keep = (status: number, body: unknown) => status === 400 && Array.isArray((body as ClassifyResponse)?.images);
    const ids = classifierIds.join(',');
    if ('url' in input) {
      return this.call('GET', '/v3/classify', { query: { url: input.url, classifier_ids: ids, threshold: String(threshold) }, keep });
    }
    const form = new FormData();
    form.append('images_file', input.file, input.file.name || 'pasted-image.png');
    form.append('classifier_ids', ids);
    form.append('threshold', String(threshold));
    return this.call('POST', '/v3/classify', { body: form, keep });
  }
}
