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

  it('serves the operations endpoints on the API port unless OPS_PORT moves them', () => {
    expect(loadConfig({ HOST: '10.0.0.1' }).ops).toEqual({
      metrics: true,
      health: true,
      port: undefined,
      host: '10.0.0.1',
      publishIntervalMs: 5000,
    });
    expect(
      loadConfig({ OPS_PORT: '9100', OPS_HOST: '127.0.0.1', METRICS_ENABLED: 'false', HEALTH_ENABLED: '0' }).ops,
    ).toMatchObject({
      metrics: false,
      health: false,
      port: 9100,
      host: '127.0.0.1',
    });
    expect(() => loadConfig({ OPS_PORT: '70000' })).toThrow(/OPS_PORT/);
    expect(() => loadConfig({ METRICS_PUBLISH_INTERVAL_MS: '10' })).toThrow(/METRICS_PUBLISH_INTERVAL_MS/);
  });

  it('keeps idle connections open longer than reverse proxies reuse them, unless KEEP_ALIVE_TIMEOUT_MS says otherwise', () => {
    // Caddy's 2 minutes, Traefik's 90 s, nginx's and AWS ALB's 60 s: all shorter.
    expect(loadConfig({}).keepAliveTimeoutMs).toBe(125_000);
    expect(loadConfig({ KEEP_ALIVE_TIMEOUT_MS: '650000' }).keepAliveTimeoutMs).toBe(650_000);
    expect(() => loadConfig({ KEEP_ALIVE_TIMEOUT_MS: '0' })).toThrow(/KEEP_ALIVE_TIMEOUT_MS/);
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
