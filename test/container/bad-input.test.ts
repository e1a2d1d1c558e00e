import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { classZip, trainingForm } from '../support/example-zips';
import { SmallDisk } from '../faults/support/tmpfs';
import { pacedUpload } from '../faults/support/paced-upload';
import { ALICE_KEY } from '../support/service-harness';
import {
  IMAGE,
  PREFIX,
  REDIS_IMAGE,
  VERSION,
  call,
  exitCode,
  freePort,
  logs,
  podman,
  podmanOk,
  removeContainers,
  state,
  waitFor,
} from './support/podman';

const REPO = path.resolve(__dirname, '..', '..');
const REDIS = `${PREFIX}-bad-redis`;
const POSTGRES = `${PREFIX}-bad-postgres`;
const NETWORK = `${PREFIX}-bad-net`;
let redisPort: number;
let postgresPort: number;
let closedPort: number;

interface Start {
  code: number;
  message: string;
}

/**
 * The service's message: the first line it printed on standard error that is not a JSON log line, a stack
 * frame or onnxruntime's warning, with the data directory's path replaced by DATA_DIR.
 */
function messageOf(stderr: string, dataDir: string): string {
  const line = stderr.split('\n').find((l) => l.trim() !== '' && !/^(\{|\s|\S*\[W:onnxruntime)/.test(l)) ?? '';
  return line.split(dataDir).join('DATA_DIR');
}

/**
 * Starts the image with `env` and a data volume (`volume` as for podman run -v: `<name or host dir>:/data[:ro]`),
 * by default on the host's network, so that 127.0.0.1 is the same place inside and outside; waits for it to stop.
 */
async function startContainer(
  name: string,
  env: Record<string, string>,
  volume: string,
  network = 'host',
): Promise<Start> {
  const envArgs = Object.entries({ PORT: '0', HOST: '127.0.0.1', ...env }).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
  await podmanOk(['run', '-d', '--name', name, '--network', network, '-v', volume, ...envArgs, IMAGE]);
  try {
    const code = await exitCode(name, 120_000);
    const stderr = (await podman(['logs', name])).stderr;
    return { code, message: messageOf(stderr, '/data') };
  } finally {
    await removeContainers(name);
  }
}

/** Starts the service outside a container (dist/src/main.js of this tree) with the same settings, as `uid` if given. */
function startOutside(env: Record<string, string>, dataDir: string, uid?: number): Promise<Start> {
  const [command, args] =
    uid === undefined
      ? ['node', [path.join(REPO, 'dist/src/main.js')]]
      : [
          'setpriv',
          [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'node', path.join(REPO, 'dist/src/main.js')],
        ];
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      {
        env: {
          PATH: process.env.PATH,
          PORT: '0',
          HOST: '127.0.0.1',
          DATA_DIR: dataDir,
          NODE_ENV: 'production',
          ...env,
        },
        timeout: 120_000,
      },
      (error, _stdout, stderr) =>
        resolve({ code: error ? Number(error.code) : 0, message: messageOf(stderr, dataDir) }),
    );
  });
}

beforeAll(async () => {
  [redisPort, postgresPort, closedPort] = [await freePort(), await freePort(), await freePort()];
  await podmanOk(['network', 'create', NETWORK]);
  await podmanOk([
    'run',
    '-d',
    '--name',
    REDIS,
    '--network',
    NETWORK,
    '-p',
    `127.0.0.1:${redisPort}:6379`,
    REDIS_IMAGE,
  ]);
  await podmanOk([
    'run',
    '-d',
    '--name',
    POSTGRES,
    '-p',
    `127.0.0.1:${postgresPort}:5432`,
    '-e',
    'POSTGRES_USER=watson',
    '-e',
    'POSTGRES_PASSWORD=right-password',
    '-e',
    'POSTGRES_DB=watson',
    'postgres:16-bookworm',
  ]);
  await waitFor(
    'PostgreSQL to accept connections',
    async () => {
      const out = await podman(['exec', POSTGRES, 'pg_isready', '-h', '127.0.0.1', '-U', 'watson', '-d', 'watson']);
      return out.code === 0 ? true : undefined;
    },
    120_000,
  );
}, 300_000);

afterAll(async () => {
  await removeContainers(REDIS, POSTGRES);
  await podman(['network', 'rm', '--force', NETWORK]);
});

describe('bad input: the container stops with the message the service gives outside a container', () => {
  const redisUrl = () => `redis://127.0.0.1:${redisPort}`;
  let scratch: string;
  beforeEach(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), `${PREFIX}-outside-`));
  });
  afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('Redis down', async () => {
    const env = { REDIS_URL: `redis://127.0.0.1:${closedPort}` };
    const inside = await startContainer(`${PREFIX}-bad-redis-down`, env, `${PREFIX}-bad-vol-1:/data`);
    await podman(['volume', 'rm', '--force', `${PREFIX}-bad-vol-1`]);
    const outside = await startOutside(env, scratch);
    expect(inside).toEqual(outside);
    expect(inside.code).toBe(1);
    expect(inside.message).toMatch(
      new RegExp(
        `^The Redis at redis://127.0.0.1:${closedPort} \\(REDIS_URL\\) does not answer \\(connect ECONNREFUSED`,
      ),
    );
  });

  it('no REDIS_URL: the image has no redis-server, and says to set REDIS_URL', async () => {
    // On the container network: 127.0.0.1:6379 is the container's own, where nothing answers.
    const inside = await startContainer(`${PREFIX}-bad-no-redis`, {}, `${PREFIX}-bad-vol-2:/data`, NETWORK);
    await podman(['volume', 'rm', '--force', `${PREFIX}-bad-vol-2`]);
    expect(inside.code).toBe(1);
    expect(inside.message).toMatch(/redis-server is not installed.*set REDIS_URL/);
  });

  it.each([
    ['nothing listens there', () => `postgres://watson:right-password@127.0.0.1:${closedPort}/watson`],
    ['a wrong password', () => `postgres://watson:wrong-password@127.0.0.1:${postgresPort}/watson`],
    ['a database that does not exist', () => `postgres://watson:right-password@127.0.0.1:${postgresPort}/nowhere`],
  ])('a wrong DATABASE_URL: %s', async (_what, url) => {
    const env = { REDIS_URL: redisUrl(), DATABASE_URL: url() };
    const inside = await startContainer(`${PREFIX}-bad-db`, env, `${PREFIX}-bad-vol-3:/data`);
    await podman(['volume', 'rm', '--force', `${PREFIX}-bad-vol-3`]);
    const outside = await startOutside(env, scratch);
    expect(inside).toEqual(outside);
    expect(inside.code).toBe(1);
    expect(inside.message).toMatch(/^Cannot use the PostgreSQL database .*Check DATABASE_URL/);
    expect(inside.message).not.toContain('password@');
  });

  it('a read-only volume', async () => {
    const env = { REDIS_URL: redisUrl() };
    const inside = await startContainer(`${PREFIX}-bad-ro`, env, `${PREFIX}-bad-vol-4:/data:ro`);
    await podman(['volume', 'rm', '--force', `${PREFIX}-bad-vol-4`]);
    const disk = SmallDisk.mount(1);
    try {
      execFileSync('mount', ['-o', 'remount,ro', disk.dir]);
      const outside = await startOutside(env, disk.dir);
      expect(inside).toEqual(outside);
    } finally {
      disk.unmount();
    }
    expect(inside.code).toBe(1);
    expect(inside.message).toMatch(
      /^The data directory DATA_DIR \(DATA_DIR\) is on a read-only file system .*\(EROFS: read-only file system\)\.$/,
    );
  });

  it('a full volume', async () => {
    const env = { REDIS_URL: redisUrl() };
    const disk = SmallDisk.mount(4);
    try {
      disk.fill();
      const inside = await startContainer(`${PREFIX}-bad-full`, env, `${disk.dir}:/data`);
      const outside = await startOutside(env, disk.dir);
      expect(inside).toEqual(outside);
      expect(inside.code).toBe(1);
      expect(inside.message).toMatch(
        /^The data directory DATA_DIR \(DATA_DIR\) is on a full disk: .*\(ENOSPC: no space left on device\)\.$/,
      );
    } finally {
      disk.unmount();
    }
  });

  it("a volume the image's user may not write (a root-owned host folder)", async () => {
    const env = { REDIS_URL: redisUrl() };
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), `${PREFIX}-root-owned-`));
    fs.chmodSync(folder, 0o755);
    try {
      const inside = await startContainer(`${PREFIX}-bad-owner`, env, `${folder}:/data`);
      const outside = await startOutside(env, folder, 1000); // the image's user, node
      expect(inside).toEqual(outside);
      expect(inside.code).toBe(1);
      expect(inside.message).toMatch(
        /^The data directory DATA_DIR \(DATA_DIR\) is not writable by this process's user \(uid 1000; .*\(EACCES: permission denied\)\.$/,
      );
    } finally {
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });
});

describe('docker stop (SIGTERM)', () => {
  const API = `${PREFIX}-bad-stop`;
  const VOLUME = `${PREFIX}-bad-stop-data`;
  afterAll(async () => {
    await removeContainers(API);
    await podman(['volume', 'rm', '--force', VOLUME]);
  });

  it('ends the container within the grace period, after finishing the upload it had accepted', async () => {
    const port = await freePort();
    // As `docker run` without --init: node is PID 1 and handles SIGTERM itself.
    await podmanOk([
      'run',
      '-d',
      '--name',
      API,
      '--network',
      NETWORK,
      '-p',
      `127.0.0.1:${port}:8080`,
      '-v',
      `${VOLUME}:/data`,
      '-e',
      `REDIS_URL=redis://${REDIS}:6379`,
      '-e',
      `API_KEYS=alice:${ALICE_KEY}`,
      IMAGE,
    ]);
    await waitFor(
      'the API to answer',
      async () => {
        try {
          return (await call(port, 'GET', '/healthz')).status === 200 ? true : undefined;
        } catch {
          return undefined;
        }
      },
      180_000,
    );

    const form = trainingForm(
      {
        circles_positive_examples: await classZip('red-circles', 12, 1),
        squares_positive_examples: await classZip('blue-squares', 12, 2),
      },
      { name: 'accepted' },
    );
    const request = new Request('http://x', { method: 'POST', body: form });
    const body = Buffer.from(await request.arrayBuffer());
    // A slow client: the body takes about 3 s to arrive; SIGTERM comes once a third of it is in.
    const upload = pacedUpload(
      `http://127.0.0.1:${port}`,
      `/v3/classifiers?${VERSION}`,
      { body, contentType: request.headers.get('content-type')! },
      {
        chunkBytes: Math.ceil(body.length / 30),
        pauseMs: 100,
      },
    );
    await waitFor(
      'a third of the upload to be sent',
      async () => (upload.bytesSent() > body.length / 3 ? true : undefined),
      30_000,
      20,
    );
    const stoppedAt = Date.now();
    // docker's default grace period: 10 s, then SIGKILL.
    const stop = await podman(['stop', '--time', '10', API], { timeoutMs: 60_000 });
    const stopSeconds = (Date.now() - stoppedAt) / 1000;
    const outcome = await upload.outcome;
    const ended = await state(API);
    const facts = {
      stop: stop.code,
      exitCode: ended.exitCode,
      inTime: stopSeconds < 10,
      outcome: 'status' in outcome ? outcome.status : outcome.brokenWith,
    };
    const expected = { stop: 0, exitCode: 0, inTime: true, outcome: 200 }; // exit code 137 would be the SIGKILL after the grace period
    if (JSON.stringify(facts) !== JSON.stringify(expected))
      process.stdout.write(`docker stop: ${JSON.stringify(facts)} after ${stopSeconds} s; log:\n${await logs(API)}\n`);
    expect(facts).toEqual(expected);
    const id = JSON.parse((outcome as { body: string }).body).classifier_id;
    process.stdout.write(
      `docker stop during an upload: the container stopped in ${stopSeconds.toFixed(1)} s, exit code ${ended.exitCode}; the upload answered 200 (${id})\n`,
    );

    // Started again on its volume, it has the classifier, and trains it: the upload was kept whole.
    await podmanOk(['start', API]);
    const ready = await waitFor(
      `${id} to be ready after the restart`,
      async () => {
        try {
          const got = await call(port, 'GET', `/v3/classifiers/${id}?${VERSION}`, ALICE_KEY);
          return got.body.status === 'ready' ? got.body : undefined;
        } catch {
          return undefined;
        }
      },
      300_000,
      1000,
    );
    expect(ready.evaluation.examples).toBe(24);
    expect(await logs(API)).not.toMatch(/"level":(50|60)/); // no error logged on the way down or up
  });
});
