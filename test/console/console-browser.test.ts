/**
 * The web console in a real browser: headless Debian Chromium driven by playwright-core against the
 * real service (API on port 0 + training worker). Screenshots of each step go to a folder printed at
 * the start (SCREENSHOT_DIR to choose it).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import AdmZip from 'adm-zip';
import type { Locator, Page } from 'playwright-core';
import { classImages } from '../../fixtures/images';
import { findChromium, launchChromium, watchPage, type Browser, type PageWatch } from '../support/chromium';
import { classZip, trainingForm } from '../support/example-zips';
import { ALICE_KEY, bootService, VERSION, type TestService } from '../support/service-harness';

const CHROMIUM = findChromium();
if (!CHROMIUM) {
  const message =
    'No Chromium found (looked for CHROMIUM_PATH, /usr/bin/chromium, /usr/bin/chromium-browser): install it with `apt-get install chromium` (.ci/run does).';
  // CI installs Chromium, so there a missing browser is a failure, not a skip.
  if (process.env.CI) throw new Error(message);
  console.warn(`SKIPPED the browser test of the web console. ${message}`);
}
const describeWithBrowser = CHROMIUM ? describe : describe.skip;

const READY_TIMEOUT_MS = 180_000;
const STEP_TIMEOUT_MS = 30_000;

/** Retries a jest assertion until it passes or `timeoutMs` runs out (then its last failure is thrown). */
async function eventually(assertion: () => Promise<void>, timeoutMs = STEP_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await assertion();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
const containsText = (locator: Locator, text: string, timeoutMs?: number) =>
  eventually(async () => expect(await locator.first().textContent({ timeout: 1000 })).toContain(text), timeoutMs);
const hasText = (locator: Locator, text: string, timeoutMs?: number) =>
  eventually(async () => expect((await locator.first().textContent({ timeout: 1000 }))?.trim()).toBe(text), timeoutMs);
const hasValue = (locator: Locator, value: string) =>
  eventually(async () => expect(await locator.inputValue({ timeout: 1000 })).toBe(value));
const hasCount = (locator: Locator, count: number, timeoutMs?: number) =>
  eventually(async () => expect(await locator.count()).toBe(count), timeoutMs);
/** Drops one file on an element the way a drag from the desktop does: dragover, then drop with a DataTransfer. */
async function dropFile(target: Locator, name: string, type: string, data: Buffer): Promise<void> {
  const transfer = await target.page().evaluateHandle(
    ({ name, type, bytes }) => {
      const page = globalThis as any; // runs in the browser
      const dt = new page.DataTransfer();
      dt.items.add(new File([new Uint8Array(bytes)], name, { type }));
      return dt;
    },
    { name, type, bytes: [...data] },
  );
  await target.dispatchEvent('dragover', { dataTransfer: transfer });
  await target.dispatchEvent('drop', { dataTransfer: transfer });
}
const visible = (locator: Locator, timeoutMs = STEP_TIMEOUT_MS) =>
  locator.first().waitFor({ state: 'visible', timeout: timeoutMs });

describeWithBrowser('web console in Chromium', () => {
  let t: TestService;
  let browser: Browser;
  let page: Page;
  let shots: string;
  let step = 0;
  let watch: PageWatch;

  const shot = async (name: string) => {
    step++;
    await page.screenshot({ path: path.join(shots, `${String(step).padStart(2, '0')}-${name}.png`), fullPage: true });
  };
  const row = (name: string) => page.locator('table.classifiers tbody tr', { hasText: name });

  beforeAll(async () => {
    shots = process.env.SCREENSHOT_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-console-screenshots-'));
    fs.mkdirSync(shots, { recursive: true });
    console.log(`Console screenshots: ${shots}`);
    // A 1 MB zip limit, so the console's own check of the server's limits can be seen refusing.
    t = await bootService({ MAX_ZIP_MB: '1' });
    browser = await launchChromium(CHROMIUM!);
    page = browser.context.pages()[0] ?? (await browser.context.newPage());
    watch = watchPage(page, t.url);
  });

  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  // Two trainings and a browser on a shared machine: well above jest's default per-test time.
  it('signs in, creates from zips, trains, evaluates, classifies, retrains, refuses, deletes', async () => {
    try {
      await journey();
    } catch (error) {
      await shot('FAILED-here').catch(() => undefined);
      throw error;
    }
  }, 600_000);

  async function journey() {
    const zips = {
      circles: await classZip('red-circles', 12, 1),
      noise: await classZip('noise', 12, 3),
      stripes: await classZip('green-stripes', 12, 4),
    };
    const squareImages = await classImages('blue-squares', 12, 2);

    // Served by the API itself, under a policy that allows nothing remote.
    const response = await page.goto(t.url);
    expect(response!.status()).toBe(200);
    const csp = response!.headers()['content-security-policy'];
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/https:|\*/);
    await visible(page.getByLabel('API key'));
    await shot('sign-in');

    // A wrong key is refused with the server's words; the right one signs in.
    await page.getByLabel('API key').fill('not-a-key-at-all');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await containsText(page.getByRole('alert'), 'The service refused this key: The API key is not valid.');
    await page.getByLabel('API key').fill(ALICE_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await visible(page.getByText('None yet.'));
    expect(await page.evaluate(() => (globalThis as any).sessionStorage.getItem('wvr-console.apiKey'))).toBe(ALICE_KEY);

    // Create: a zip on one slot, loose images on another (zipped in the browser), negatives.
    await page.getByRole('button', { name: 'New classifier' }).first().click();
    await page.getByLabel('Name', { exact: true }).fill('shapes');
    const slots = page.getByTestId('slot');
    await slots
      .nth(0)
      .getByTestId('file-input')
      .setInputFiles({ name: 'circles.zip', mimeType: 'application/zip', buffer: zips.circles });
    await hasValue(slots.nth(0).getByLabel('Class 1 name'), 'circles');
    await slots
      .nth(1)
      .getByTestId('file-input')
      .setInputFiles(squareImages.map((buffer, i) => ({ name: `square-${i}.jpg`, mimeType: 'image/jpeg', buffer })));
    await containsText(slots.nth(1), 'images zipped here · 12 images');
    await slots.nth(1).getByLabel('Class 2 name').fill('squares');
    // The negatives are dropped, as a person drags a zip onto the slot.
    await dropFile(page.getByTestId('slot-negative'), 'noise.zip', 'application/zip', zips.noise);
    await containsText(page.getByTestId('slot-negative'), 'noise.zip · 12 images');
    await shot('new-classifier');
    await page.getByRole('button', { name: 'Create and train' }).click();

    // The list follows the training to ready; the evaluation appears.
    await visible(row('shapes'));
    await hasText(row('shapes').getByTestId('status'), 'ready', READY_TIMEOUT_MS);
    const evaluation = page.getByTestId('evaluation');
    await hasCount(evaluation.locator('table.metrics tbody tr'), 2);
    await containsText(evaluation.locator('table.metrics'), 'circles');
    await containsText(evaluation.locator('table.metrics'), 'squares');
    await visible(evaluation.locator('canvas'));
    await visible(evaluation.getByText('Most confused'));
    await visible(evaluation.getByTestId('confusions'));
    await shot('ready-with-evaluation');
    const id = (await row('shapes').getAttribute('data-classifier'))!;
    const created = (await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).body;
    expect(created.classes).toEqual([{ class: 'circles' }, { class: 'squares' }]);

    // Try it: a new red circle is a circle.
    await page.getByRole('button', { name: 'Try it' }).click();
    const [circle] = await classImages('red-circles', 1, 777);
    // Pasted, as from the clipboard.
    await page.evaluate(
      ({ bytes }) => {
        const page = globalThis as any; // runs in the browser
        const transfer = new page.DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], 'circle.jpg', { type: 'image/jpeg' }));
        page.document.dispatchEvent(new page.ClipboardEvent('paste', { clipboardData: transfer }));
      },
      { bytes: [...circle] },
    );
    await visible(page.getByAltText('The image to classify'));
    expect(await page.getByLabel('shapes').isChecked()).toBe(true);
    await page.getByRole('button', { name: 'Classify' }).click();
    const shapesResult = page.locator(`.classifier-result[data-classifier="${id}"]`);
    await hasText(shapesResult.locator('.score .class-name'), 'circles');
    await visible(page.locator('.classifier-result[data-classifier="default"]'));
    await shot('classify');
    // Down to threshold 0: every class of the classifier shows, the custom classifier first.
    await page.getByRole('slider', { name: 'Threshold' }).fill('0');
    await hasCount(shapesResult.locator('.score'), 2);
    expect(await page.locator('.classifier-result').first().getAttribute('data-classifier')).toBe(id);
    // A URL the server will not fetch (loopback): its reason shows where the scores would be.
    await page.getByLabel('…or an image URL').fill(`${t.url}/nothing.jpg`);
    await page.getByRole('button', { name: 'Classify' }).click();
    await containsText(page.getByTestId('results').locator('.notice.error'), 'private address');

    // Retrain with a new class: the page says the previous version still answers.
    await page.getByRole('button', { name: 'Classifiers' }).click();
    await row('shapes').click();
    await page.getByRole('button', { name: 'Add examples…' }).click();
    const addForm = page.getByRole('form', { name: 'Add examples' });
    await addForm
      .getByTestId('slot')
      .first()
      .getByTestId('file-input')
      .setInputFiles({ name: 'stripes.zip', mimeType: 'application/zip', buffer: zips.stripes });
    await hasValue(addForm.getByLabel('Class 1 name'), 'stripes');
    await addForm.getByRole('button', { name: 'Upload and retrain' }).click();
    await containsText(page.getByTestId('notice'), 'The previous version keeps answering classify calls');
    await shot('retraining');
    await hasText(row('shapes').getByTestId('status'), 'ready', READY_TIMEOUT_MS);
    await hasCount(page.getByTestId('version-select').locator('option'), 2);
    await hasCount(page.getByTestId('evaluation').locator('table.metrics tbody tr'), 3);
    await shot('retrained');

    // Refusal: a zip of 3 images; the console warns, and shows the server's message verbatim.
    const tiny = new AdmZip();
    (await classImages('yellow-triangles', 3, 5)).forEach((bytes, i) => tiny.addFile(`t${i}.jpg`, bytes));
    const tinyZip = tiny.toBuffer();
    const expected = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        { triangles_positive_examples: tinyZip, circles_positive_examples: zips.circles },
        { name: 'tiny' },
      ),
    });
    expect(expected.status).toBe(400);
    await page.getByRole('button', { name: 'New classifier' }).first().click();
    await page.getByLabel('Name', { exact: true }).fill('tiny');
    // Checked before anything is sent: a zip over the server's limit, a class name Watson forbids.
    const big = new AdmZip();
    for (let i = 0; i < 10; i++) big.addFile(`big${i}.jpg`, crypto.randomBytes(120_000));
    await slots
      .nth(0)
      .getByTestId('file-input')
      .setInputFiles({ name: 'big.zip', mimeType: 'application/zip', buffer: big.toBuffer() });
    await slots.nth(0).getByLabel('Class 1 name').fill('tri-angles');
    await slots
      .nth(1)
      .getByTestId('file-input')
      .setInputFiles({ name: 'circles.zip', mimeType: 'application/zip', buffer: zips.circles });
    const requestsBefore = watch.requests;
    await page.getByRole('button', { name: 'Create and train' }).click();
    await visible(page.getByTestId('check').filter({ hasText: 'each zip may hold at most 1 MB' }));
    await visible(page.getByTestId('check').filter({ hasText: 'contains “-”' }));
    expect(watch.requests).toBe(requestsBefore);
    await slots.nth(0).getByLabel('Class 1 name').fill('triangles');
    await slots
      .nth(0)
      .getByTestId('file-input')
      .setInputFiles({ name: 'triangles.zip', mimeType: 'application/zip', buffer: tinyZip });
    await slots
      .nth(1)
      .getByTestId('file-input')
      .setInputFiles({ name: 'circles.zip', mimeType: 'application/zip', buffer: zips.circles });
    await visible(page.getByText('seems to hold only 3 images'));
    await page.getByRole('button', { name: 'Create and train' }).click();
    await containsText(page.getByTestId('refusal'), expected.body.error);
    await shot('refused-upload');

    // Deleted in another tab (here: by another client): the page says so and drops it.
    const other = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        { circles_positive_examples: zips.circles, negative_examples: zips.noise },
        { name: 'elsewhere' },
      ),
    });
    await page.getByRole('button', { name: 'Classifiers' }).click();
    await row('elsewhere').click({ timeout: 20_000 });
    await t.call('DELETE', `/v3/classifiers/${other.body.classifier_id}?${VERSION}`);
    await containsText(page.getByTestId('notice'), 'no longer exists', 20_000);
    await hasCount(row('elsewhere'), 0);
    await shot('deleted-elsewhere');

    // Lost connection: a banner says what to do, and goes once the service answers again.
    await browser.context.setOffline(true);
    await containsText(page.getByTestId('offline'), 'did not answer', 20_000);
    await shot('offline');
    await browser.context.setOffline(false);
    await hasCount(page.getByTestId('offline'), 0, 20_000);

    // Delete with confirmation.
    await row('shapes').click();
    await page.getByRole('button', { name: 'Delete classifier…' }).click();
    await containsText(page.getByRole('alertdialog'), 'This cannot be undone');
    await shot('confirm-delete');
    await page.getByRole('button', { name: 'Delete for good' }).click();
    await containsText(page.getByTestId('notice'), 'Deleted shapes');
    await hasCount(row('shapes'), 0);
    expect((await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).status).toBe(404);

    // A key revoked meanwhile: back to sign-in with a message, never an empty page.
    await page.evaluate(() => (globalThis as any).sessionStorage.setItem('wvr-console.apiKey', 'revoked-key-0000'));
    await page.reload();
    await containsText(page.getByRole('alert'), 'no longer accepts your API key');
    await shot('key-refused');

    expect(watch.errors).toEqual([]);
    expect(watch.foreignRequests).toEqual([]);
  }
});
