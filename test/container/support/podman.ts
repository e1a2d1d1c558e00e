import { execFile } from 'node:child_process';
import net from 'node:net';

/**
 * Every container, volume and network a run of test:container makes is named with this prefix
 * (run.sh sets it and removes whatever carries it at the end, however the run ended).
 */
export const PREFIX = process.env.CONTAINER_TEST_PREFIX ?? `wvrct-${process.pid}`;
/** The image run.sh built from the project's Dockerfile; compose.yaml names the same. */
export const IMAGE = 'watson-vr-selfhosted:local';
export const REDIS_IMAGE = 'redis:7-bookworm';
export const VERSION = 'version=2018-03-19';

export interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs podman (CONTAINERS_CONF from run.sh) and resolves with its exit code and output, whatever the code. */
export function podman(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'podman',
      args,
      { maxBuffer: 64 * 1024 * 1024, timeout: options.timeoutMs ?? 120_000 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      },
    );
    if (options.input !== undefined) child.stdin!.end(options.input);
  });
}

/** Runs podman and returns its standard output; a non-zero exit throws with what it printed. */
export async function podmanOk(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const out = await podman(args, options);
  if (out.code !== 0) throw new Error(`podman ${args.join(' ')} exited ${out.code}:\n${out.stderr}${out.stdout}`);
  return out.stdout;
}

/** What the container printed, standard output and error together. */
export async function logs(container: string): Promise<string> {
  const out = await podman(['logs', container]);
  return out.stdout + out.stderr;
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  everyMs = 500,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function waitForLog(container: string, pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  return waitFor(
    `${pattern} in the log of ${container}`,
    async () => (await logs(container)).match(pattern) ?? undefined,
    timeoutMs,
  );
}

/** The container's state: running, exited, ..., its exit code and restart count. */
export async function state(
  container: string,
): Promise<{ status: string; exitCode: number; restarts: number; pid: number }> {
  const [status, exitCode, restarts, pid] = (
    await podmanOk([
      'inspect',
      '--format',
      '{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}} {{.State.Pid}}',
      container,
    ])
  )
    .trim()
    .split(' ');
  return { status, exitCode: Number(exitCode), restarts: Number(restarts), pid: Number(pid) };
}

/** Waits until the container has exited; returns its exit code. */
export async function exitCode(container: string, timeoutMs: number): Promise<number> {
  return waitFor(
    `${container} to exit`,
    async () => {
      const s = await state(container);
      return s.status === 'exited' || s.status === 'stopped' ? s.exitCode : undefined;
    },
    timeoutMs,
  );
}

/** A port on 127.0.0.1 free right now, for a container's published port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The key the first start generated and printed, from a container's log. */
export function generatedKey(log: string): string | undefined {
  return log.match(/It is shown only now:\s+(\S+)/)?.[1];
}

export function basicAuth(key: string): string {
  return `Basic ${Buffer.from(`apikey:${key}`).toString('base64')}`;
}

export interface Answer {
  status: number;
  body: any;
}

function parsed(status: number, text: string): Answer {
  try {
    return { status, body: JSON.parse(text) };
  } catch {
    return { status, body: text }; // not JSON: kept so a failed assertion shows it
  }
}

/** One request to a published port on 127.0.0.1. */
export async function call(
  port: number,
  method: string,
  pathAndQuery: string,
  key?: string,
  body?: FormData,
): Promise<Answer> {
  const res = await fetch(`http://127.0.0.1:${port}${pathAndQuery}`, {
    method,
    body,
    headers: key ? { Authorization: basicAuth(key) } : {},
    signal: AbortSignal.timeout(120_000),
  });
  return parsed(res.status, await res.text());
}

/** A multipart field: plain text, or a file. */
export type Field = [name: string, value: string | { filename: string; bytes: Buffer }];

// Runs inside a container (Node 20): reads one request as JSON on stdin, sends it to the container's own
// port 8080 and prints the answer's status and text as JSON.
const IN_CONTAINER_FETCH = `
const chunks = [];
process.stdin.on('data', (c) => chunks.push(c)).on('end', async () => {
  const r = JSON.parse(Buffer.concat(chunks).toString());
  let body;
  if (r.fields) {
    body = new FormData();
    for (const [name, value] of r.fields) {
      if (typeof value === 'string') body.append(name, value);
      else body.append(name, new Blob([Buffer.from(value.base64, 'base64')]), value.filename);
    }
  }
  const res = await fetch('http://127.0.0.1:8080' + r.path, { method: r.method, headers: r.headers, body });
  process.stdout.write(JSON.stringify({ status: res.status, text: await res.text() }));
});`;

/**
 * One request to one container's own API port, sent from inside it: the way to address one replica of
 * a compose service, whose port is not published.
 */
export async function callInside(
  container: string,
  method: string,
  pathAndQuery: string,
  key: string,
  fields?: Field[],
): Promise<Answer> {
  const request = {
    method,
    path: pathAndQuery,
    headers: { Authorization: basicAuth(key) },
    fields: fields?.map(([name, value]) => [
      name,
      typeof value === 'string' ? value : { filename: value.filename, base64: value.bytes.toString('base64') },
    ]),
  };
  const out = await podmanOk(['exec', '-i', container, 'node', '-e', IN_CONTAINER_FETCH], {
    input: JSON.stringify(request),
  });
  const { status, text } = JSON.parse(out) as { status: number; text: string };
  return parsed(status, text);
}

export function formOf(fields: Field[]): FormData {
  const form = new FormData();
  for (const [name, value] of fields) {
    if (typeof value === 'string') form.append(name, value);
    else form.append(name, new Blob([new Uint8Array(value.bytes)]), value.filename);
  }
  return form;
}

/** Removes containers (and their anonymous volumes) by name, whatever their state. */
export async function removeContainers(...names: string[]): Promise<void> {
  if (names.length) await podman(['rm', '--force', '--volumes', '--time', '0', ...names]);
}
