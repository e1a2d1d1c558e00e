import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HeldImage {
  /** `http://127.0.0.1:<port>/slow.jpg`: the URL a classify request fetches. */
  url: string;
  /** Settles when the service's request for the image has arrived (the classify is then in flight). */
  arrived: Promise<void>;
  /** Lets the held request (and any later one) be answered with the image. */
  release: () => void;
  /** Releases and stops the server. */
  close: () => Promise<void>;
}

/**
 * An image URL on 127.0.0.1 that answers (200, `image/jpeg`, `bytes`) only once released: it holds a classify
 * request in flight, e.g. pinned to a version that retention must then keep.
 */
export async function heldImageServer(bytes: Buffer): Promise<HeldImage> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let arrive!: () => void;
  const arrived = new Promise<void>((r) => (arrive = r));
  const server = http.createServer(async (_req, res) => {
    arrive();
    await released;
    res.writeHead(200, { 'Content-Type': 'image/jpeg' }).end(bytes);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/slow.jpg`,
    arrived,
    release,
    close: async () => {
      release();
      await new Promise((r) => server.close(r));
    },
  };
}
