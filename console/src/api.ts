/** The public Watson v3 API as the console calls it: Basic `apikey:<key>`, `?version=` on every call. */
import type { components, operations } from './api-types';

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

/** The API's shapes, generated from the server's OpenAPI document by `npm run build:console`. */
type Schemas = components['schemas'];

/** The JSON body of an operation's answer with `status`, as the OpenAPI document says. */
type Answer<Op extends keyof operations, Status extends number = 200> = operations[Op]['responses'] extends {
  [S in Status]: { content: { 'application/json': infer Body } };
}
  ? Body
  : never;

export type Classifier = Schemas['Classifier'];
/** One version's evaluation (the classifier's own also names the version it evaluates). */
export type Evaluation = Schemas['HeadEvaluation'];
export type Versions = Answer<'listVersions'>;
export type ClassifyResponse = Answer<'classify'>;

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
    options: {
      query?: Record<string, string>;
      body?: FormData;
      keep?: (status: number, body: unknown) => boolean;
    } = {},
  ): Promise<T> {
    const url = new URL(path, window.location.origin);
    url.searchParams.set('version', API_VERSION);
    for (const [name, value] of Object.entries(options.query ?? {})) url.searchParams.set(name, value);
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        body: options.body,
        headers: { Authorization: basicCredentials(this.key) },
      });
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
    const error = (body as Partial<Schemas['Error']> | undefined)?.error;
    const message =
      typeof error === 'string'
        ? error
        : `${response.status} ${response.statusText}`.trim() || 'The service gave no reason.';
    throw new ApiFailure(kindOf(response.status), response.status, message);
  }

  listClassifiers(): Promise<Classifier[]> {
    return this.call<Answer<'listClassifiers'>>('GET', '/v3/classifiers', { query: { verbose: 'true' } }).then(
      // verbose=true answers full objects only; the document's entry is a union because it cannot tie the shape to the query.
      (r) => r.classifiers as Classifier[],
    );
  }

  createClassifier(form: FormData): Promise<Answer<'createClassifier'>> {
    return this.call('POST', '/v3/classifiers', { body: form });
  }

  updateClassifier(id: string, form: FormData): Promise<Answer<'updateClassifier'>> {
    return this.call('POST', `/v3/classifiers/${encodeURIComponent(id)}`, { body: form });
  }

  deleteClassifier(id: string): Promise<Answer<'deleteClassifier'>> {
    return this.call('DELETE', `/v3/classifiers/${encodeURIComponent(id)}`);
  }

  versions(id: string): Promise<Versions> {
    return this.call('GET', `/v3/classifiers/${encodeURIComponent(id)}/versions`);
  }

  /**
   * POST /v3/classify with an image, or GET with a URL. A 400 whose body has `images` (no valid
   * classifier) is Watson's normal answer shape and is returned, not thrown.
   */
  classify(
    input: { file: File } | { url: string },
    classifierIds: string[],
    threshold: number,
  ): Promise<ClassifyResponse> {
    const keep = (status: number, body: unknown) =>
      status === 400 && Array.isArray((body as Partial<ClassifyResponse> | null)?.images);
    const ids = classifierIds.join(',');
    if ('url' in input) {
      return this.call('GET', '/v3/classify', {
        query: { url: input.url, classifier_ids: ids, threshold: String(threshold) },
        keep,
      });
    }
    const form = new FormData();
    form.append('images_file', input.file, input.file.name || 'pasted-image.png');
    form.append('classifier_ids', ids);
    form.append('threshold', String(threshold));
    return this.call('POST', '/v3/classify', { body: form, keep });
  }
}
