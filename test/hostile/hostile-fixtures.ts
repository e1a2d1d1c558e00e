/**
 * Inputs for the hostile-input corpus that fixtures/ does not already build: zip-slip archives
 * with enough images to be accepted, a form of a thousand classes, a chunked upload that never
 * says how long it is, and a search for files a hostile entry name might have written.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import sharp from 'sharp';
import { rawZip, storedEntry, zipOf } from '../../fixtures/zips';
import { basicAuth } from '../support/service-harness';

/**
 * Entry names that try to leave an extraction folder (relative, absolute, Windows, UNC, drive),
 * each carrying `token` so a file written through one can be found by name afterwards.
 */
export function zipSlipNames(token: string): string[] {
  return [
    `../${token}-evil.jpg`,
    `/${token}-abs.jpg`,
    `..\\${token}-win.jpg`,
    `a/../../${token}-up.jpg`,
    `../../../../../../../../${token}-deep.jpg`,
    `C:\\${token}-drive.jpg`,
    `\\\\server\\share\\${token}-unc.jpg`,
    `./../${token}-dot.jpg`,
    `images/../../../${token}-mixed.jpg`,
    `..\\..\\${token}-winup.jpg`,
  ];
}

/** A zip whose entries carry the zip-slip names verbatim, one image each. */
export function zipSlipImagesZip(token: string, images: Buffer[]): Buffer {
  const names = zipSlipNames(token);
  if (images.length < names.length)
    throw new Error(`zipSlipImagesZip needs ${names.length} images, got ${images.length}`);
  return rawZip(names.map((name, i) => storedEntry(name, images[i])));
}

/** `count` distinct 16×16 PNGs of about 100 bytes: cheap images for zips by the thousand. */
export async function tinyPngs(count: number): Promise<Buffer[]> {
  return Promise.all(
    Array.from({ length: count }, (_, i) =>
      sharp({
        create: {
          width: 16,
          height: 16,
          channels: 3,
          background: { r: (i * 37) % 256, g: (i * 91) % 256, b: (i * 53) % 256 },
        },
      })
        .png()
        .toBuffer(),
    ),
  );
}

/** A create form with `classCount` classes, each zip holding the same `images` (the contract allows that). */
export function manyClassesForm(classCount: number, images: Buffer[], name: string): FormData {
  const zip = zipOf(images.map((data, i) => ({ name: `${i}.png`, data })));
  const form = new FormData();
  form.append('name', name);
  for (let c = 0; c < classCount; c++) {
    form.append(
      `class${String(c).padStart(4, '0')}_positive_examples`,
      new Blob([new Uint8Array(zip)]),
      `class${c}.zip`,
    );
  }
  return form;
}

/**
 * A multipart upload sent with Transfer-Encoding: chunked (no Content-Length), as the Watson SDKs
 * send it: one file part per entry of `files` (field name → size in bytes), written in 64 KB
 * chunks until the server answers.
 */
export function chunkedUpload(
  baseUrl: string,
  pathAndQuery: string,
  key: string,
  files: Record<string, number>,
): Promise<{ status: number; body: unknown }> {
  const boundary = 'hostile-boundary-7d1f';
  const partHead = (field: string) =>
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${field}.zip"\r\nContent-Type: application/zip\r\n\r\n`,
    );
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(`${baseUrl}${pathAndQuery}`, {
      method: 'POST',
      headers: {
        Authorization: basicAuth(key),
        'Content-Type': `multipart/form-data; boundary=${boundary}`,
        'Transfer-Encoding': 'chunked',
      },
    });
    req.on('response', (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on('data', (b: Buffer) => parts.push(b));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: text });
        }
        req.destroy();
      });
    });
    // Once the server has answered, it may close the connection while the body is still going.
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    const sending = () => !answered && !req.destroyed;
    const write = async (bytes: Buffer) => {
      if (!req.write(bytes)) await new Promise((r) => req.once('drain', r));
    };
    const send = async () => {
      for (const [field, size] of Object.entries(files)) {
        if (!sending()) return;
        await write(partHead(field));
        for (let sent = 0; sent < size && sending(); sent += chunk.length)
          await write(chunk.subarray(0, Math.min(chunk.length, size - sent)));
        if (sending()) await write(Buffer.from('\r\n'));
      }
      if (sending()) req.end(`--${boundary}--\r\n`);
    };
    send().catch((error) => {
      if (!answered) reject(error);
    });
  });
}

/** Every path under `root` (recursively; `maxDepth` 0 lists only `root` itself) whose name contains `token`. */
export function pathsNamedWith(root: string, token: string, maxDepth: number): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // another user's folder, or gone meanwhile
    }
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.name.includes(token)) found.push(full);
      if (entry.isDirectory() && depth < maxDepth) walk(full, depth + 1);
    }
  };
  walk(root, 0);
  return found;
}

/** Every folder under `root`, `root` included: the places a relative entry name could be resolved against. */
export function foldersUnder(root: string): string[] {
  const folders = [root];
  for (const entry of fs.readdirSync(root, { withFileTypes: true, recursive: true })) {
    if (entry.isDirectory()) folders.push(path.join(entry.parentPath, entry.name));
  }
  return folders;
}
