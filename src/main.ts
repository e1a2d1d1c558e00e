import { ConfigError } from './config';
import { DatabaseSchemaError, DatabaseUnavailableError } from './data-access/database';
import { DataDirectoryInUseError, NamespaceInUseError } from './data-access/instance-identity';
import { RedisUnavailableError } from './data-access/redis-server';
import { GENERATED_KEY_OWNER } from './domain/bootstrap-keys';
import { startService } from './service';

async function main() {
  const service = await startService(process.env);
  if (service.generatedKey) {
    console.log(
      `\nNo API key was configured, so one was generated for the owner '${GENERATED_KEY_OWNER}'. It is shown only now:\n\n  ${service.generatedKey}\n\n` +
        `Use it as: curl -u "apikey:${service.generatedKey}" "http://localhost:${service.port}/v3/classifiers?version=2018-03-19"\n` +
        'Manage keys with: npm run keys -- add <owner> | list | revoke <id>\n',
    );
  }
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    service.ctx.logger.info({ signal }, 'shutting down');
    await service.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err) => {
  if (err instanceof ConfigError || err instanceof RedisUnavailableError || err instanceof NamespaceInUseError || err instanceof DatabaseSchemaError ||
    err instanceof DatabaseUnavailableError || err instanceof DataDirectoryInUseError) {
    console.error(err.message);
  } else {
    console.error('The service failed to start:', err);
  }
  process.exit(1);
});
