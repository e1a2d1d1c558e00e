import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { classImages } from '../../fixtures/images';
import { rawZip, storedEntry } from '../../fixtures/zips';
import { dataLayout } from '../../src/data-access/files/data-layout';
import { trainingForm } from '../support/example-zips';
import {
  ALICE_KEY,
  basicAuth,
  bootService,
  VERSION,
  waitForStatus,
  workerEnvironment,
  type TestService,
} from '../support/service-harness';

const ROOT = path.resolve(__dirname, '..', '..');
const sha256 = (bytes: Buffer) => crypto.createHash('sha256').update(bytes).digest('hex');
const label = (customerId: string) => ({ 'X-Watson-Metadata': `customer_id=${customerId}` });

/**
 * Issue 22: a create keeps each zip whole as one durable file (DATA_DIR/pending) with its checked
 * entry table, answers, and the worker extracts the images into the image store before decoding
 * them. Here the API runs without a worker, so the zips stay pending: what relies on the images
 * (thumbnails) reads them from the zips, and deleting the classifier or the customer's data removes
 * the zips with everything else. Then a worker extracts and trains what is left.
 */
describe('zips kept until the worker extracts them', () => {
  let t: TestService;
  let pictures: Buffer[];

  beforeAll(async () => {
    t = await bootService({ START_WORKER: 'false' });
    pictures = await classImages('red-circles', 36, 71);
  });
  afterAll(async () => {
    await t?.close();
  });

  const pendingFiles = () => {
    const dir = dataLayout(t.dataDir).pending;
    return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
  };
  const pendingRows = async () => {
    const db = await t.openDatabase();
    try {
      return await db.kysely
        .selectFrom('pending_zips')
        .select(['classifier_id', 'customer_id', 'file', 'entries'])
        .orderBy('file')
        .execute();
    } finally {
      await db.close();
    }
  };
  const imageFile = (hash: string) => path.join(dataLayout(t.dataDir).images, hash.slice(0, 2), hash);
  const zipOf = (images: Buffer[], prefix: string) =>
    rawZip(images.map((data, i) => storedEntry(`${prefix}/${i}.jpg`, data)));
  const create = async (name: string, images: Buffer[], headers: Record<string, string> = {}) => {
    const res = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        { a_positive_examples: zipOf(images.slice(0, 10), 'a'), negative_examples: zipOf(images.slice(10), 'n') },
        { name },
      ),
      headers,
    });
    expect(res.status).toBe(200);
    return res.body.classifier_id as string;
  };

  it('answers with each zip kept whole, durable and recorded, and no image written yet', async () => {
    const id = await create('kept', pictures.slice(0, 20));
    const rows = (await pendingRows()).filter((r) => r.classifier_id === id);
    expect(rows).toHaveLength(2);
    expect(pendingFiles()).toEqual(expect.arrayContaining(rows.map((r) => r.file)));
    const entries = rows.flatMap((r) => JSON.parse(r.entries) as Array<[string, string]>);
    expect(entries.map(([hash]) => hash).sort()).toEqual(pictures.slice(0, 20).map(sha256).sort());
    expect(entries.find(([hash]) => hash === sha256(pictures[3]))?.[1]).toBe('a/3.jpg');
    for (const [hash] of entries) expect(fs.existsSync(imageFile(hash))).toBe(false);

    // A thumbnail before the worker extracted the image: read from the kept zip.
    const listed = (await t.call('GET', `/v3/classifiers/${id}/examples?${VERSION}&limit=200`)).body.examples;
    const example = listed.find((e: { file_name: string }) => e.file_name === 'a/3.jpg');
    const res = await fetch(`${t.url}/v3/classifiers/${id}/examples/${example.example_id}/thumbnail?${VERSION}`, {
      headers: { Authorization: basicAuth(ALICE_KEY) },
    });
    expect(res.status).toBe(200);
    expect((await sharp(Buffer.from(await res.arrayBuffer())).metadata()).format).toBe('jpeg');

    expect((await t.call('DELETE', `/v3/classifiers/${id}?${VERSION}`)).status).toBe(200);
    expect((await pendingRows()).filter((r) => r.classifier_id === id)).toEqual([]);
    for (const r of rows) expect(pendingFiles()).not.toContain(r.file);
  });

  it("DELETE /v3/user_data removes the customer's kept zips, and only theirs; a worker then extracts and trains the rest", async () => {
    const theirs = await create('theirs', pictures.slice(0, 20), label('cust-pending'));
    const other = await create('other', pictures.slice(16, 36));
    const update = await t.call('POST', `/v3/classifiers/${other}?${VERSION}`, {
      body: trainingForm({ b_positive_examples: zipOf(pictures.slice(0, 10), 'b') }),
      headers: label('cust-pending'),
    });
    expect(update.status).toBe(200);
    const before = await pendingRows();
    expect(before.filter((r) => r.customer_id === 'cust-pending')).toHaveLength(3);

    const forgot = await t.call('DELETE', `/v3/user_data?${VERSION}&customer_id=cust-pending`);
    expect(forgot.status).toBe(202);
    const after = await pendingRows();
    expect(after.map((r) => [r.classifier_id, r.customer_id])).toEqual([
      [other, null],
      [other, null],
    ]);
    expect(pendingFiles()).toEqual(after.map((r) => r.file).sort());
    expect((await t.call('GET', `/v3/classifiers/${theirs}?${VERSION}`)).status).toBe(404);

    // A worker extracts the zips left into the image store, drops them, and trains.
    const worker = spawn(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'workers', 'training-worker.ts')],
      { env: workerEnvironment(t), stdio: 'ignore' },
    );
    try {
      const ready = await waitForStatus(t, other, ['ready', 'failed'], 240_000);
      expect(ready).toMatchObject({ status: 'ready', classes: [{ class: 'a' }] });
    } finally {
      worker.kill('SIGTERM');
      await new Promise((resolve) => worker.once('exit', resolve));
    }
    expect(await pendingRows()).toEqual([]);
    expect(pendingFiles()).toEqual([]);
    const stored = pictures.slice(16, 36).map(sha256);
    for (const hash of stored) expect(fs.existsSync(imageFile(hash))).toBe(true);
    // The forgotten customer's pictures that no remaining example uses were never written.
    for (const hash of pictures.slice(0, 16).map(sha256)) expect(fs.existsSync(imageFile(hash))).toBe(false);
  }, 300_000);
});
