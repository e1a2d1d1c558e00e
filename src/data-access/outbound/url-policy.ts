/**
 * The policy every outgoing request to a user-supplied URL follows (an image to classify, a
 * training-end callback): only http and https; the host resolved here and every address checked
 * (private, loopback, link-local and other non-public addresses refused unless the operator allows
 * private networks); the connection pinned to the checked addresses, so DNS rebinding is harmless.
 * Every failure is a UrlFetchError whose description tells the user what to change.
 */
import dns from 'node:dns';
import net, { type LookupFunction } from 'node:net';

/** How hosts are resolved and which addresses may be connected to. */
export interface AddressPolicy {
  /** Operator switch: allow hosts that resolve to private, loopback or other non-public addresses. */
  allowPrivateNetworks: boolean;
  /** Test seam: resolves a host name instead of the system resolver (`dns.lookup`). */
  resolveHost?: (hostname: string) => Promise<string[]>;
  /** Test seam: decides which resolved addresses may be connected to, instead of `allowPrivateNetworks`. */
  isAllowedAddress?: (ip: string) => boolean;
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

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Builds errors that name the hop: the user's own URL, or where it redirected. */
export class Hop {
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

export function checkScheme(hop: Hop): void {
  if (hop.url.protocol === 'http:' || hop.url.protocol === 'https:') return;
  throw hop.fail(
    hop.redirectsSoFar === 0
      ? `The URL scheme ${hop.url.protocol} is not supported; give an http:// or https:// URL.`
      : `The URL redirects to ${hop.url.protocol} URL ${hop.url.href}; only http and https are followed.`,
  );
}

export async function resolveAddresses(hop: Hop, options: AddressPolicy): Promise<ResolvedAddress[]> {
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

export function checkAddresses(
  hop: Hop,
  addresses: ResolvedAddress[],
  options: AddressPolicy,
  verb = 'fetching',
): void {
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
export async function checkOutgoingUrl(
  rawUrl: string,
  policy: AddressPolicy,
): Promise<{ url: URL; lookup: LookupFunction }> {
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
export function pinnedLookup(addresses: ResolvedAddress[]): LookupFunction {
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
