/**
 * Child-process entry of the benches: boots the real service from this
 * process's environment and prints one JSON line `{"benchServiceReady": …}` on
 * stdout, so the load comes from another process (the bench) as it would in
 * production. With API_PROCESSES > 1 it is the cluster's primary, as `npm start`
 * is (node:cluster runs this same script for the API processes). Stops on
 * SIGTERM/SIGINT, and when stdin closes (the bench died).
 */
import cluster from 'node:cluster';
import { loadConfig } from '../../src/config';
import { runApiProcess, startApiCluster } from '../../src/processes/api-cluster';
import { startService } from '../../src/processes/api-process';

export interface BenchServiceReady {
  url: string;
  port: number;
  /** The API process; with API_PROCESSES > 1, the cluster's primary, and the API processes are `apiPids`. */
  pid: number;
  apiPids?: number[];
  workerPid?: number;
}

async function start(): Promise<{ ready: BenchServiceReady; close(): Promise<void> }> {
  if (loadConfig(process.env).apiProcesses > 1) {
    const running = await startApiCluster(process.env);
    return {
      ready: {
        url: running.url,
        port: running.port,
        pid: process.pid,
        apiPids: running.apiPids(),
        workerPid: running.workerPid(),
      },
      close: running.close,
    };
  }
  const service = await startService(process.env);
  return {
    ready: { url: service.url, port: service.port, pid: process.pid, workerPid: service.worker?.pid },
    close: service.close,
  };
}

async function main(): Promise<void> {
  if (cluster.isWorker) {
    await runApiProcess(process.env);
    return;
  }
  const service = await start();
  process.stdout.write(`${JSON.stringify({ benchServiceReady: service.ready })}\n`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await service.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  process.stdin.on('end', () => void stop());
  process.stdin.resume();
}

main().catch((error) => {
  console.error('bench service failed to start:', error);
  process.exit(1);
});
