import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ALICE_KEY, VERSION } from '../support/service-harness';
import { tmpEntries } from '../support/upload-files';

/** The API as its own process, so a crash shows as a dead process (jest would swallow it in-process). */
describe('a client hanging up mid-upload', () => {
  let api: ChildProcess;
  let port: number;
  let dataDir: string;

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
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
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

  it('leaves the API running and no temp file behind', async () => {
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
});
