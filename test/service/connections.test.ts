import { loadConfig } from '../../src/config';
import { ALICE_KEY, basicAuth, bootService, VERSION, type TestService } from '../support/service-harness';
import { reuseAfterIdle } from '../support/idle-connection';

/**
 * Longer than Node's own keep-alive timeout (5 s, after which its server closes an idle connection
 * about a second later), shorter than the idle timeouts of reverse proxies (60 s to 2 min), which
 * reuse a connection to the service after such a pause: the service must not close it first.
 */
const PROXY_LIKE_IDLE_MS = 7_000;

describe('connections kept alive by clients and reverse proxies', () => {
  let t: TestService;

  beforeAll(async () => {
    t = await bootService({ START_WORKER: 'false', OPS_PORT: '0' });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('keeps an idle connection open, on the API port and the operations port, and answers the next request on it', async () => {
    const [api, ops] = await Promise.all([
      reuseAfterIdle(`${t.url}/v3/classifiers?${VERSION}`, PROXY_LIKE_IDLE_MS, { Authorization: basicAuth(ALICE_KEY) }),
      reuseAfterIdle(`${t.service.opsUrl}/healthz`, PROXY_LIKE_IDLE_MS),
    ]);
    const timeoutS = loadConfig({}).keepAliveTimeoutMs / 1000;
    for (const outcome of [api, ops]) {
      expect(outcome).toEqual({
        keepAlive: `timeout=${timeoutS}`,
        closedAfterMs: undefined,
        reused: true,
        secondStatus: 200,
      });
    }
  });
});
