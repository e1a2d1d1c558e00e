import http from 'node:http';
import https from 'node:https';
import { checkOutgoingUrl, UrlFetchError } from './url-policy';

/** A callback that was not delivered; `permanent` when trying again cannot help (the URL is refused). */
export class CallbackDeliveryError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
  ) {
    super(message);
    this.name = 'CallbackDeliveryError';
  }
}

const USER_AGENT = 'watson-vr-compatible-callbacks/1';

/**
 * POSTs a JSON body to a callback URL under the classify URL rules: http(s) only, the host's
 * every address checked (private ones refused unless allowed) and the connection pinned to them.
 * Redirects are not followed. Resolves on any 2xx answer; the answer's body is discarded.
 * @throws CallbackDeliveryError on a refused URL (permanent), a network error, a timeout or a non-2xx status.
 */
export async function postCallback(
  rawUrl: string,
  body: string,
  headers: Record<string, string>,
  options: { timeoutMs: number; allowPrivateNetworks: boolean },
): Promise<number> {
  let target;
  try {
    target = await checkOutgoingUrl(rawUrl, { allowPrivateNetworks: options.allowPrivateNetworks });
  } catch (error) {
    if (error instanceof UrlFetchError) {
      // A host that cannot be found today may be found tomorrow; an address or scheme refusal stays.
      throw new CallbackDeliveryError(error.description, !/could not be found/.test(error.description));
    }
    throw error;
  }
  const { url, lookup } = target;
  return new Promise<number>((resolve, reject) => {
    const transport = url.protocol === 'https:' ? https : http;
    const request = transport.request(url, {
      method: 'POST',
      agent: false,
      lookup,
      headers: {
        ...headers,
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(body)),
        'user-agent': USER_AGENT,
      },
    });
    const timer = setTimeout(() => {
      request.destroy(
        new CallbackDeliveryError(`the callback URL did not answer within ${options.timeoutMs} ms`, false),
      );
    }, options.timeoutMs);
    request.on('error', (err) => {
      clearTimeout(timer);
      reject(
        err instanceof CallbackDeliveryError
          ? err
          : new CallbackDeliveryError(`the callback request failed: ${err.message}`, false),
      );
    });
    request.on('response', (response) => {
      clearTimeout(timer);
      response.resume();
      request.destroy();
      const status = response.statusCode ?? 0;
      if (status >= 200 && status < 300) resolve(status);
      else reject(new CallbackDeliveryError(`the callback URL answered HTTP ${status}`, false));
    });
    request.end(body);
  });
}
