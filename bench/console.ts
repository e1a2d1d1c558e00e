/**
 * bench:console — what the web console costs a person opening it: the size of its files (raw and
 * gzip, as the API sends them) and how long headless Chromium takes, against the real service in
 * another process, from navigation to a usable page:
 *  - cold: a fresh browser profile each time (nothing cached) to the sign-in form;
 *  - warm: the same page loaded again (assets from the cache);
 *  - signed in: with the key in the tab's session storage, until the classifier list has been read;
 *  - the class grid (issue 23): from a click on the Examples tab until the first page's GRID_PAGE
 *    thumbnails are all shown (fetched with the key, cold), and shown again after another class was
 *    looked at (revalidated with their ETags: 304s, no image bytes), with the bytes each way.
 * Medians of RUNS loads (GRID_RUNS for the grid). Needs Chromium (apt-get install chromium). Last line: one JSON object.
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { findChromium, launchChromium } from '../test/support/chromium';
import { benchMain } from './lib/bench-main';
import { zipOf } from './lib/bench-images';
import { WatsonClient } from './lib/watson-client';
import { repoRoot } from './lib/repo';

const RUNS = 7;
/** Examples per class of the grid's classifier: more than the console's first page (console/src/examples.tsx GRID_PAGE). */
const GRID_IMAGES = 30;
const GRID_PAGE = 24;
/** Browser runs of the grid (each opens the page twice over); fewer than RUNS, to bound the time on a shared machine. */
const GRID_RUNS = 3;
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

benchMain(async (service, images) => {
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
  const grid = await measureGrid(service, images);
  const ms = (values: number[]) => Math.round(median(values));
  console.log(
    `load to sign-in form: cold ${ms(cold)} ms, warm ${ms(warm)} ms; signed in to the list: ${ms(signedIn)} ms (median of ${RUNS})`,
  );
  console.log(
    `class grid, first ${GRID_PAGE} thumbnails: cold ${ms(grid.cold)} ms (${grid.coldKb} KB), again ${ms(grid.again)} ms (${grid.againNotModified} of ${grid.againRequests} answered 304, ${grid.againKb} KB; median of ${GRID_RUNS})`,
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
    grid_first_page_cold_ms: ms(grid.cold),
    grid_first_page_again_ms: ms(grid.again),
    grid_cold_thumbnail_kb: grid.coldKb,
    grid_again_thumbnail_kb: grid.againKb,
    grid_again_not_modified: grid.againNotModified,
    grid_again_requests: grid.againRequests,
    runs: RUNS,
    grid_runs: GRID_RUNS,
  };
});

/**
 * Trains a two-class classifier of GRID_IMAGES each, then per run (fresh browser, signed in, a window
 * tall enough to hold the whole first page): the Examples tab's first page of class `a` cold, then
 * class `b`, then `a` again. Thumbnail bytes (bodies and headers, as sent) are from the first run.
 */
async function measureGrid(
  service: Parameters<Parameters<typeof benchMain>[0]>[0],
  images: Parameters<Parameters<typeof benchMain>[0]>[1],
) {
  const client = new WatsonClient(service.url, service.apiKey);
  const view = await client.createClassifier('grid', {
    a_positive_examples: zipOf(await images.take(GRID_IMAGES, 'class-a'), 'a'),
    b_positive_examples: zipOf(await images.take(GRID_IMAGES, 'class-b'), 'b'),
  });
  await client.waitUntilReady(view.classifier_id, 300_000, 100);
  const chromium = findChromium()!;
  const cold: number[] = [];
  const again: number[] = [];
  let coldKb = 0;
  let againKb = 0;
  let againNotModified = 0;
  let againRequests = 0;
  for (let run = 0; run < GRID_RUNS; run++) {
    const browser = await launchChromium(chromium);
    try {
      const page = browser.context.pages()[0] ?? (await browser.context.newPage());
      await page.setViewportSize({ width: 1280, height: 2600 });
      await page.goto(service.url);
      await page.evaluate(
        (key) => (globalThis as any).sessionStorage.setItem('wvr-console.apiKey', key),
        service.apiKey,
      );
      await page.reload();
      await page.locator(`tr[data-classifier="${view.classifier_id}"]`).click();
      const thumbnails: Array<{ status: number; bytes: Promise<number> }> = [];
      page.on('response', (response) => {
        if (!/\/thumbnail\?/.test(response.url())) return;
        // Counted on the first run only; later runs' sizes are never awaited (and their browser closes under them).
        const bytes =
          run === 0
            ? response
                .finished()
                .then(() => response.request().sizes())
                .then((sizes) => sizes.responseBodySize + sizes.responseHeadersSize)
                // A revalidation still on the way when the browser closes: not part of what is measured.
                .catch(() => 0)
            : Promise.resolve(0);
        thumbnails.push({ status: response.status(), bytes });
      });
      const allShown = () =>
        page.waitForFunction(
          (count) => {
            const shown = [
              ...(globalThis as any).document.querySelectorAll(
                '[data-testid="class-grid"] [data-testid="thumbnail"] img',
              ),
            ];
            return shown.length === count && shown.every((img: any) => img.complete && img.naturalWidth > 0);
          },
          GRID_PAGE,
          { polling: 'raf' },
        );
      const grid = page.getByTestId('class-grid');
      let start = performance.now();
      await page.getByRole('tab', { name: 'Examples' }).click();
      await allShown();
      cold.push(performance.now() - start);
      const coldCount = thumbnails.length;
      await grid.getByRole('button', { name: 'b', exact: true }).click();
      await allShown();
      const before = thumbnails.length;
      start = performance.now();
      await grid.getByRole('button', { name: 'a', exact: true }).click();
      await allShown();
      again.push(performance.now() - start);
      // Shown from the tab's own copies at once; their revalidations answer meanwhile.
      for (let waited = 0; thumbnails.length - before < GRID_PAGE && waited < 30_000; waited += 50)
        await new Promise((resolve) => setTimeout(resolve, 50));
      if (run === 0) {
        const sum = async (list: typeof thumbnails) =>
          kb((await Promise.all(list.map((t) => t.bytes))).reduce((a, b) => a + b, 0));
        coldKb = await sum(thumbnails.slice(0, coldCount));
        const second = thumbnails.slice(before);
        againKb = await sum(second);
        againRequests = second.length;
        againNotModified = second.filter((t) => t.status === 304).length;
      }
    } finally {
      await browser.close();
    }
  }
  return { cold, again, coldKb, againKb, againNotModified, againRequests };
}
