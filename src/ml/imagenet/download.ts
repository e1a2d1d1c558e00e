import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { ModelPackError } from './model-pack-error';

/** A stalled connection must not hang the fetch forever; 13.5 MB needs far less even on a slow line. */
const DOWNLOAD_TIMEOUT_MS = 15 * 60 * 1000;

export interface ExpectedFile {
  url: string;
  /** Exact size in bytes; the download is cut off as soon as it goes past it. */
  size: number;
  /** Lower-case hex SHA-256 of the whole file. */
  sha256: string;
}

/**
 * Streams `expected.url` into `destination` (created, must not exist), hashing as it goes.
 * Throws ModelPackError on an HTTP error, a body longer or shorter than `size`, or a checksum
 * mismatch; the caller owns `destination` and removes it on failure.
 */
export async function downloadVerified(
  expected: ExpectedFile,
  destination: string,
  fetchImpl: typeof fetch,
): Promise<void> {
  const { url, size, sha256 } = expected;
  let response: Response;
  try {
    response = await fetchImpl(url, {
      redirect: 'follow',
      // The checksum is of the bytes as stored: no transfer compression for fetch to undo.
      headers: { 'accept-encoding': 'identity' },
      signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS),
    });
  } catch (error) {
    throw new ModelPackError(
      url,
      `download failed (${describeCause(error)}); check the network, or set IMAGENET_PACK_URL to a reachable copy`,
    );
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new ModelPackError(
      url,
      `download failed: HTTP ${response.status} ${response.statusText}; check IMAGENET_PACK_URL`,
    );
  }
  const announced = Number(response.headers.get('content-length') ?? NaN);
  if (announced > size) {
    await response.body.cancel();
    throw new ModelPackError(
      url,
      `the server announces ${announced} bytes, the pack is ${size}; this is not the expected file, check IMAGENET_PACK_URL`,
    );
  }

  const hash = createHash('sha256');
  let received = 0;
  const file = await open(destination, 'wx');
  try {
    // Leaving the loop early cancels the body, so an oversized download stops at the cap.
    for await (const chunk of response.body) {
      received += chunk.byteLength;
      if (received > size) {
        throw new ModelPackError(
          url,
          `the download went past the expected ${size} bytes; this is not the expected file, check IMAGENET_PACK_URL`,
        );
      }
      hash.update(chunk);
      await file.write(chunk);
    }
  } catch (error) {
    if (error instanceof ModelPackError) throw error;
    throw new ModelPackError(
      url,
      `download interrupted after ${received} bytes (${describeCause(error)}); run the fetch again`,
    );
  } finally {
    await file.close();
  }
  if (received !== size) {
    throw new ModelPackError(
      url,
      `downloaded ${received} bytes, expected ${size}; the transfer was cut short or this is another file, run the fetch again or check IMAGENET_PACK_URL`,
    );
  }
  const actual = hash.digest('hex');
  if (actual !== sha256.toLowerCase()) {
    throw new ModelPackError(
      url,
      `sha256 ${actual} does not match the expected ${sha256}; the file is corrupt or not the expected model, nothing was installed`,
    );
  }
}

function describeCause(error: unknown): string {
  const cause = (error as { cause?: { message?: string } }).cause?.message;
  const message = (error as Error).message ?? String(error);
  return cause ? `${message}: ${cause}` : message;
}
