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
import dns from 'node:dns';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import net, { type LookupFunction } from 'node:net';
import { sniffImageType } from '../ml/decode-image';

export interface UrlFetchOptions {
  maxBytes: number;
  /** Deadline for the whole fetch, redirects included. */
  timeoutMs: number;
  maxRedirects: number;
  /** Operator switch: allow hosts that resolve to private, loopback or other non-public addresses. */
  allowPrivateNetworks: boolean;
  /** Test seam: resolves a host name instead of the system resolver (`dns.lookup`). */
  resolveHost?: (hostname: string) => Promise<string[]>;
  /** Test seam: decides which resolved addresses may be connected to, instead of `allowPrivateNetworks`. */
  isAllowedAddress?: (ip: string) => boolean;
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

/** The URL for messages that may be logged: a user:password part is replaced by "***". */
function withoutCredentials(url: string): string {
  if (!URL.canParse(url)) return url;
  const parsed = new URL(url);
  if (!parsed.username && !parsed.password) return url;
  parsed.username = '***';
  parsed.password = '';
  return parsed.href;
}

/** The image at a URL could not be fetched; `description` says why, for the user. */
export class UrlFetchError extends Error {
  readonly url: string;
  readonly description: string;

  constructor(url: string, description: string, options?: { cause?: unknown }) {
    super(`Could not fetch image URL ${withoutCredentials(url)}: ${description}`, options);
    this.name = 'UrlFetchError';
    this.url = url;
    this.description = description;
  }
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

// ---------------------------------------------------------------------------------------------
// Address policy

/** [network, prefix length] of IPv4 blocks that are not publicly routable (IANA special-purpose registry). */
const NON_PUBLIC_IPV4_BLOCKS: readonly (readonly [string, number])[] = [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, where cloud metadata services live
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast, deprecated
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, and the broadcast address 255.255.255.255
];

function ipv4ToUint32(ip: string): number {
  return ip.split('.').reduce((value, octet) => ((value << 8) | Number(octet)) >>> 0, 0);
}

const NON_PUBLIC_IPV4 = NON_PUBLIC_IPV4_BLOCKS.map(([network, bits]) => ({ network: ipv4ToUint32(network), bits }));

function isPublicIpv4(value: number): boolean {
  return !NON_PUBLIC_IPV4.some(({ network, bits }) => value >>> (32 - bits) === network >>> (32 - bits));
}

/** The eight 16-bit groups of a valid IPv6 address (zone id dropped, trailing dotted IPv4 expanded). */
function ipv6Groups(ip: string): number[] {
  let text = ip.split('%')[0];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = ipv4ToUint32(dotted[1]);
    text = `${text.slice(0, dotted.index)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const [head, tail] = text.split('::');
  if (tail === undefined) return parse(head);
  const left = parse(head);
  const right = parse(tail);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

function isPublicIpv6(groups: number[]): boolean {
  const embeddedIpv4 = (at: number) => ((groups[at] << 16) | groups[at + 1]) >>> 0;
  const zeroUpTo = (count: number) => groups.slice(0, count).every((g) => g === 0);
  // ::ffff:a.b.c.d reaches the IPv4 host itself; judge it as that host.
  if (zeroUpTo(5) && groups[5] === 0xffff) return isPublicIpv4(embeddedIpv4(6));
  // NAT64 well-known prefix 64:ff9b::/96 reaches the embedded IPv4 host.
  if (groups[0] === 0x64 && groups[1] === 0xff9b && groups.slice(2, 6).every((g) => g === 0)) {
    return isPublicIpv4(embeddedIpv4(6));
  }
  // 6to4 2002::/16 tunnels to the IPv4 host in bits 16–47.
  if (groups[0] === 0x2002) return isPublicIpv4(embeddedIpv4(1));
  // Only global unicast 2000::/3 is public: this refuses ::, ::1, IPv4-compatible ::a.b.c.d,
  // unique-local fc00::/7, link-local fe80::/10, multicast ff00::/8 and the other reserved blocks.
  if ((groups[0] & 0xe000) !== 0x2000) return false;
  if (groups[0] === 0x2001 && groups[1] < 0x200) return false; // 2001::/23 IETF protocol assignments (Teredo, benchmarking, ORCHID)
  if (groups[0] === 0x2001 && groups[1] === 0x0db8) return false; // documentation
  if ((groups[0] & 0xfff0) === 0x3ff0) return false; // 3fff::/20 documentation
  return true;
}

/** Whether an IP address is publicly routable; false for anything that is not a valid IP address. */
export function isPublicAddress(ip: string): boolean {
  if (net.isIPv4(ip)) return isPublicIpv4(ipv4ToUint32(ip));
  if (net.isIPv6(ip)) return isPublicIpv6(ipv6Groups(ip));
  return false;
}

// ---------------------------------------------------------------------------------------------
// Fetching

interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** What the fetch is doing, so a timeout can say where it stopped. */
interface FetchProgress {
  receivingBody: boolean;
}

/** Builds errors that name the hop: the user's own URL, or where it redirected. */
class Hop {
  constructor(
    readonly sourceUrl: string,
    readonly url: URL,
    readonly redirectsSoFar: number,
  ) {}

  fail(description: string, cause?: unknown): UrlFetchError {
    return new UrlFetchError(this.sourceUrl, description, cause === undefined ? undefined : { cause });
  }

  /** "The URL's host" on the first hop; names the redirect target after that. */
  get hostPhrase(): string {
    return this.redirectsSoFar === 0
      ? `The URL's host ${this.url.hostname}`
      : `The URL redirects to ${this.url.href}, whose host ${this.url.hostname}`;
  }
}

function checkScheme(hop: Hop): void {
  if (hop.url.protocol === 'http:' || hop.url.protocol === 'https:') return;
  throw hop.fail(
    hop.redirectsSoFar === 0
      ? `The URL scheme ${hop.url.protocol} is not supported; give an http:// or https:// URL.`
      : `The URL redirects to ${hop.url.protocol} URL ${hop.url.href}; only http and https are followed.`,
  );
}

async function resolveAddresses(hop: Hop, options: AddressPolicy): Promise<ResolvedAddress[]> {
  const host = hop.url.hostname.replace(/^\[|\]$/g, '');
  const withFamily = (address: string): ResolvedAddress => ({ address, family: net.isIPv6(address) ? 6 : 4 });
  if (net.isIP(host)) return [withFamily(host)];
  let addresses: string[];
  try {
    addresses = options.resolveHost
      ? await options.resolveHost(host)
      : (await dns.promises.lookup(host, { all: true, verbatim: true })).map((a) => a.address);
  } catch (err) {
    throw hop.fail(`${hop.hostPhrase} could not be found; check the host name.`, err);
  }
  if (addresses.length === 0) throw hop.fail(`${hop.hostPhrase} could not be found; check the host name.`);
  return addresses.map(withFamily);
}

type AddressPolicy = Pick<UrlFetchOptions, 'allowPrivateNetworks' | 'resolveHost' | 'isAllowedAddress'>;

function checkAddresses(hop: Hop, addresses: ResolvedAddress[], options: AddressPolicy, verb = 'fetching'): void {
  const isAllowed = options.isAllowedAddress ?? ((ip: string) => options.allowPrivateNetworks || isPublicAddress(ip));
  const refused = addresses.find((a) => !isAllowed(a.address));
  if (!refused) return;
  const isLiteral = refused.address === hop.url.hostname.replace(/^\[|\]$/g, '');
  const what = isLiteral
    ? `${hop.hostPhrase} is a private address`
    : `${hop.hostPhrase} resolves to ${refused.address}, a private address`;
  throw hop.fail(`${what}; ${verb} it is not allowed. Give a publicly reachable URL.`);
}

/**
 * The same address policy for another outgoing request (a training-end callback): parses the
 * URL, allows only http and https, resolves the host and checks every address. The returned
 * `lookup` answers with the checked addresses only, so the connection cannot be rebound to
 * another host. Every failure is a UrlFetchError whose description says what to change.
 */
export async function checkOutgoingUrl(rawUrl: string, policy: AddressPolicy): Promise<{ url: URL; lookup: LookupFunction }> {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new UrlFetchError(rawUrl, 'The URL is not a valid absolute URL; give an http:// or https:// URL.');
  }
  const hop = new Hop(rawUrl, url, 0);
  checkScheme(hop);
  const addresses = await resolveAddresses(hop, policy);
  checkAddresses(hop, addresses, policy, 'sending to');
  return { url, lookup: pinnedLookup(addresses) };
}

/** A `lookup` for http.request that answers with the already checked addresses and never asks DNS again. */
function pinnedLookup(addresses: ResolvedAddress[]): LookupFunction {
  return (_hostname, lookupOptions, callback) => {
    const wanted = lookupOptions.family;
    const candidates = wanted === 4 || wanted === 6 ? addresses.filter((a) => a.family === wanted) : addresses;
    if (candidates.length === 0) {
      const err: NodeJS.ErrnoException = new Error(`no IPv${wanted} address among the checked ones`);
      err.code = 'ENOTFOUND';
      callback(err, '');
    } else if (lookupOptions.all) {
      callback(null, candidates);
    } else {
      callback(null, candidates[0].address, candidates[0].family);
    }
  };
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
async function readImageBody(hop: Hop, response: IncomingMessage, contentType: string | null, maxBytes: number): Promise<Buffer> {
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
    throw hop.fail(`The connection to the URL was closed after ${formatSize(total)}, before the whole image arrived.`, err);
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
