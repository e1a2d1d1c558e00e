import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { callApi, type ApiAnswer } from './api-client';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const START_TIMEOUT_MS = 90_000;

/** The API running as its own process, which a test can kill -9. */
export interface ServiceProcess {
  url: string;
  port: number;
  pid: number;
  call(method: string, pathAndQuery: string, init?: { body?: FormData; key?: string }): Promise<ApiAnswer>;
  /** Sends the signal and resolves once the process is gone. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

export class ServiceProcessError extends Error {}

/**
 * Starts the service in a child process (test/faults/support/service-child.ts through ts-node, so
 * it always runs the current source) and resolves once it listens.
 */
export function startServiceProcess(env: NodeJS.ProcessEnv): Promise<ServiceProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', path.join(__dirname, 'service-child.ts')],
    { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new ServiceProcessError(`the service process did not start within ${START_TIMEOUT_MS} ms; stderr: ${stderr}`));
    }, START_TIMEOUT_MS);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new ServiceProcessError(`the service process exited before it listened (code ${code}, signal ${signal}); stderr: ${stderr}`));
    });
    let stdout = '';
    let ready = false;
    child.stdout!.on('data', (d: Buffer) => {
      if (ready) return; // keep draining the pipe; only the ready line matters
      stdout += d.toString();
      const line = stdout.split('\n').find((l) => l.startsWith('{"faultServiceReady"'));
      if (!line) return;
      ready = true;
      clearTimeout(timer);
      const { port } = JSON.parse(line).faultServiceReady as { port: number };
      const url = `http://127.0.0.1:${port}`;
      resolve({
        url,
        port,
        pid: child.pid!,
        call: (method, pathAndQuery, init) => callApi(url, method, pathAndQuery, init),
        kill: async (signal) => {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          await exited;
        },
      });
    });
  });
}
