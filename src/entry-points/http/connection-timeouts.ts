import type { Server } from 'node:http';

/**
 * How long the server keeps an idle keep-alive connection open. A client or reverse proxy that
 * reuses an idle connection just as the server closes it gets a reset (ECONNRESET, or a 502 from the
 * proxy) for a request the service never saw: the server must be the side that waits longest, so
 * this must exceed the idle timeout of whatever sends it requests. The `Keep-Alive: timeout=` header
 * announces it to clients that honour it.
 *
 * headersTimeout (Node's 60 s) is left alone: since Node 18 it runs from a request's first byte, not
 * from when the connection went idle, so it does not cut kept-alive connections short.
 */
export function applyConnectionTimeouts(server: Server, keepAliveTimeoutMs: number): void {
  server.keepAliveTimeout = keepAliveTimeoutMs;
}
