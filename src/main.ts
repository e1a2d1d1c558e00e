import cluster from 'node:cluster';
import { exitAfterFailedStart } from './processes/start-failure';
import { loadConfig } from './config';
import { GENERATED_KEY_OWNER } from './domain/bootstrap-keys';
import { runApiProcess, startApiCluster } from './processes/api-cluster';
import { startService } from './processes/api-process';

function announceGeneratedKey(key: string, port: number): void {
  console.log(
    `\nNo API key was configured, so one was generated for the owner '${GENERATED_KEY_OWNER}'. It is shown only now:\n\n  ${key}\n\n` +
      `Use it as: curl -u "apikey:${key}" "http://localhost:${port}/v3/classifiers?version=2018-03-19"\n` +
      'Manage keys with: npm run keys -- add <owner> | list | revoke <id>\n',
  );
}

/** Stops `close` on SIGTERM or SIGINT (once), then exits. */
function stopOnSignals(close: () => Promise<void>, log: (signal: string) => void): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(signal);
    await close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

/**
 * `npm start`: one API process with its training worker, or with API_PROCESSES > 1 a node:cluster
 * primary running that many API processes on the one port and the worker (processes/api-cluster.ts).
 */
async function main() {
  if (cluster.isWorker) {
    await runApiProcess(process.env);
    return;
  }
  const config = loadConfig(process.env);
  if (config.apiProcesses > 1) {
    const running = await startApiCluster(process.env);
    if (running.generatedKey) announceGeneratedKey(running.generatedKey, running.port);
    stopOnSignals(running.close, (signal) => console.error(`${signal}: stopping the API processes and the worker`));
    return;
  }
  const service = await startService(process.env);
  if (service.generatedKey) announceGeneratedKey(service.generatedKey, service.port);
  stopOnSignals(service.close, (signal) => service.ctx.logger.info({ signal }, 'shutting down'));
}

main().catch((err) => exitAfterFailedStart(err, 'The service failed to start:'));
