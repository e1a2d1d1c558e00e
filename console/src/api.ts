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

export type Example = Schemas['Example'];
export type ExamplePage = Answer<'listExamples'>;
export type Mistake = Schemas['Mistake'];
export type MistakePage = Answer<'listExampleMistakes'>;
export type ExampleChanges = Schemas['ExampleChanges'];
export type ChangedClassifier = Answer<'changeExamples'>;

/** A thumbnail as the page shows it: an object URL of the JPEG, and the ETag to revalidate it with. */
export interface Thumbnail {
  url: string;
  etag: string | null;
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
    options: {
      query?: Record<string, string>;
      body?: FormData;
      /** Sent as application/json. */
      json?: unknown;
      keep?: (status: number, body: unknown) => boolean;
    } = {},
  ): Promise<T> {
    const headers: Record<string, string> = {};
    let body: BodyInit | undefined = options.body;
    if (options.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(options.json);
    }
    const response = await this.send(method, path, options.query ?? {}, headers, body);
    return this.parse<T>(response, options.keep);
  }

  /** The request itself; no answer at all is an 'offline' ApiFailure. */
  private async send(
    method: string,
    path: string,
    query: Record<string, string>,
    headers: Record<string, string>,
    body?: BodyInit,
  ): Promise<Response> {
    const url = new URL(path, window.location.origin);
    url.searchParams.set('version', API_VERSION);
    for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value);
    try {
      return await fetch(url, { method, body, headers: { ...headers, Authorization: basicCredentials(this.key) } });
    } catch {
      throw new ApiFailure(
        'offline',
        undefined,
        'The service did not answer. Check that it is still running and that this computer is online; the console keeps trying.',
      );
    }
  }

  /** The JSON body of a 2xx answer (or one `keep` accepts); otherwise an ApiFailure with the server's message. */
  private async parse<T>(response: Response, keep?: (status: number, body: unknown) => boolean): Promise<T> {
    const text = await response.text();
    let body: unknown;
    try {
      body = text === '' ? {} : JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (body !== undefined && (response.ok || keep?.(response.status, body))) return body as T;
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

  /** One page of a classifier's examples, newest first: of one class, of the negatives, or all. */
  examples(
    id: string,
    filter: { class: string } | { negative: true } | Record<string, never>,
    limit: number,
    pageToken?: string,
  ): Promise<ExamplePage> {
    const query: Record<string, string> = { limit: String(limit) };
    if ('class' in filter) query.class = filter.class;
    if ('negative' in filter) query.negative = 'true';
    if (pageToken) query.page_token = pageToken;
    return this.call('GET', `/v3/classifiers/${encodeURIComponent(id)}/examples`, { query });
  }

  /** One page of what the evaluation suggests is wrong, most confident first. */
  mistakes(id: string, limit: number, pageToken?: string): Promise<MistakePage> {
    const query: Record<string, string> = { limit: String(limit) };
    if (pageToken) query.page_token = pageToken;
    return this.call('GET', `/v3/classifiers/${encodeURIComponent(id)}/examples/mistakes`, { query });
  }

  /** Removes and moves examples in one call: the classifier answers `retraining` (the next version). */
  changeExamples(id: string, changes: ExampleChanges): Promise<ChangedClassifier> {
    return this.call('POST', `/v3/classifiers/${encodeURIComponent(id)}/examples/changes`, { json: changes });
  }

  /**
   * An example's thumbnail. With `known` (what an earlier call gave) it asks with If-None-Match and a
   * 304 answers `known` itself, so an unchanged thumbnail is not downloaded again. The caller owns the
   * object URL of a new answer (URL.revokeObjectURL when it is no longer shown).
   */
  async thumbnail(id: string, exampleId: string, known?: Thumbnail): Promise<Thumbnail> {
    const headers: Record<string, string> = known?.etag ? { 'If-None-Match': known.etag } : {};
    const response = await this.send(
      'GET',
      `/v3/classifiers/${encodeURIComponent(id)}/examples/${encodeURIComponent(exampleId)}/thumbnail`,
      {},
      headers,
    );
    if (response.status === 304 && known) return known;
    if (!response.ok) return this.parse<never>(response);
    const blob = await response.blob();
    return { url: URL.createObjectURL(blob), etag: response.headers.get('ETag') };
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
