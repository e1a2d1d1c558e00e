import { solidColorJpeg } from '../../fixtures/images';
import { ALICE_KEY, BOB_KEY, basicAuth, bootService, VERSION, type TestService } from '../support/service-harness';

describe('security basics', () => {
  let t: TestService;
  let image: Buffer;

  beforeAll(async () => {
    t = await bootService({ START_WORKER: 'false', RATE_LIMIT_PER_MINUTE: '3', CORS_ORIGINS: 'https://app.example' });
    image = await solidColorJpeg({ r: 10, g: 200, b: 10 });
  });
  afterAll(async () => {
    await t?.close();
  });

  const classifyForm = () => {
    const form = new FormData();
    form.append('images_file', new Blob([new Uint8Array(image)]), 'g.jpg');
    return form;
  };

  it('sends security headers and no framework banner', async () => {
    const res = await fetch(`${t.url}/v3/classifiers?${VERSION}`, { headers: { Authorization: basicAuth(ALICE_KEY) } });
    expect(res.headers.get('x-powered-by')).toBeNull();
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(res.headers.get('strict-transport-security')).toMatch(/max-age=/);
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  it('answers CORS only for configured origins', async () => {
    const allowed = await fetch(`${t.url}/health`, { headers: { Origin: 'https://app.example' } });
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example');
    const other = await fetch(`${t.url}/health`, { headers: { Origin: 'https://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const off = await bootService({ START_WORKER: 'false' });
    try {
      const res = await fetch(`${off.url}/health`, { headers: { Origin: 'https://app.example' } });
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await off.close();
    }
  });

  it('limits expensive requests per account with a 429 in the Watson error format', async () => {
    for (let i = 0; i < 3; i++) {
      expect((await t.call('POST', `/v3/classify?${VERSION}`, { body: classifyForm() })).status).toBe(200);
    }
    const limited = await t.call('POST', `/v3/classify?${VERSION}`, { body: classifyForm() });
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual({ code: 429, error: expect.stringMatching(/at most 3 .* per minute/) });
    expect((await t.call('GET', `/v3/classifiers?${VERSION}`)).status).toBe(200);
    expect((await t.call('POST', `/v3/classify?${VERSION}`, { body: classifyForm(), key: BOB_KEY })).status).toBe(200);
  });

  it('never puts internals (messages, paths, stacks) in a 500', async () => {
    const classifiers = t.service.ctx.classifiers;
    const original = classifiers.listByOwner;
    classifiers.listByOwner = () => {
      throw new Error(`SQLITE_CORRUPT at ${t.dataDir}/service.sqlite`);
    };
    try {
      const res = await t.call('GET', `/v3/classifiers?${VERSION}`, { key: BOB_KEY });
      expect(res.status).toBe(500);
      expect(res.body).toEqual({ code: 500, error: expect.any(String) });
      expect(res.body.error).not.toMatch(/SQLITE|sqlite|\/tmp|at /);
    } finally {
      classifiers.listByOwner = original;
    }
  });
});
