import { ConfigError, loadConfig } from '../../config';
import { MoveError, moveToPostgres } from '../../domain/move-to-postgres';

const USAGE = `Usage: npm run migrate -- --to postgres://user:password@host:5432/database
  Copies the instance in DATA_DIR (its service.sqlite) to an empty PostgreSQL database and verifies
  the copy. Stop the service first. The SQLite file is only read.`;

/** The value of `--to <url>` or `--to=<url>`; undefined when the arguments are anything else. */
function targetFrom(argv: string[]): string | undefined {
  if (argv.length === 2 && argv[0] === '--to') return argv[1];
  if (argv.length === 1 && argv[0].startsWith('--to=')) return argv[0].slice('--to='.length);
  return undefined;
}

/** `npm run migrate -- --to postgres://…`: moves the instance from SQLite to PostgreSQL (see moveToPostgres). */
async function main(argv: string[]): Promise<number> {
  const targetUrl = targetFrom(argv);
  if (!targetUrl) {
    console.error(USAGE);
    return 2;
  }
  const config = loadConfig();
  const report = await moveToPostgres({
    dataDir: config.dataDir,
    targetUrl,
    redisUrl: config.redisUrl ?? 'redis://127.0.0.1:6379',
    queuePrefix: config.queuePrefix,
    log: (line) => console.log(line),
    onTable: (t) =>
      console.log(
        `  ${t.table.padEnd(24)} ${String(t.rows).padStart(9)} rows  ${t.seconds.toFixed(1).padStart(6)} s  sha256 ${t.checksum.slice(0, 16)}…`,
      ),
  });
  const rows = report.tables.reduce((sum, t) => sum + t.rows, 0);
  for (const s of report.skipped)
    console.log(`  ${s.table.padEnd(24)} ${String(s.rows).padStart(9)} rows  not copied: ${s.reason}`);
  console.log(
    `Ids continue after the largest ever issued: ${Object.entries(report.nextIds)
      .map(([table, next]) => `${table} from ${next}`)
      .join(', ')}.`,
  );
  console.log(
    `Done: ${report.tables.length} tables, ${rows} rows in ${report.seconds.toFixed(1)} s, each table's row count and SHA-256 (rows in key order) equal on both sides. ` +
      `${report.source} was only read.`,
  );
  console.log(`
Next: start the service on PostgreSQL with the same data directory (images and heads stay there; it is bound to
instance ${report.instanceId}, which moved along), the same REDIS_URL and QUEUE_PREFIX (queued trainings continue):
  DATABASE_URL=<the --to URL> DATA_DIR=${config.dataDir} npm start
Keep ${report.source} as a backup, and do not start the service without DATABASE_URL again: the instance now lives in ${report.target}.`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    // MoveError and ConfigError messages say what to do; anything else is a bug, shown with its stack.
    console.error(err instanceof MoveError || err instanceof ConfigError ? err.message : err);
    process.exitCode = 1;
  },
);
