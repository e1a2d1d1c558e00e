/**
 * bench:console — what the web console costs a person opening it: the size of its files (raw and
 * gzip, as the API sends them) and how long headless Chromium takes, against the real service in
 * another process, from navigation to a usable page:
 *  - cold: a fresh browser profile each time (nothing cached) to the sign-in form;
 *  - warm: the same page loaded again (assets from the cache);
 *  - signed in: with the key in the tab's session storage, until the classifier list has been read.
 * Medians of RUNS loads. Needs Chromium (apt-get install chromium). Last line: one JSON object.
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { findChromium, launchChromium } from '../test/support/chromium';
import { benchMain } from './lib/bench-main';
import { repoRoot } from './lib/repo';

const RUNS = 7;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const kb = (bytes: number) => Math.round(bytes / 102.4) / 10;

function bundleSizes(): { files: number; raw_kb: number; gzip_kb: number } {
  const dir = path.join(repoRoot(), 'dist', 'console');
  const html = fs.readFileSync(path.join(dir, 'index.html'));
  const assets = fs.readdirSync(path.join(dir, 'assets')).map((f) => fs.readFileSync(path.join(dir, 'assets', f)));
  const all = [html, ...assets];
  return {
    files: all.length,
    raw_kb: kb(all.reduce((sum, b) => sum + b.length, 0)),
    gzip_kb: kb(all.reduce((sum, b) => sum + zlib.gzipSync(b).length, 0)),
  };
}

benchMain(async (service) => {
  const chromium = findChromium();
  if (!chromium) throw new Error('No Chromium found: apt-get install chromium (or set CHROMIUM_PATH).');
  const bundle = bundleSizes();
  console.log(`bundle: ${bundle.files} files, ${bundle.raw_kb} KB, ${bundle.gzip_kb} KB gzip`);

  const cold: number[] = [];
  const warm: number[] = [];
  const signedIn: number[] = [];
  let transferredKb = 0;
  for (let run = 0; run < RUNS; run++) {
    const browser = await launchChromium(chromium);
    try {
      const page = browser.context.pages()[0] ?? (await browser.context.newPage());
      // Bytes on the wire (compressed bodies as sent), first load only.
      const transfers: Array<Promise<number>> = [];
      const onResponse = (response: import('playwright-core').Response) =>
        transfers.push(
          response
            .finished()
            .then(() => response.request().sizes())
            .then((s) => s.responseBodySize + s.responseHeadersSize),
        );
      page.on('response', onResponse);
      let start = performance.now();
      await page.goto(service.url);
      await page.getByLabel('API key').waitFor();
      cold.push(performance.now() - start);
      page.off('response', onResponse);
      if (run === 0) transferredKb = kb((await Promise.all(transfers)).reduce((a, b) => a + b, 0));

      start = performance.now();
      await page.reload();
      await page.getByLabel('API key').waitFor();
      warm.push(performance.now() - start);

      await page.evaluate(
        (key) => (globalThis as any).sessionStorage.setItem('wvr-console.apiKey', key),
        service.apiKey,
      );
      start = performance.now();
      await page.reload();
      await page.getByText('None yet.').waitFor();
      signedIn.push(performance.now() - start);
    } finally {
      await browser.close();
    }
  }
  const ms = (values: number[]) => Math.round(median(values));
  console.log(
    `load to sign-in form: cold ${ms(cold)} ms, warm ${ms(warm)} ms; signed in to the list: ${ms(signedIn)} ms (median of ${RUNS})`,
  );
  return {
    bench: 'console',
    bundle_files: bundle.files,
    bundle_raw_kb: bundle.raw_kb,
    bundle_gzip_kb: bundle.gzip_kb,
    first_load_transferred_kb: transferredKb,
    cold_load_ms: ms(cold),
    warm_load_ms: ms(warm),
    signed_in_list_ms: ms(signedIn),
    runs: RUNS,
  };
});
