import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { ApiKeyRepository, hashKey } from '../../src/data-access/api-key-repository';
import { openDatabase } from '../../src/data-access/database';
import { bootstrapApiKeys } from '../../src/domain/bootstrap-keys';

describe('API keys', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keys-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('generates one key on first start, stores only its hash, and never again', () => {
    const db = openDatabase(path.join(dir, 'db.sqlite'));
    const keys = new ApiKeyRepository(db);
    const { generatedKey } = bootstrapApiKeys(keys, []);
    expect(generatedKey).toMatch(/^[A-Za-z0-9_-]{40}$/);
    expect(keys.ownerOfKey(generatedKey!)).toBe('admin');
    const stored = JSON.stringify(db.prepare('SELECT * FROM api_keys').all());
    expect(stored).not.toContain(generatedKey!);
    expect(stored).toContain(hashKey(generatedKey!));
    expect(bootstrapApiKeys(keys, []).generatedKey).toBeUndefined();
    db.close();
  });

  it('makes API_KEYS the active environment keys and revokes removed ones', () => {
    const db = openDatabase(path.join(dir, 'db.sqlite'));
    const keys = new ApiKeyRepository(db);
    bootstrapApiKeys(keys, [{ owner: 'a', key: 'key-of-a-1' }, { owner: 'b', key: 'key-of-b-1' }]);
    expect(keys.ownerOfKey('key-of-b-1')).toBe('b');
    bootstrapApiKeys(keys, [{ owner: 'a', key: 'key-of-a-1' }]);
    expect(keys.ownerOfKey('key-of-a-1')).toBe('a');
    expect(keys.ownerOfKey('key-of-b-1')).toBeUndefined();
    const cli = keys.add('c', 'key-of-c-1', 'cli');
    expect(keys.revoke(cli.id)).toBe(true);
    expect(keys.ownerOfKey('key-of-c-1')).toBeUndefined();
    db.close();
  });

  it('migrates a database once even when opened twice', () => {
    const file = path.join(dir, 'db.sqlite');
    const first = openDatabase(file);
    const second = openDatabase(file);
    expect(second.pragma('user_version', { simple: true })).toBeGreaterThan(0);
    first.close();
    second.close();
  });
});
