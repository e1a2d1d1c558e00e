import { ALICE_KEY, basicAuth } from '../../support/service-harness';

export interface ApiAnswer {
  status: number;
  body: any;
}

/** One request against a service at `baseUrl`, as alice unless `key` says otherwise; the body parsed as JSON when it is JSON. */
export async function callApi(
  baseUrl: string,
  method: string,
  pathAndQuery: string,
  init: { body?: FormData; key?: string; timeoutMs?: number } = {},
): Promise<ApiAnswer> {
  const res = await fetch(`${baseUrl}${pathAndQuery}`, {
    method,
    body: init.body,
    headers: { Authorization: basicAuth(init.key ?? ALICE_KEY) },
    signal: AbortSignal.timeout(init.timeoutMs ?? 60_000),
  });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text }; // not JSON: kept so a failed assertion shows it
  }
}

/** A form serialised as fetch would send it, so a test can pace or cut the bytes itself. */
export async function serializeForm(form: FormData): Promise<{ body: Buffer; contentType: string }> {
  const request = new Request('http://127.0.0.1/', { method: 'POST', body: form });
  return { body: Buffer.from(await request.arrayBuffer()), contentType: request.headers.get('content-type')! };
}
