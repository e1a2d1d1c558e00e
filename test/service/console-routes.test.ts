import express, { type NextFunction, type Request, type Response } from 'express';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../../src/config';
import { consoleRoutes, CONSOLE_DIR } from '../../src/entry-points/http/console-routes';
import { ApiError } from '../../src/errors';
import { bootService, type TestService } from '../support/service-harness';
import fs from 'node:fs';
import path from 'node:path';

/** How the API serves the web console's files (the console itself is driven in test/console). */
describe('web console routes', () => {
  let t: TestService;
  beforeAll(async () => {
    if (!fs.existsSync(path.join(CONSOLE_DIR, 'index.html'))) {
      throw new Error(`The console is not built in ${CONSOLE_DIR}: run \`npm run build:console\` (npm test does).`);
    }
    t = await bootService({ MAX_ZIP_MB: '7', MIN_IMAGES_PER_ZIP: '5' });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('serves the page at / without a key, with the limits this server enforces and a policy that allows nothing remote', async () => {
    const res = await fetch(`${t.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const csp = res.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).not.toMatch(/https:|\*|unsafe-inline|unsafe-eval|upgrade-insecure-requests/);
    const html = await res.text();
    const meta = /<meta name="console-limits" content="([^"]*)"/.exec(html)![1];
    const limits = JSON.parse(
      meta
        .replace(/&quot;/g, '"')
        .replace(/&lt;/g, '<')
        .replace(/&amp;/g, '&'),
    );
    expect(limits).toMatchObject({ maxZipBytes: 7 * 1024 * 1024, minImagesPerZip: 5, maxImagesPerZip: 10_000 });
    // Every script and style is a file of this origin.
    const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]).filter((u) => !u.startsWith('data:'));
    expect(assets.length).toBeGreaterThanOrEqual(2);
    for (const asset of assets) {
      expect(asset).toMatch(/^\/assets\//);
      const file = await fetch(`${t.url}${asset}`, { headers: { 'Accept-Encoding': 'gzip' } });
      expect(file.status).toBe(200);
      expect(file.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expect(file.headers.get('content-encoding')).toBe('gzip');
    }
  });

  it('answers a missing asset with the API error body, and keeps the API itself under its own policy', async () => {
    const missing = await fetch(`${t.url}/assets/nope.js`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: 404 });
    const api = await fetch(`${t.url}/v3/classifiers?version=2018-03-19`);
    expect(api.status).toBe(401);
    expect(api.headers.get('cache-control')).toBe('no-store');
    // helmet's default policy, untouched outside the console.
    expect(api.headers.get('content-security-policy')).toContain('upgrade-insecure-requests');
  });

  it('says how to build the console when it was not built', async () => {
    const app = express();
    app.use(consoleRoutes(loadConfig({}), path.join(t.dataDir, 'no-console-here')));
    app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
      const status = error instanceof ApiError ? error.status : 500;
      res.status(status).json({ code: status, error: (error as Error).message });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: string }).error).toContain('npm run build');
    } finally {
      server.close();
    }
  });
});
