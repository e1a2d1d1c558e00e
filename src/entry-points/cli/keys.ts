import { loadConfig } from '../../config';
import { ApiKeyRepository, generateKey } from '../../data-access/api-key-repository';
import { dataLayout } from '../../data-access/data-layout';
import { openDatabase } from '../../data-access/database';

const USAGE = `Usage: npm run keys -- <command>
  add <owner>     create a key for the owner (an account); prints the key once
  list            list keys (id, owner, first characters, source, state)
  revoke <id>     revoke the key with that id`;

/** API key management on the service's database (DATA_DIR). */
function main(argv: string[]): number {
  const [command, arg] = argv;
  const config = loadConfig();
  const db = openDatabase(dataLayout(config.dataDir).database);
  const keys = new ApiKeyRepository(db);
  try {
    if (command === 'add' && arg && /^[A-Za-z0-9_.@-]+$/.test(arg)) {
      const key = generateKey();
      keys.add(arg, key, 'cli');
      console.log(`New key for owner '${arg}' (shown only now; store it):\n${key}`);
      return 0;
    }
    if (command === 'list') {
      for (const k of keys.list()) {
        console.log(`${k.id}\t${k.ownerId}\t${k.keyPrefix}…\t${k.source}\t${k.revoked ? `revoked ${k.revoked}` : 'active'}`);
      }
      return 0;
    }
    if (command === 'revoke' && arg && /^\d+$/.test(arg)) {
      if (keys.revoke(Number(arg))) {
        console.log(`Key ${arg} revoked.`);
        return 0;
      }
      console.error(`No active key with id ${arg} (see: npm run keys -- list).`);
      return 1;
    }
    console.error(USAGE);
    return 2;
  } finally {
    db.close();
  }
}

process.exitCode = main(process.argv.slice(2));
