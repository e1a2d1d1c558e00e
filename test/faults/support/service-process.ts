import { spawnServiceProcess } from '../../../bench/lib/bench-service';
import { callApi, type ApiAnswer } from './api-client';

/** The API running as its own process, which a test can kill -9. */
export interface ServiceProcess {
  url: string;
  port: number;
  /** The process started: the API, or with API_PROCESSES > 1 the cluster's primary. */
  pid: number;
  /** With API_PROCESSES > 1: the API processes serving when it became ready. */
  apiPids?: number[];
  workerPid?: number;
  call(method: string, pathAndQuery: string, init?: { body?: FormData; key?: string }): Promise<ApiAnswer>;
  /** Sends the signal and resolves once the process is gone. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

/**
 * Starts the service with `env` in a child process (the benches' `service-process`, so it always
 * runs the current source) and resolves once it listens; throws BenchServiceStartError otherwise.
 */
export async function startServiceProcess(env: NodeJS.ProcessEnv): Promise<ServiceProcess> {
  const { child, ready } = spawnServiceProcess(env);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let started;
  try {
    started = await ready;
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw error;
  }
  const { url, port, pid, apiPids, workerPid } = started;
  return {
    url,
    port,
    pid,
    apiPids,
    workerPid,
    call: (method, pathAndQuery, init) => callApi(url, method, pathAndQuery, init),
    kill: async (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
