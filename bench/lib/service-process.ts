/**
 * Child-process entry of the benches: boots the real service from this
 * process's environment and prints one JSON line `{"benchServiceReady": …}` on
 * stdout, so the load comes from another process (the bench) as it would in
 * production. Stops on SIGTERM/SIGINT, and when stdin closes (the bench died).
 */
import { startService } from '../../src/service';

export interface BenchServiceReady {
  url: string;
  port: number;
  pid: number;
  workerPid?: number;
}

async function main(): Promise<void> {
  const service = await startService(process.env);
  const ready: BenchServiceReady = { url: service.url, port: service.port, pid: process.pid, workerPid: service.worker?.pid };
  process.stdout.write(`${JSON.stringify({ benchServiceReady: ready })}\n`);

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
