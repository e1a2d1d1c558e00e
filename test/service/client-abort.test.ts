import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { classZip, trainingForm } from '../support/example-zips';
import { ALICE_KEY, VERSION } from '../support/service-harness';
import { tmpEntries } from '../support/upload-files';

/** The API as its own process, so a crash shows as a dead process (jest would swallow it in-process). */
describe('a client hanging up', () => {
  let api: ChildProcess;
  let port: number;
  let dataDir: string;
  const errorLogs: string[] = [];

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-abort-'));
    api = spawn(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        '-e',
        "require('./src/processes/api-process').startService(process.env).then((s) => console.log('PORT=' + s.port))",
      ],
      {
        cwd: path.resolve(__dirname, '..', '..'),
        env: {
          ...process.env,
          PORT: '0',
          HOST: '127.0.0.1',
          DATA_DIR: dataDir,
          START_WORKER: 'false',
          API_KEYS: `alice:${ALICE_KEY}`,
          LOG_LEVEL: 'warn',
          QUEUE_PREFIX: `wvr-abort-${process.pid}`,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    api.stderr!.on('data', (d: Buffer) => {
      process.stderr.write(d);
      errorLogs.push(
        ...d
          .toString()
          .split('\n')
          .filter((line) => line.includes('"level":50')),
      );
    });
    port = await new Promise<number>((resolve, reject) => {
      api.stdout!.on('data', (d: Buffer) => {
        const m = /PORT=(\d+)/.exec(d.toString());
        if (m) resolve(Number(m[1]));
      });
      api.once('exit', (code) => reject(new Error(`API exited (${code})`)));
    });
  });
  afterAll(async () => {
    api?.kill('SIGTERM');
    await new Promise((r) => api?.once('exit', r));
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('mid-upload leaves the API running and no temp file behind', async () => {
    const boundary = 'x-boundary';
    const head =
      `POST /v3/classify?${VERSION} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ALICE_KEY}\r\n` +
      `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: 100000\r\n\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="images_file"; filename="a.jpg"\r\n\r\n`;
    await new Promise<void>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.write(head + 'x'.repeat(5000));
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 300);
      });
    });
    await new Promise((r) => setTimeout(r, 1000));
    expect(api.exitCode).toBeNull();
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
    expect(tmpEntries(dataDir)).toEqual([]);
  });

  /**
   * Sends a whole request, then closes the connection `delayMs` later without waiting for the answer.
   * Spread over delays, the hang-ups land in every stage: the body's tail still being written to
   * temp files, between parsing and the handler, while the handler reads the files.
   */
  async function sendAndHangUp(pathAndQuery: string, form: FormData, delayMs: number): Promise<void> {
    const request = new Request('http://127.0.0.1/', { method: 'POST', body: form });
    const body = Buffer.from(await request.arrayBuffer());
    const head =
      `POST ${pathAndQuery} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ALICE_KEY}\r\n` +
      `Content-Type: ${request.headers.get('content-type')}\r\nContent-Length: ${body.length}\r\n\r\n`;
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.write(Buffer.concat([Buffer.from(head), body]), (error) => {
          setTimeout(() => {
            socket.destroy();
            if (error) reject(error);
            else resolve();
          }, delayMs);
        });
      });
    });
  }

  async function classifierNames(): Promise<string[]> {
    const res = await fetch(`http://127.0.0.1:${port}/v3/classifiers?${VERSION}`, {
      headers: { Authorization: `Bearer ${ALICE_KEY}` },
    });
    const body = (await res.json()) as { classifiers: Array<{ name: string }> };
    return body.classifiers.map((c) => c.name);
  }

  // Where the hang-up lands decides whether the create is carried out; either way it is all or nothing.
  it('after sending a whole create gets the classifier created whole or not at all, with no error and no temp file left', async () => {
    const form = trainingForm(
      {
        circles_positive_examples: await classZip('red-circles', 12, 1),
        squares_positive_examples: await classZip('blue-squares', 12, 2),
      },
      { name: 'hung-up' },
    );
    for (let i = 0; i < 8; i++) await sendAndHangUp(`/v3/classifiers?${VERSION}`, form, i * 4);
    await new Promise((r) => setTimeout(r, 3000));
    const listed = await classifierNames();
    for (const name of listed) expect(name).toBe('hung-up');
    const kept = fs.existsSync(path.join(dataDir, 'pending')) ? fs.readdirSync(path.join(dataDir, 'pending')) : [];
    // Each created classifier keeps its two zips whole until the worker extracts them; nothing else stays.
    expect(kept).toHaveLength(2 * listed.length);
    expect(errorLogs).toEqual([]);
    expect(tmpEntries(dataDir)).toEqual([]);
  });

  it('after sending a whole classify gets no error logged and no temp file left', async () => {
    const form = new FormData();
    form.append('images_file', new Blob([new Uint8Array(await classZip('red-circles', 3, 3))]), 'images.zip');
    form.append('classifier_ids', 'default');
    for (let i = 0; i < 20; i++) await sendAndHangUp(`/v3/classify?${VERSION}`, form, i * 3);
    await new Promise((r) => setTimeout(r, 3000));
    expect(errorLogs).toEqual([]);
    expect(tmpEntries(dataDir)).toEqual([]);
  });
});
