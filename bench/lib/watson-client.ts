import type { ClassifierView } from '../../src/domain/classifier-view';

const VERSION = 'version=2018-03-19';

/** A call the service answered with a status the bench did not expect. */
export class ServiceCallError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    body: string,
  ) {
    super(`${method} ${path} answered ${status}: ${body.slice(0, 500)}`);
    this.name = 'ServiceCallError';
  }
}

/** A classifier that ended `failed`, or never reached the wanted status in time. */
export class ClassifierWaitError extends Error {
  constructor(classifierId: string, reason: string) {
    super(`classifier ${classifierId}: ${reason}`);
    this.name = 'ClassifierWaitError';
  }
}

/** A multipart body prebuilt once, for load generators that replay the same bytes. */
export interface PrebuiltForm {
  body: Buffer;
  contentType: string;
}

/** Zip fields (`<class>_positive_examples`, `negative_examples`) → zip bytes, plus plain fields. */
export function multipartForm(
  files: Record<string, { bytes: Buffer; filename: string }>,
  fields: Record<string, string> = {},
): FormData {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  for (const [name, file] of Object.entries(files))
    form.append(name, new Blob([new Uint8Array(file.bytes)]), file.filename);
  return form;
}

/** Serialises a form the way fetch would send it. */
export async function prebuildForm(form: FormData): Promise<PrebuiltForm> {
  const request = new Request('http://127.0.0.1/', { method: 'POST', body: form });
  return { body: Buffer.from(await request.arrayBuffer()), contentType: request.headers.get('content-type')! };
}

function zipFields(zips: Record<string, Buffer>) {
  return Object.fromEntries(Object.entries(zips).map(([field, bytes]) => [field, { bytes, filename: `${field}.zip` }]));
}

/** The few Watson v3 calls the benches make, authenticated with one API key. */
export class WatsonClient {
  readonly authorization: string;

  constructor(
    readonly baseUrl: string,
    apiKey: string,
  ) {
    this.authorization = `Basic ${Buffer.from(`apikey:${apiKey}`).toString('base64')}`;
  }

  private async call<T>(
    method: string,
    pathAndQuery: string,
    body?: FormData | Buffer,
    contentType?: string,
  ): Promise<T> {
    const headers: Record<string, string> = { Authorization: this.authorization };
    if (contentType) headers['Content-Type'] = contentType;
    const res = await fetch(`${this.baseUrl}${pathAndQuery}`, { method, body, headers });
    const text = await res.text();
    if (res.status !== 200) throw new ServiceCallError(method, pathAndQuery, res.status, text);
    return JSON.parse(text) as T;
  }

  /** POST /v3/classifiers; `zips` maps form fields to zip bytes. */
  createClassifier(name: string, zips: Record<string, Buffer>): Promise<ClassifierView> {
    return this.call('POST', `/v3/classifiers?${VERSION}`, multipartForm(zipFields(zips), { name }));
  }

  /** POST /v3/classifiers/{id}: more examples, then a retrain. */
  updateClassifier(id: string, zips: Record<string, Buffer>): Promise<ClassifierView> {
    return this.call('POST', `/v3/classifiers/${id}?${VERSION}`, multipartForm(zipFields(zips)));
  }

  /** DELETE /v3/classifiers/{id}. */
  async deleteClassifier(id: string): Promise<void> {
    await this.call('DELETE', `/v3/classifiers/${id}?${VERSION}`);
  }

  getClassifier(id: string): Promise<ClassifierView> {
    return this.call('GET', `/v3/classifiers/${id}?${VERSION}`);
  }

  /** POST /v3/classify with a prebuilt multipart body. */
  classify<T = unknown>(form: PrebuiltForm): Promise<T> {
    return this.call('POST', `/v3/classify?${VERSION}`, form.body, form.contentType);
  }

  classifyPath(): string {
    return `/v3/classify?${VERSION}`;
  }

  /** Polls every `everyMs` until `ready`; throws when it becomes `failed` or after `timeoutMs`. */
  async waitUntilReady(
    id: string,
    timeoutMs: number,
    everyMs = 50,
    onView: (view: ClassifierView) => void = () => undefined,
  ): Promise<ClassifierView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const view = await this.getClassifier(id);
      onView(view);
      if (view.status === 'ready') return view;
      if (view.status === 'failed')
        throw new ClassifierWaitError(id, `failed: ${view.explanation ?? 'no explanation'}`);
      if (Date.now() > deadline) throw new ClassifierWaitError(id, `still ${view.status} after ${timeoutMs / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  }
}
