import path from 'node:path';
import { ConfigError, loadConfig } from '../../src/config';

describe('loadConfig', () => {
  it('has working defaults', () => {
    const c = loadConfig({});
    expect(c.port).toBe(8080);
    expect(c.dataDir).toBe(path.resolve('./data'));
    expect(c.modelsDir).toBe(path.resolve('./data/models'));
    expect(c.limits.maxZipBytes).toBe(100 * 1024 * 1024);
    expect(c.limits.maxRequestBytes).toBe(256 * 1024 * 1024);
    expect(c.allowPrivateUrls).toBe(false);
    expect(c.apiKeys).toEqual([]);
    expect({ keep: c.keepVersions, attempts: c.callbackAttempts, backoff: c.callbackBackoffMs }).toEqual({
      keep: 10,
      attempts: 8,
      backoff: 10_000,
    });
  });

  it('parses API_KEYS as owner:key pairs', () => {
    expect(loadConfig({ API_KEYS: 'alice:secret-123,bob:other-key-9' }).apiKeys).toEqual([
      { owner: 'alice', key: 'secret-123' },
      { owner: 'bob', key: 'other-key-9' },
    ]);
  });

  it('fails fast naming every bad variable', () => {
    expect(() => loadConfig({ PORT: 'eighty', ORT_THREADS: '0' })).toThrow(ConfigError);
    expect(() => loadConfig({ PORT: 'eighty', ORT_THREADS: '0' })).toThrow(/PORT.*ORT_THREADS|ORT_THREADS.*PORT/);
    expect(() => loadConfig({ REDIS_URL: 'not a url' })).toThrow(/REDIS_URL/);
    expect(() => loadConfig({ API_KEYS: 'nokey' })).toThrow(/API_KEYS entry 1/);
    expect(() => loadConfig({ API_KEYS: 'a:short' })).toThrow(/at least 8 characters/);
    expect(() => loadConfig({ ALLOW_PRIVATE_URLS: 'maybe' })).toThrow(/ALLOW_PRIVATE_URLS/);
    expect(() => loadConfig({ KEEP_VERSIONS: '0' })).toThrow(/KEEP_VERSIONS/);
    expect(() => loadConfig({ CALLBACK_ATTEMPTS: 'many' })).toThrow(/CALLBACK_ATTEMPTS/);
  });
});
