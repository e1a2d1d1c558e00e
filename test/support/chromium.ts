import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Where Debian's (or another distribution's) Chromium lives; CHROMIUM_PATH overrides. */
export function findChromium(): string | undefined {
  const candidates = [
    process.env.CHROMIUM_PATH,
    '/usr/bin/chromium',
    '/usr/bin/chromium-browser',
    '/snap/bin/chromium',
  ];
  return candidates.find((p): p is string => !!p && fs.existsSync(p));
}

/** The flags the project launches Chromium with: headless, no sandbox (root in CI), nothing phoning home. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Launches headless Chromium (playwright-core, no browser download) with a fresh profile directory. */
export async function launchChromium(executablePath: string): Promise<Browser> {
  const userDataDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'wvr-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 860 },
    locale: 'en-GB',
    timezoneId: 'UTC',
  });
  return {
    context,
    async close() {
      await context.close();
      await fs.promises.rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** What a browser test watches on its page; the arrays fill as the page runs. */
export interface PageWatch {
  /** Uncaught page errors and console errors (a refused API call's "Failed to load resource" is expected, not kept). */
  errors: string[];
  /** Every request to somewhere other than `origin` (data: and blob: URLs aside): the console must make none. */
  foreignRequests: string[];
  /** How many requests the page has made so far. */
  requests: number;
}

/** Starts watching `page` for errors and for requests that leave `origin` (the service under test's base URL). */
export function watchPage(page: Page, origin: string): PageWatch {
  const watch: PageWatch = { errors: [], foreignRequests: [], requests: 0 };
  page.on('pageerror', (error) => watch.errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    // A refused call is logged by Chromium as a failed resource; anything else (CSP violations included) is a fault.
    if (message.type() === 'error' && !/Failed to load resource/.test(message.text()))
      watch.errors.push(`console: ${message.text()}`);
  });
  page.on('request', (request) => {
    watch.requests++;
    const url = request.url();
    if (!url.startsWith(origin) && !url.startsWith('data:') && !url.startsWith('blob:'))
      watch.foreignRequests.push(url);
  });
  return watch;
}
