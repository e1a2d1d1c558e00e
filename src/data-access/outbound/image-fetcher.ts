/**
 * Fetches the image behind a user-supplied URL (`/v3/classify?url=…`) without
 * letting the URL reach into the operator's network or tie the service up.
 *
 * Policy:
 * - Only http and https, on every hop.
 * - Each hop's host is resolved here, every resolved address is checked, and the
 *   connection goes to those checked addresses (a pinned `lookup`), so a DNS
 *   answer that changes between check and connect (DNS rebinding) is harmless.
 *   Private, loopback, link-local and other non-public addresses are refused
 *   unless the operator allows private networks.
 * - Redirects are followed by hand (never by the HTTP client), at most
 *   `maxRedirects` of them, each hop checked like the first.
 * - The body is streamed with a byte cap; a Content-Length over the cap is
 *   refused before reading, and a body that grows past it is cut off at once.
 * - One deadline covers everything (DNS, connect, headers, body, redirects), so
 *   a silent or slow-drip server cannot hold a request.
 * - The body must be an accepted image type by its first bytes; an HTML page or
 *   a JSON error is refused as soon as its first bytes arrive.
 * Every failure is a UrlFetchError whose description tells the user what went wrong.
 */
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { sniffImageType } from '../../ml';
import {
  checkAddresses,
  checkScheme,
  Hop,
  pinnedLookup,
  resolveAddresses,
  UrlFetchError,
  type AddressPolicy,
  type ResolvedAddress,
} from './url-policy';

export interface UrlFetchOptions extends AddressPolicy {
  maxBytes: number;
  /** Deadline for the whole fetch, redirects included. */
  timeoutMs: number;
  maxRedirects: number;
}

export interface FetchedImage {
  /** The URL as the user gave it. */
  sourceUrl: string;
  /** The URL the image was finally read from, after redirects. */
  resolvedUrl: string;
  bytes: Buffer;
  /** The response's media type (lowercase, parameters dropped), or null when it sent none. */
  contentType: string | null;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** Enough leading bytes for sniffImageType to recognise every accepted type (WebP needs 12). */
const SNIFF_BYTES = 12;

/** Image types first: CDNs that pick a format by Accept would otherwise send AVIF, which is not accepted. */
const ACCEPT = 'image/jpeg, image/png, image/webp, image/gif, image/tiff, */*;q=0.5';
const USER_AGENT = 'watson-vr-compatible-image-fetcher/1';

const MB = 1024 * 1024;

function formatSize(bytes: number): string {
  if (bytes >= MB) return `${Number((bytes / MB).toFixed(1))} MB`;
  if (bytes >= 1024) return `${Number((bytes / 1024).toFixed(1))} KB`;
  return `${bytes} bytes`;
}

const formatSeconds = (ms: number) => `${Number((ms / 1000).toFixed(2))} s`;

/** What the fetch is doing, so a timeout can say where it stopped. */
interface FetchProgress {
  receivingBody: boolean;
}

function describeNetworkError(hop: Hop, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const where = hop.redirectsSoFar === 0 ? 'the URL' : `${hop.url.href} (where the URL redirects)`;
  switch (code) {
    case 'ECONNREFUSED':
      return `${hop.hostPhrase} refused the connection.`;
    case 'ENOTFOUND':
      return `${hop.hostPhrase} could not be found; check the host name.`;
    case 'ECONNRESET':
    case 'EPIPE':
      return `The connection to ${where} was closed before the image arrived.`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${hop.hostPhrase} cannot be reached.`;
  }
  if (/CERT|SSL|TLS|ERR_SSL/.test(code) || /SSL|TLS|certificate/i.test(String((err as Error).message))) {
    return `The secure (https) connection to ${where} failed: ${(err as Error).message}.`;
  }
  return `Fetching ${where} failed: ${err instanceof Error ? err.message : String(err)}.`;
}

interface OpenResponse {
  request: http.ClientRequest;
  response: IncomingMessage;
}

function sendRequest(hop: Hop, addresses: ResolvedAddress[], signal: AbortSignal): Promise<OpenResponse> {
  return new Promise((resolve, reject) => {
    const transport = hop.url.protocol === 'https:' ? https : http;
    const request = transport.request(hop.url, {
      method: 'GET',
      // A fresh connection per hop: no socket reused across hosts, closed after the response.
      agent: false,
      lookup: pinnedLookup(addresses),
      signal,
      headers: { accept: ACCEPT, 'user-agent': USER_AGENT },
    });
    request.on('error', (err) => reject(signal.aborted ? err : hop.fail(describeNetworkError(hop, err), err)));
    request.once('response', (response) => resolve({ request, response }));
    request.end();
  });
}

function mediaType(response: IncomingMessage): string | null {
  const header = response.headers['content-type'];
  const type = header?.split(';')[0].trim().toLowerCase();
  return type ? type : null;
}

function notAnImage(hop: Hop, contentType: string | null): UrlFetchError {
  if (contentType && !contentType.startsWith('image/')) return hop.fail(`The URL serves ${contentType}, not an image.`);
  const servedAs = contentType ? ` (it is served as ${contentType})` : '';
  return hop.fail(`The URL's content is not a JPEG, PNG, GIF, TIFF or WebP image${servedAs}.`);
}

/** Reads the body, cutting the connection as soon as it passes maxBytes or its first bytes are not an image. */
async function readImageBody(
  hop: Hop,
  response: IncomingMessage,
  contentType: string | null,
  maxBytes: number,
): Promise<Buffer> {
  const tooBig = () => hop.fail(`The image at the URL is larger than ${formatSize(maxBytes)}, the most allowed.`);
  const declared = Number(response.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    throw hop.fail(`The image at the URL is ${formatSize(declared)}; at most ${formatSize(maxBytes)} is allowed.`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  let sniffed = false;
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) throw tooBig();
      chunks.push(chunk);
      if (!sniffed && total >= SNIFF_BYTES) {
        if (!sniffImageType(Buffer.concat(chunks))) throw notAnImage(hop, contentType);
        sniffed = true;
      }
    }
  } catch (err) {
    if (err instanceof UrlFetchError) throw err;
    throw hop.fail(
      `The connection to the URL was closed after ${formatSize(total)}, before the whole image arrived.`,
      err,
    );
  }
  const bytes = Buffer.concat(chunks);
  if (bytes.length === 0) throw hop.fail('The URL answered with an empty body, not an image.');
  if (!sniffed && !sniffImageType(bytes)) throw notAnImage(hop, contentType);
  return bytes;
}

async function fetchFollowingRedirects(
  sourceUrl: string,
  options: UrlFetchOptions,
  signal: AbortSignal,
  progress: FetchProgress,
): Promise<FetchedImage> {
  let url: URL;
  try {
    url = new URL(sourceUrl);
  } catch {
    throw new UrlFetchError(sourceUrl, 'The URL is not a valid absolute URL; give an http:// or https:// URL.');
  }
  for (let redirects = 0; ; redirects++) {
    const hop = new Hop(sourceUrl, url, redirects);
    checkScheme(hop);
    const addresses = await resolveAddresses(hop, options);
    checkAddresses(hop, addresses, options);
    signal.throwIfAborted();
    const { request, response } = await sendRequest(hop, addresses, signal);
    try {
      const status = response.statusCode ?? 0;
      if (REDIRECT_STATUSES.has(status)) {
        const location = response.headers.location;
        if (!location) throw hop.fail(`The URL answered HTTP ${status} (a redirect) without saying where to.`);
        if (redirects >= options.maxRedirects) {
          throw hop.fail(`The URL redirects more than ${options.maxRedirects} times; give the image's final URL.`);
        }
        try {
          url = new URL(location, url);
        } catch {
          throw hop.fail(`The URL redirects to an invalid location: ${location}.`);
        }
        continue;
      }
      if (status < 200 || status > 299) {
        const reason = response.statusMessage ? ` (${response.statusMessage})` : '';
        throw hop.fail(`The URL answered HTTP ${status}${reason}.`);
      }
      const contentType = mediaType(response);
      progress.receivingBody = true;
      const bytes = await readImageBody(hop, response, contentType, options.maxBytes);
      return { sourceUrl, resolvedUrl: url.href, bytes, contentType };
    } finally {
      // Ends the hop's connection: a redirect's or refused body is never read.
      request.destroy();
    }
  }
}

/** Fetches the image at `url` under the given limits; every failure is a UrlFetchError. */
export async function fetchImageFromUrl(url: string, options: UrlFetchOptions): Promise<FetchedImage> {
  const controller = new AbortController();
  const progress: FetchProgress = { receivingBody: false };
  let timer: NodeJS.Timeout | undefined;
  // A race, not only an abort signal: a DNS lookup cannot be aborted, and the deadline must hold anyway.
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const limit = formatSeconds(options.timeoutMs);
      const description = progress.receivingBody
        ? `The URL did not deliver the whole image within ${limit}.`
        : `The URL did not answer within ${limit}.`;
      reject(new UrlFetchError(url, description));
      controller.abort();
    }, options.timeoutMs);
  });
  try {
    return await Promise.race([fetchFollowingRedirects(url, options, controller.signal, progress), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
