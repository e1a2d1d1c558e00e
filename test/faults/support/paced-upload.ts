import http from 'node:http';
import { ALICE_KEY, basicAuth } from '../../support/service-harness';

export type UploadOutcome = { status: number; body: string } | { brokenWith: string };

export interface PacedUpload {
  /** Bytes of the body handed to the socket so far. */
  bytesSent(): number;
  /** Settles when the server answers, or with the error's code when the connection breaks. */
  outcome: Promise<UploadOutcome>;
}

/**
 * POSTs a prebuilt multipart body in `chunkBytes` pieces with `pauseMs` between them (a slow
 * client), or all at once when pauseMs is 0; with `holdAfterBytes`, it stops after that many bytes
 * until `resume` settles. Stops writing when the connection breaks. Each upload has its own connection.
 */
export function pacedUpload(
  url: string,
  pathAndQuery: string,
  form: { body: Buffer; contentType: string },
  pacing: { chunkBytes: number; pauseMs: number; holdAfterBytes?: number; resume?: Promise<void> },
): PacedUpload {
  let sent = 0;
  let broken = false;
  const target = new URL(pathAndQuery, url);
  const req = http.request(target, {
    method: 'POST',
    headers: {
      Authorization: basicAuth(ALICE_KEY),
      'Content-Type': form.contentType,
      'Content-Length': String(form.body.length),
    },
  });
  const outcome = new Promise<UploadOutcome>((resolve) => {
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
      res.on('error', (error: NodeJS.ErrnoException) => resolve({ brokenWith: error.code ?? error.message }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      broken = true;
      resolve({ brokenWith: error.code ?? error.message });
    });
  });

  void (async () => {
    if (pacing.pauseMs === 0) {
      sent = form.body.length;
      req.end(form.body);
      return;
    }
    let held = false;
    for (let at = 0; at < form.body.length && !broken; at += pacing.chunkBytes) {
      if (!held && pacing.holdAfterBytes !== undefined && at >= pacing.holdAfterBytes) {
        held = true; // a client that stalls mid-body until told to go on
        await pacing.resume;
      }
      const chunk = form.body.subarray(at, at + pacing.chunkBytes);
      req.write(chunk);
      sent += chunk.length;
      await new Promise((r) => setTimeout(r, pacing.pauseMs));
    }
    if (!broken) req.end();
  })();
  return { bytesSent: () => sent, outcome };
}
