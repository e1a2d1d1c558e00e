import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { dataLayout } from '../../src/data-access/files/data-layout';

const ROOT = path.resolve(__dirname, '..', '..');
const FOREIGN_INSTANCE = 'c0ffee00-0000-4000-8000-000000000000';

/** Runs an executable from source to its exit: its exit code and what it wrote to stderr. */
function run(script: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(ROOT, script)], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
}

/**
 * A data directory that belongs to an instance whose database is missing: opening the instance
 * refuses at its first step, with a message that says what to do. Both executables print that
 * message as it is (no stack) and exit 1.
 */
describe('a start refused while opening the instance', () => {
  let dataDir: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-refusal-'));
    fs.writeFileSync(path.join(dataDir, 'instance-id'), `${FOREIGN_INSTANCE}\n`);
    env = {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
      START_WORKER: 'false',
      ORT_THREADS: '1',
      LOG_LEVEL: 'warn',
    };
    delete env.DATABASE_URL;
  });
  afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  const refusal = () =>
    `The data directory ${dataDir} belongs to instance ${FOREIGN_INSTANCE}, but its database ${dataLayout(dataDir).database} is missing. ` +
    'Restore it from a backup, or set DATABASE_URL if the instance lives in PostgreSQL.';

  it('npm start prints only the message', async () => {
    expect(await run('src/main.ts', env)).toEqual({ code: 1, stderr: `${refusal()}\n` });
  });

  it('the training worker prints it after its prefix', async () => {
    expect(await run('workers/training-worker.ts', env)).toEqual({
      code: 1,
      stderr: `training worker failed to start: ${refusal()}\n`,
    });
  });
});

/** A port another program holds: one line saying which port and which setting picks another, exit 1. */
describe('a start on a port already in use', () => {
  let dataDir: string;
  let holder: net.Server;
  let port: number;
  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-port-'));
    holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    port = (holder.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => holder.close(resolve));
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('npm start names the port and PORT', async () => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
      QUEUE_PREFIX: `wvr-port-${process.pid}`,
      API_KEYS: 'alice:alice-key-0123456789',
      START_WORKER: 'false',
      ORT_THREADS: '1',
      LOG_LEVEL: 'warn',
    };
    delete env.DATABASE_URL;
    expect(await run('src/main.ts', env)).toEqual({
      code: 1,
      stderr:
        `Port ${port} on 127.0.0.1 is already in use (another program, or this service started twice). ` +
        'Stop that program, or set PORT to a free port.\n',
    });
  });
});
