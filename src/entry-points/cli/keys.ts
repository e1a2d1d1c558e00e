import { loadConfig } from '../../config';
import { ApiKeyRepository, generateKey } from '../../data-access/db/api-key-repository';
import { dataLayout } from '../../data-access/files/data-layout';
import { Database } from '../../data-access/db/database';
import { readDataDirectoryInstance } from '../../data-access/files/data-directory';

const USAGE = `Usage: npm run keys -- <command>
  add <owner>     create a key for the owner (an account); prints the key once
  list            list keys (id, owner, first characters, source, state)
  revoke <id>     revoke the key with that id`;

/** API key management on the service's database (DATABASE_URL, else the SQLite file in DATA_DIR). */
async function main(argv: string[]): Promise<number> {
  const [command, arg] = argv;
  const config = loadConfig();
  const db = await Database.open({
    databaseUrl: config.databaseUrl,
    sqliteFile: dataLayout(config.dataDir).database,
    dataDirectoryInstance: await readDataDirectoryInstance(config.dataDir),
    stallTimeoutMs: config.databaseStallTimeoutMs,
  });
  const keys = new ApiKeyRepository(db);
  try {
    if (command === 'add' && arg && /^[A-Za-z0-9_.@-]+$/.test(arg)) {
      const key = generateKey();
      await keys.add(arg, key, 'cli');
      console.log(`New key for owner '${arg}' (shown only now; store it):\n${key}`);
      return 0;
    }
    if (command === 'list') {
      for (const k of await keys.list()) {
        console.log(
          `${k.id}\t${k.ownerId}\t${k.keyPrefix}…\t${k.source}\t${k.revoked ? `revoked ${k.revoked}` : 'active'}`,
        );
      }
      return 0;
    }
    if (command === 'revoke' && arg && /^\d+$/.test(arg)) {
      if (await keys.revoke(Number(arg))) {
        console.log(`Key ${arg} revoked.`);
        return 0;
      }
      console.error(`No active key with id ${arg} (see: npm run keys -- list).`);
      return 1;
    }
    console.error(USAGE);
    return 2;
  } finally {
    await db.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  },
);
