/**
 * Child-process entry of the fault tests: boots the real service (startService) from this
 * process's environment and prints one line `{"faultServiceReady":{"port":…,"pid":…}}`, so a
 * test can kill -9 the API as a whole process. SIGTERM stops it cleanly.
 */
import { startService } from '../../../src/service';

async function main(): Promise<void> {
  const service = await startService(process.env);
  process.stdout.write(`${JSON.stringify({ faultServiceReady: { port: service.port, pid: process.pid } })}\n`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await service.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
}

main().catch((error) => {
  console.error('fault-test service failed to start:', error);
  process.exit(1);
});
