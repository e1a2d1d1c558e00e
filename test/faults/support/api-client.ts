import { ALICE_KEY, basicAuth } from '../../support/service-harness';

export interface ApiAnswer {
  status: number;
  body: any;
}

export interface CallOptions {
  body?: FormData;
  key?: string;
  /** Further request headers (X-Watson-Metadata, say). */
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** One request against a service at `baseUrl`, as alice unless `key` says otherwise; the body parsed as JSON when it is JSON. */
export async function callApi(
  baseUrl: string,
  method: string,
  pathAndQuery: string,
  init: CallOptions = {},
): Promise<ApiAnswer> {
  const res = await fetch(`${baseUrl}${pathAndQuery}`, {
    method,
    body: init.body,
    headers: { ...init.headers, Authorization: basicAuth(init.key ?? ALICE_KEY) },
    signal: AbortSignal.timeout(init.timeoutMs ?? 60_000),
  });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text }; // not JSON: kept so a failed assertion shows it
  }
}
