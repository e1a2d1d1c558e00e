import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fetchImageFromUrl, type UrlFetchOptions } from '../../src/data-access/outbound/image-fetcher';
import { isPublicAddress, UrlFetchError } from '../../src/data-access/outbound/url-policy';
import { BLUE, solidColorPng } from '../../fixtures/images';

interface TestServer {
  port: number;
  url: (path: string) => string;
  /** Paths requested, in order. */
  requests: string[];
  /** Host headers received, in order. */
  hosts: string[];
  connections: number;
  close: () => Promise<void>;
}

/** A real HTTP server on 127.0.0.1 and an ephemeral port. */
async function startServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestServer> {
  const server = http.createServer((req, res) => {
    state.requests.push(req.url ?? '');
    state.hosts.push(req.headers.host ?? '');
    handler(req, res);
  });
  server.on('connection', () => state.connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const state: TestServer = {
    port,
    url: (path) => `http://127.0.0.1:${port}${path}`,
    requests: [],
    hosts: [],
    connections: 0,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  return state;
}

/** Resolves with the promise's value, or rejects when it takes longer than `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Writes chunks until the client goes away; resolves with the bytes written by then. */
function streamUntilClosed(res: ServerResponse, firstChunk: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const filler = Buffer.alloc(16 * 1024, 0x41);
    let written = 0;
    let closed = false;
    res.on('close', () => {
      closed = true;
      resolve(written);
    });
    const pump = () => {
      while (!closed) {
        const chunk = written === 0 ? firstChunk : filler;
        written += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
}

const options = (overrides: Partial<UrlFetchOptions> = {}): UrlFetchOptions => ({
  maxBytes: 10 * 1024 * 1024,
  timeoutMs: 2_000,
  maxRedirects: 5,
  allowPrivateNetworks: true,
  ...overrides,
});

/** The UrlFetchError a fetch fails with; fails the test when it succeeds or throws anything else. */
async function fetchError(url: string, opts: UrlFetchOptions): Promise<UrlFetchError> {
  const error = await fetchImageFromUrl(url, opts).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(UrlFetchError);
  return error as UrlFetchError;
}

describe('isPublicAddress', () => {
  it.each([
    '8.8.8.8',
    '93.184.216.34',
    '1.1.1.1',
    '172.15.255.255',
    '172.32.0.1',
    '100.63.255.255',
    '100.128.0.1',
    '192.169.0.1',
    '2606:4700:4700::1111',
    '2001:4860:4860::8888',
    '::ffff:8.8.8.8',
    '::ffff:808:808',
    '64:ff9b::808:808',
    '2002:808:808::1',
  ])('%s is public', (ip) => {
    expect(isPublicAddress(ip)).toBe(true);
  });

  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.0.0.5', 'private 10/8'],
    ['172.16.0.1', 'private 172.16/12'],
    ['172.31.255.255', 'private 172.16/12'],
    ['192.168.1.1', 'private 192.168/16'],
    ['169.254.169.254', 'link-local (cloud metadata)'],
    ['100.64.0.1', 'CGNAT'],
    ['100.127.255.255', 'CGNAT'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'this network'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.1', 'documentation'],
    ['198.18.0.1', 'benchmarking'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local with zone'],
    ['febf:ffff::1', 'link-local'],
    ['fc00::1', 'unique-local'],
    ['fd12:3456:789a::1', 'unique-local'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
    ['::ffff:7f00:1', 'IPv4-mapped loopback, hex form'],
    ['::ffff:10.0.0.5', 'IPv4-mapped private'],
    ['::ffff:169.254.169.254', 'IPv4-mapped link-local'],
    ['::127.0.0.1', 'IPv4-compatible (deprecated)'],
    ['64:ff9b::7f00:1', 'NAT64 of loopback'],
    ['64:ff9b::a00:5', 'NAT64 of private'],
    ['2002:7f00:1::1', '6to4 of loopback'],
    ['2002:c0a8:101::1', '6to4 of private'],
    ['2001:db8::1', 'documentation'],
    ['2001::1', 'Teredo'],
    ['3fff::1', 'documentation'],
    ['localhost', 'not an IP address'],
    ['', 'empty'],
    ['127.1', 'shorthand IPv4 is not a valid address here'],
  ])('%s is not public (%s)', (ip) => {
    expect(isPublicAddress(ip)).toBe(false);
  });
});

describe('fetchImageFromUrl with private networks allowed', () => {
  let png: Buffer;
  let server: TestServer;

  beforeAll(async () => {
    png = await solidColorPng(BLUE);
  });

  afterEach(async () => {
    await server?.close();
  });

  it('returns the bytes, final URL and media type of a PNG', async () => {
    server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'image/png; charset=binary' }).end(png);
    });
    const fetched = await fetchImageFromUrl(server.url('/cat.png'), options());
    expect(fetched.bytes.equals(png)).toBe(true);
    expect(fetched.sourceUrl).toBe(server.url('/cat.png'));
    expect(fetched.resolvedUrl).toBe(server.url('/cat.png'));
    expect(fetched.contentType).toBe('image/png');
  });

  it('accepts an image served without a content type', async () => {
    server = await startServer((_req, res) => {
      res.removeHeader('content-type');
      res.end(png);
    });
    const fetched = await fetchImageFromUrl(server.url('/x'), options());
    expect(fetched.bytes.equals(png)).toBe(true);
    expect(fetched.contentType).toBeNull();
  });

  it('follows a chain of relative and absolute redirects and reports the final URL', async () => {
    server = await startServer((req, res) => {
      if (req.url === '/a') res.writeHead(302, { location: 'b?step=2' }).end();
      else if (req.url === '/b?step=2') res.writeHead(301, { location: server.url('/c/final.png') }).end();
      else if (req.url === '/c/final.png') res.writeHead(200, { 'content-type': 'image/png' }).end(png);
      else res.writeHead(404).end();
    });
    const fetched = await fetchImageFromUrl(server.url('/a'), options({ maxRedirects: 2 }));
    expect(fetched.resolvedUrl).toBe(server.url('/c/final.png'));
    expect(fetched.sourceUrl).toBe(server.url('/a'));
    expect(fetched.bytes.equals(png)).toBe(true);
    expect(server.requests).toEqual(['/a', '/b?step=2', '/c/final.png']);
  });

  it('refuses more redirects than allowed', async () => {
    server = await startServer((req, res) => {
      const step = Number(req.url?.slice(1));
      res.writeHead(307, { location: `/${step + 1}` }).end();
    });
    const error = await fetchError(server.url('/0'), options({ maxRedirects: 3 }));
    expect(error.description).toBe("The URL redirects more than 3 times; give the image's final URL.");
    expect(server.requests).toEqual(['/0', '/1', '/2', '/3']);
  });

  it('refuses a redirect without a Location', async () => {
    server = await startServer((_req, res) => res.writeHead(302).end());
    const error = await fetchError(server.url('/'), options());
    expect(error.description).toMatch(/HTTP 302 .*without saying where/);
  });

  it('names the HTTP status of a failed answer', async () => {
    server = await startServer((_req, res) => res.writeHead(404, { 'content-type': 'text/html' }).end('<h1>gone</h1>'));
    const error = await fetchError(server.url('/missing.jpg'), options());
    expect(error.description).toBe('The URL answered HTTP 404 (Not Found).');
    expect(error.message).toContain(server.url('/missing.jpg'));
  });

  it('keeps URL credentials out of the error message', async () => {
    server = await startServer((_req, res) => res.writeHead(403).end());
    const error = await fetchError(`http://alice:s3cret@127.0.0.1:${server.port}/private.png`, options());
    expect(error.description).toBe('The URL answered HTTP 403 (Forbidden).');
    expect(error.message).toBe(
      `Could not fetch image URL http://***@127.0.0.1:${server.port}/private.png: ${error.description}`,
    );
  });

  it('refuses an HTML page, naming its media type', async () => {
    server = await startServer((_req, res) => {
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        .end('<!doctype html><html><body>Not an image</body></html>');
    });
    const error = await fetchError(server.url('/page'), options());
    expect(error.description).toBe('The URL serves text/html, not an image.');
  });

  it('refuses a JSON error answered with status 200', async () => {
    server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"error":"token expired"}');
    });
    const error = await fetchError(server.url('/api/image'), options());
    expect(error.description).toBe('The URL serves application/json, not an image.');
  });

  it('refuses bytes that are not an image even when labelled image/png', async () => {
    server = await startServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'image/png' }).end('<svg xmlns="http://www.w3.org/2000/svg"/>'),
    );
    const error = await fetchError(server.url('/fake.png'), options());
    expect(error.description).toBe(
      "The URL's content is not a JPEG, PNG, GIF, TIFF or WebP image (it is served as image/png).",
    );
  });

  it('refuses a body too short to be an image', async () => {
    server = await startServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'image/png' }).end(Buffer.from([0x89, 0x50])),
    );
    const error = await fetchError(server.url('/tiny.png'), options());
    expect(error.description).toMatch(/not a JPEG, PNG, GIF, TIFF or WebP image/);
  });

  it('refuses an empty body', async () => {
    server = await startServer((_req, res) => res.writeHead(200, { 'content-type': 'image/jpeg' }).end());
    const error = await fetchError(server.url('/empty.jpg'), options());
    expect(error.description).toBe('The URL answered with an empty body, not an image.');
  });

  it('stops reading an endless HTML page after its first bytes', async () => {
    let serverWrote: Promise<number> = Promise.resolve(0);
    server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      serverWrote = streamUntilClosed(res, Buffer.from('<html><body>'));
    });
    const error = await fetchError(server.url('/endless'), options({ timeoutMs: 3_000 }));
    expect(error.description).toBe('The URL serves text/html, not an image.');
    expect(await within(serverWrote, 1_000, 'the client closing the connection')).toBeLessThan(64 * 1024 * 1024);
  });

  it('refuses a declared Content-Length over the limit before reading, and closes the connection', async () => {
    let serverWrote: Promise<number> = Promise.resolve(0);
    server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(1024 * 1024 * 1024) });
      serverWrote = streamUntilClosed(res, png);
    });
    const error = await fetchError(server.url('/huge.png'), options({ maxBytes: 64 * 1024 }));
    expect(error.description).toBe('The image at the URL is 1024 MB; at most 64 KB is allowed.');
    // The server is cut off long before the gigabyte it announced.
    expect(await within(serverWrote, 1_000, 'the client closing the connection')).toBeLessThan(64 * 1024 * 1024);
  });

  it('cuts off an undeclared (chunked) body as soon as it passes the limit', async () => {
    let serverWrote: Promise<number> = Promise.resolve(0);
    server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'image/png' });
      serverWrote = streamUntilClosed(res, png);
    });
    const error = await fetchError(server.url('/endless.png'), options({ maxBytes: 64 * 1024, timeoutMs: 3_000 }));
    expect(error.description).toBe('The image at the URL is larger than 64 KB, the most allowed.');
    expect(await within(serverWrote, 1_000, 'the client closing the connection')).toBeLessThan(64 * 1024 * 1024);
  });

  it('accepts a body of exactly maxBytes, declared or not, and refuses one byte more', async () => {
    server = await startServer((req, res) => {
      const declared = req.url === '/declared.png' ? { 'content-length': String(png.length) } : {};
      res.writeHead(200, { 'content-type': 'image/png', ...declared }).end(png);
    });
    for (const path of ['/declared.png', '/chunked.png']) {
      const fetched = await fetchImageFromUrl(server.url(path), options({ maxBytes: png.length }));
      expect(fetched.bytes.equals(png)).toBe(true);
    }
    const declared = await fetchError(server.url('/declared.png'), options({ maxBytes: png.length - 1 }));
    expect(declared.description).toBe(
      `The image at the URL is ${png.length} bytes; at most ${png.length - 1} bytes is allowed.`,
    );
    const chunked = await fetchError(server.url('/chunked.png'), options({ maxBytes: png.length - 1 }));
    expect(chunked.description).toBe(`The image at the URL is larger than ${png.length - 1} bytes, the most allowed.`);
  });

  it('reports a connection closed before the declared length arrived', async () => {
    server = await startServer((req, res) => {
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(png.length * 2) });
      res.write(png, () => req.socket.destroy());
    });
    const error = await fetchError(server.url('/cut.png'), options());
    expect(error.description).toMatch(
      /^The connection to the URL was closed after .*, before the whole image arrived\.$/,
    );
  });

  it('gives up on a server that never answers, within the timeout', async () => {
    let sawClose: Promise<void> | undefined;
    server = await startServer((req) => {
      sawClose = new Promise((resolve) => req.socket.once('close', () => resolve()));
    });
    const started = Date.now();
    const error = await fetchError(server.url('/silent'), options({ timeoutMs: 300 }));
    const elapsed = Date.now() - started;
    expect(error.description).toBe('The URL did not answer within 0.3 s.');
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1_500);
    await sawClose; // the client hung up rather than leaving the socket open
  });

  it('gives up on a server that drips the body, within the timeout', async () => {
    server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.write(png.subarray(0, 16));
      const drip = setInterval(() => res.write(Buffer.from([0])), 20);
      res.on('close', () => clearInterval(drip));
    });
    const started = Date.now();
    const error = await fetchError(server.url('/slow.png'), options({ timeoutMs: 300 }));
    expect(error.description).toBe('The URL did not deliver the whole image within 0.3 s.');
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('gives up when name resolution never finishes', async () => {
    const started = Date.now();
    const error = await fetchError(
      'http://stuck.test/x.png',
      options({ timeoutMs: 200, resolveHost: () => new Promise<string[]>(() => {}) }),
    );
    expect(error.description).toBe('The URL did not answer within 0.2 s.');
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it.each([
    ['ftp://127.0.0.1/x.png', 'The URL scheme ftp: is not supported; give an http:// or https:// URL.'],
    ['file:///etc/passwd', 'The URL scheme file: is not supported; give an http:// or https:// URL.'],
    ['data:image/png;base64,iVBORw0KGgo=', 'The URL scheme data: is not supported; give an http:// or https:// URL.'],
    ['not a url', 'The URL is not a valid absolute URL; give an http:// or https:// URL.'],
    ['/relative/x.png', 'The URL is not a valid absolute URL; give an http:// or https:// URL.'],
  ])('refuses %s', async (url, description) => {
    const error = await fetchError(url, options());
    expect(error.description).toBe(description);
  });

  it('refuses a redirect to a file: URL', async () => {
    server = await startServer((_req, res) => res.writeHead(302, { location: 'file:///etc/passwd' }).end());
    const error = await fetchError(server.url('/'), options());
    expect(error.description).toBe(
      'The URL redirects to file: URL file:///etc/passwd; only http and https are followed.',
    );
  });

  it('reports a refused connection', async () => {
    const closed = await startServer(() => undefined);
    const port = closed.port;
    await closed.close();
    server = await startServer(() => undefined); // so afterEach has something to close
    const error = await fetchError(`http://127.0.0.1:${port}/x.png`, options());
    expect(error.description).toBe("The URL's host 127.0.0.1 refused the connection.");
  });

  it('reports a failed https handshake', async () => {
    server = await startServer((_req, res) => res.end('plain http'));
    const error = await fetchError(`https://127.0.0.1:${server.port}/x.png`, options());
    expect(error.description).toMatch(/^The secure \(https\) connection to the URL failed: /);
  });

  it('connects to the address it resolved and checked, asking the resolver once', async () => {
    server = await startServer((_req, res) => res.writeHead(200, { 'content-type': 'image/png' }).end(png));
    const asked: string[] = [];
    const resolveHost = async (host: string) => {
      asked.push(host);
      return ['127.0.0.1'];
    };
    // images.test exists in no DNS: the fetch can only succeed through the pinned address.
    const fetched = await fetchImageFromUrl(`http://images.test:${server.port}/x.png`, options({ resolveHost }));
    expect(fetched.bytes.equals(png)).toBe(true);
    expect(asked).toEqual(['images.test']);
    expect(server.hosts).toEqual([`images.test:${server.port}`]);
  });

  it('reports a host name that does not resolve', async () => {
    const resolveHost = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
    };
    const error = await fetchError('http://no-such-host.test/x.png', options({ resolveHost }));
    expect(error.description).toBe("The URL's host no-such-host.test could not be found; check the host name.");
  });
});

describe('fetchImageFromUrl with private networks refused', () => {
  let png: Buffer;
  let server: TestServer;

  beforeAll(async () => {
    png = await solidColorPng(BLUE);
  });

  beforeEach(async () => {
    server = await startServer((_req, res) => res.writeHead(200, { 'content-type': 'image/png' }).end(png));
  });

  afterEach(async () => {
    await server.close();
  });

  const refusing = (overrides: Partial<UrlFetchOptions> = {}) => options({ allowPrivateNetworks: false, ...overrides });

  it('refuses 127.0.0.1 before connecting', async () => {
    const error = await fetchError(server.url('/x.png'), refusing());
    expect(error.description).toBe(
      "The URL's host 127.0.0.1 is a private address; fetching it is not allowed. Give a publicly reachable URL.",
    );
    expect(server.connections).toBe(0);
  });

  it('refuses localhost, which resolves to loopback', async () => {
    const error = await fetchError(`http://localhost:${server.port}/x.png`, refusing());
    expect(error.description).toMatch(
      /^The URL's host localhost resolves to (127\.0\.0\.1|::1), a private address; fetching it is not allowed\./,
    );
    expect(server.connections).toBe(0);
  });

  it('refuses loopback written as IPv6, IPv4-mapped IPv6 and shorthand IPv4', async () => {
    for (const host of ['[::1]', '[::ffff:127.0.0.1]', '127.1', '0x7f.0.0.1', '2130706433']) {
      const error = await fetchError(`http://${host}:${server.port}/x.png`, refusing());
      expect(error.description).toMatch(/is a private address; fetching it is not allowed/);
    }
    expect(server.connections).toBe(0);
  });

  it('refuses a host name when any of its addresses is refused', async () => {
    // Only the exact string 127.0.0.1 is allowed: its IPv4-mapped twin stands for a refused address
    // that, were the check skipped, would still land on this server.
    const isAllowedAddress = (ip: string) => ip === '127.0.0.1';
    const resolveHost = async () => ['127.0.0.1', '::ffff:127.0.0.1'];
    const error = await fetchError(
      `http://mixed.test:${server.port}/x.png`,
      refusing({ isAllowedAddress, resolveHost }),
    );
    expect(error.description).toBe(
      "The URL's host mixed.test resolves to ::ffff:127.0.0.1, a private address; fetching it is not allowed. Give a publicly reachable URL.",
    );
    expect(server.connections).toBe(0);
  });

  it('checks every redirect hop before connecting to it', async () => {
    await server.close();
    server = await startServer((req, res) => {
      if (req.url === '/start')
        res.writeHead(302, { location: `http://internal.test:${server.port}/secret.png` }).end();
      else if (req.url === '/start-literal')
        res.writeHead(302, { location: `http://[::ffff:127.0.0.1]:${server.port}/secret.png` }).end();
      else res.writeHead(200, { 'content-type': 'image/png' }).end(png);
    });
    const isAllowedAddress = (ip: string) => ip === '127.0.0.1';
    const resolveHost = async () => ['::ffff:127.0.0.1'];

    const viaName = await fetchError(server.url('/start'), refusing({ isAllowedAddress, resolveHost }));
    expect(viaName.description).toBe(
      `The URL redirects to http://internal.test:${server.port}/secret.png, whose host internal.test resolves to ::ffff:127.0.0.1, a private address; fetching it is not allowed. Give a publicly reachable URL.`,
    );
    const viaLiteral = await fetchError(server.url('/start-literal'), refusing({ isAllowedAddress, resolveHost }));
    expect(viaLiteral.description).toMatch(
      /^The URL redirects to http:\/\/\[::ffff:7f00:1\]:\d+\/secret\.png, whose host \[::ffff:7f00:1\] is a private address/,
    );
    expect(server.requests).toEqual(['/start', '/start-literal']);
  });
});
