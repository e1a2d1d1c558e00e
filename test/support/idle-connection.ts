import http from 'node:http';
import type { Socket } from 'node:net';

export interface ReuseAfterIdle {
  /** The first answer's Keep-Alive header: what the server announces to clients that honour it. */
  keepAlive?: string;
  /** When the server closed the connection, in ms after the first answer; undefined: it kept it open. */
  closedAfterMs?: number;
  /** Whether the second request went out on the first one's connection, and its status. */
  reused: boolean;
  secondStatus?: number;
}

/**
 * GET `url` on a keep-alive connection, leave the connection idle for `idleMs`, then GET it again,
 * as a reverse proxy or a client with a connection pool does: the second request should go out on
 * the same connection and be answered. The agent closes no idle connection itself.
 */
export async function reuseAfterIdle(
  url: string,
  idleMs: number,
  headers: Record<string, string> = {},
): Promise<ReuseAfterIdle> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = () =>
    new Promise<{ res: http.IncomingMessage; socket: Socket; reused: boolean }>((resolve, reject) => {
      const req = http.get(url, { agent, headers }, (res) => {
        res.resume();
        res.on('end', () => resolve({ res, socket: req.socket!, reused: req.reusedSocket }));
      });
      req.on('error', reject);
    });
  try {
    const first = await get();
    const answeredAt = performance.now();
    let closedAfterMs: number | undefined;
    first.socket.once('close', () => (closedAfterMs = Math.round(performance.now() - answeredAt)));
    await new Promise((resolve) => setTimeout(resolve, idleMs));
    const second = await get();
    return {
      keepAlive: first.res.headers['keep-alive'] as string | undefined,
      closedAfterMs,
      reused: second.reused,
      secondStatus: second.res.statusCode,
    };
  } finally {
    agent.destroy();
  }
}
