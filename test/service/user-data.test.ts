import http from 'node:http';
import AdmZip from 'adm-zip';
import { classImages } from '../../fixtures/images';
import { classZip, trainingForm } from '../support/example-zips';
import { cachedEmbeddings, headFilesOnDisk, headsHolding, imageFileExists, sha256 } from '../support/forgetting';
import {
  ALICE_KEY,
  basicAuth,
  bootService,
  BOB_KEY,
  VERSION,
  waitForStatus,
  type TestService,
} from '../support/service-harness';

// One service for the file: every test makes classifiers of its own, with images and customer ids of its own.
let t: TestService;
beforeAll(async () => {
  t = await bootService();
});
afterAll(async () => {
  await t?.close();
});

describe('DELETE /v3/user_data', () => {
  it('deletes what was labelled with the customer id and retrains what lost examples', async () => {
    const label = { 'X-Watson-Metadata': 'customer_id=cust-1' };
    const circles = await classZip('red-circles', 10, 41);
    const noise = await classZip('noise', 10, 42);
    const labelled = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm({ a_positive_examples: circles, negative_examples: noise }, { name: 'labelled' }),
      headers: label,
    });
    const kept = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm({ circles_positive_examples: circles, negative_examples: noise }, { name: 'kept' }),
    });
    const keptId = kept.body.classifier_id;
    await waitForStatus(t, keptId, ['ready']);
    const update = await t.call('POST', `/v3/classifiers/${keptId}?${VERSION}`, {
      body: trainingForm({ squares_positive_examples: await classZip('blue-squares', 10, 43) }),
      headers: label,
    });
    expect(update.body.classes).toHaveLength(2);
    await waitForStatus(t, keptId, ['ready']);

    const missing = await t.call('DELETE', `/v3/user_data?${VERSION}`);
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatch(/customer_id/);

    const res = await fetch(`${t.url}/v3/user_data?${VERSION}&customer_id=cust-1`, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${'alice-key-0123456789'}` },
    });
    expect(res.status).toBe(202);
    expect((await t.call('GET', `/v3/classifiers/${labelled.body.classifier_id}?${VERSION}`)).status).toBe(404);
    const after = await waitForStatus(t, keptId, ['ready', 'failed']);
    expect(after.status).toBe('ready');
    expect(after.classes).toEqual([{ class: 'circles' }]);
    expect((await t.service.ctx.classifiers.trainingSnapshot(keptId))!.examples).toHaveLength(20);
  });
});

const zipOf = (images: Buffer[], folder = 'img') => {
  const zip = new AdmZip();
  images.forEach((bytes, i) => zip.addFile(`${folder}/${i}.jpg`, bytes));
  return zip.toBuffer();
};
const label = (customerId: string) => ({ 'X-Watson-Metadata': `customer_id=${customerId}` });
const REMOVED = /was removed because customer data it was trained on was deleted \(DELETE \/v3\/user_data\)/;

/**
 * Issue 21: after DELETE /v3/user_data and the retrain it starts, nothing derived from the deleted
 * images answers, exports or stays on disk; what other examples (of any owner) still use stays.
 */
describe('DELETE /v3/user_data forgets everything derived from the deleted images', () => {
  let zips: Record<'cars' | 'trucks' | 'triangles' | 'noise', Buffer>;
  let probe: Buffer;

  const create = async (
    name: string,
    files: Record<string, Buffer>,
    headers: Record<string, string> = {},
    key = ALICE_KEY,
  ) => {
    const res = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(files, { name }),
      headers,
      key,
    });
    expect(res.status).toBe(200);
    return res.body.classifier_id as string;
  };
  const update = async (id: string, files: Record<string, Buffer>, headers: Record<string, string> = {}) => {
    const res = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, { body: trainingForm(files), headers });
    expect(res.status).toBe(200);
  };
  const ready = async (id: string, key = ALICE_KEY) => {
    const done = await waitForStatus({ ...t, call: (m, p, init = {}) => t.call(m, p, { ...init, key }) }, id, [
      'ready',
      'failed',
    ]);
    expect({ id, status: done.status, explanation: done.explanation }).toEqual({
      id,
      status: 'ready',
      explanation: undefined,
    });
    return done;
  };
  const versionList = async (id: string) => (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
  const currentVersion = async (id: string) => (await versionList(id)).current_version_id as number;
  const classify = (classifierIds: string) => {
    const form = new FormData();
    form.append('images_file', new Blob([new Uint8Array(probe)]), 'probe.jpg');
    form.append('classifier_ids', classifierIds);
    form.append('threshold', '0');
    return t.call('POST', `/v3/classify?${VERSION}`, { body: form });
  };
  const forget = (customerId: string) =>
    t.call('DELETE', `/v3/user_data?${VERSION}&customer_id=${encodeURIComponent(customerId)}`);
  const headFileOf = async (versionId: number) => {
    const db = await t.openDatabase();
    try {
      return (
        await db.kysely.selectFrom('versions').select('head_file').where('id', '=', versionId).executeTakeFirstOrThrow()
      ).head_file;
    } finally {
      await db.close();
    }
  };
  const embeddingsOf = async (hashes: string[]) => {
    const db = await t.openDatabase();
    try {
      return await cachedEmbeddings(db, hashes);
    } finally {
      await db.close();
    }
  };

  beforeAll(async () => {
    zips = {
      cars: await classZip('red-circles', 10, 61),
      trucks: await classZip('blue-squares', 10, 62),
      triangles: await classZip('yellow-triangles', 10, 66),
      noise: await classZip('noise', 10, 63),
    };
    [probe] = await classImages('green-stripes', 1, 69);
  });

  describe('versions trained on a deleted example', () => {
    let animals: string;
    let bobs: string;
    let leopards: Buffer[];
    let v1: number;
    let v2: number;
    let v3: number;

    beforeAll(async () => {
      leopards = await classImages('green-stripes', 10, 64);
      animals = await create('animals', {
        cars_positive_examples: zips.cars,
        trucks_positive_examples: zips.trucks,
        negative_examples: zips.noise,
      });
      await ready(animals);
      v1 = await currentVersion(animals);
      await update(animals, { leopard_positive_examples: zipOf(leopards) }, label('cust-A'));
      await ready(animals);
      v2 = await currentVersion(animals);
      await update(animals, { triangles_positive_examples: zips.triangles });
      await ready(animals);
      v3 = await currentVersion(animals);
      // Bob uploads five of the same pictures: they are his examples too.
      bobs = await create(
        'bobs',
        {
          stripes_positive_examples: zipOf([...leopards.slice(0, 5), ...(await classImages('green-stripes', 5, 65))]),
          negative_examples: zips.noise,
        },
        {},
        BOB_KEY,
      );
      await ready(bobs, BOB_KEY);
    });

    it('finding 1: no older version answers, exports, activates or is listed once the retrain without the data is done', async () => {
      const heads = { v2: await headFileOf(v2), v3: await headFileOf(v3) };
      expect((await classify(`${animals}@${v2}`)).status).toBe(200);

      expect((await forget('cust-A')).status).toBe(202);
      // v2 is not current: it goes at once. v3 serves until the retrain without the data is ready.
      const unknownPin = (v: number) => ({
        code: 400,
        error: `Classifier '${animals}' has no version ${v}. GET /v3/classifiers/${animals}/versions lists its versions.`,
      });
      expect((await classify(`${animals}@${v2}`)).body).toEqual(unknownPin(v2));
      await ready(animals);
      const v4 = await currentVersion(animals);
      expect(v4).toBeGreaterThan(v3);

      for (const v of [v2, v3]) {
        expect((await classify(`${animals}@${v}`)).body).toEqual(unknownPin(v));
        for (const model of ['onnx_model', 'core_ml_model']) {
          const res = await t.call('GET', `/v3/classifiers/${animals}/${model}?${VERSION}&version_id=${v}`);
          expect({ model, status: res.status }).toEqual({ model, status: 410 });
          expect(res.body.error).toMatch(REMOVED);
        }
        const activation = await t.call('POST', `/v3/classifiers/${animals}/versions/${v}/activate?${VERSION}`);
        expect(activation.status).toBe(410);
        expect(activation.body.error).toMatch(REMOVED);
      }
      const listed = await versionList(animals);
      expect(listed.versions.map((v: { version_id: number }) => v.version_id)).toEqual([v1, v4]);
      // The history of current-version changes keeps the ids and times: which version answered when.
      expect(listed.history.map((e: { version_id: number }) => e.version_id)).toEqual([v1, v2, v3, v4]);
      const answer = (await classify(animals)).body.images[0].classifiers[0];
      expect(answer.version_id).toBe(v4);
      expect(answer.classes.map((c: { class: string }) => c.class).sort()).toEqual(['cars', 'triangles', 'trucks']);

      const onDisk = headFilesOnDisk(t.dataDir);
      expect(onDisk).not.toContain(heads.v2);
      expect(onDisk).not.toContain(heads.v3);
    });

    it('finding 3: the embedding cache and the image store forget every image no example references, across owners', async () => {
      const hashes = leopards.map(sha256);
      const [shared, alicesOnly] = [hashes.slice(0, 5), hashes.slice(5)];
      // Alice's five are gone everywhere; the five Bob also uploaded stay, for him, and only in his heads.
      expect([...(await embeddingsOf(alicesOnly)).keys()]).toEqual([]);
      expect(alicesOnly.filter((h) => imageFileExists(t.dataDir, h))).toEqual([]);
      const sharedEmbeddings = await embeddingsOf(shared);
      expect(sharedEmbeddings.size).toBe(5);
      expect(shared.every((h) => imageFileExists(t.dataDir, h))).toBe(true);
      for (const embedding of sharedEmbeddings.values()) {
        for (const file of headsHolding(t.dataDir, embedding)) expect(file.startsWith(`${bobs}/`)).toBe(true);
      }
      // Bob's classify still works: his classifier is untouched.
      expect((await t.call('GET', `/v3/classifiers/${bobs}?${VERSION}`, { key: BOB_KEY })).body.status).toBe('ready');

      // Deleting a classifier forgets its images' embeddings too, once nothing else uses them.
      const carHashes = (await t.service.ctx.classifiers.trainingSnapshot(animals))!.examples
        .filter((e) => e.className === 'cars')
        .map((e) => e.imageHash);
      expect((await embeddingsOf(carHashes)).size).toBe(carHashes.length);
      expect((await t.call('DELETE', `/v3/classifiers/${bobs}?${VERSION}`, { key: BOB_KEY })).status).toBe(200);
      expect([...(await embeddingsOf(shared)).keys()]).toEqual([]);
      expect(shared.filter((h) => imageFileExists(t.dataDir, h))).toEqual([]);
      expect((await t.call('DELETE', `/v3/classifiers/${animals}?${VERSION}`)).status).toBe(200);
      expect([...(await embeddingsOf(carHashes)).keys()]).toEqual([]);
    });
  });

  it('finding 4: activating a version trained on deleted data is refused; an earlier one restores only what exists and retrains', async () => {
    const zoo = await create('zoo', {
      cars_positive_examples: zips.cars,
      trucks_positive_examples: zips.trucks,
      negative_examples: zips.noise,
    });
    await ready(zoo);
    const v1 = await currentVersion(zoo);
    await update(zoo, { leopard_positive_examples: await classZip('green-stripes', 10, 71) }, label('cust-B'));
    await ready(zoo);
    const v2 = await currentVersion(zoo);
    expect((await forget('cust-B')).status).toBe(202);
    await ready(zoo);

    const refused = await t.call('POST', `/v3/classifiers/${zoo}/versions/${v2}/activate?${VERSION}`);
    expect(refused.status).toBe(410);
    expect(refused.body.error).toMatch(REMOVED);
    const rolledBack = await t.call('POST', `/v3/classifiers/${zoo}/versions/${v1}/activate?${VERSION}`);
    expect(rolledBack.status).toBe(200);
    expect(rolledBack.body.classes).toEqual([{ class: 'cars' }, { class: 'trucks' }]);
    await update(zoo, { triangles_positive_examples: zips.triangles });
    const done = await ready(zoo);
    expect(done.classes).toEqual([{ class: 'cars' }, { class: 'trucks' }, { class: 'triangles' }]);
  });

  it('a classifier left with nothing that can train serves nothing from the deleted data and says what to upload', async () => {
    // The same pictures in both classes: no negatives of its own, so only the customer's negatives make it trainable.
    const both = await create('both', { cars_positive_examples: zips.cars, autos_positive_examples: zips.cars });
    expect((await waitForStatus(t, both, ['ready', 'failed'])).status).toBe('failed');
    await update(both, { negative_examples: zips.noise }, label('cust-C'));
    await ready(both);
    const v1 = await currentVersion(both);
    expect((await forget('cust-C')).status).toBe(202);

    const after = (await t.call('GET', `/v3/classifiers/${both}?${VERSION}`)).body;
    expect(after).toMatchObject({
      status: 'failed',
      core_ml_enabled: false,
      classes: [{ class: 'cars' }, { class: 'autos' }],
    });
    expect(after.explanation).toMatch(/DELETE \/v3\/user_data/);
    expect(after.explanation).toMatch(/negative_examples/);
    expect(after.explanation).not.toMatch(/cust-C/);
    expect((await versionList(both)).versions).toEqual([]);
    expect((await classify(`${both}@${v1}`)).status).toBe(400);
    const unpinned = await classify(`${both},default`);
    expect(unpinned.body.warnings).toContainEqual(expect.objectContaining({ warning_id: 'classifier_not_ready' }));
    expect((await t.call('GET', `/v3/classifiers/${both}/onnx_model?${VERSION}`)).status).toBe(409);
    expect(headFilesOnDisk(t.dataDir).filter((f) => f.startsWith(`${both}/`))).toEqual([]);
  });

  it('drops a removed version from the API process memory at its next classify request', async () => {
    const held = await create('held', { cars_positive_examples: zips.cars, negative_examples: zips.noise });
    await ready(held);
    const first = await currentVersion(held);
    await update(held, { leopard_positive_examples: await classZip('green-stripes', 10, 72) }, label('cust-M'));
    await ready(held);
    const tainted = await currentVersion(held);
    // Rolled back: the current version never saw the customer's images, so the deletion needs no retrain.
    expect((await t.call('POST', `/v3/classifiers/${held}/versions/${first}/activate?${VERSION}`)).status).toBe(200);
    const cache = t.service.classify.headCache;
    expect((await classify(`${held}@${tainted},${held}`)).status).toBe(200);
    const loaded = cache.size.entries;
    expect((await forget('cust-M')).status).toBe(202);
    expect((await t.call('GET', `/v3/classifiers/${held}?${VERSION}`)).body.status).toBe('ready');
    expect((await classify('default')).status).toBe(200);
    expect(cache.size.entries).toBe(loaded - 1);
    expect((await classify(`${held}`)).body.images[0].classifiers[0].version_id).toBe(first);
  });

  describe('races', () => {
    let race: string;
    let exported: number;
    let pinned: number;

    beforeAll(async () => {
      race = await create('race', { cars_positive_examples: zips.cars, negative_examples: zips.noise });
      await ready(race);
      const first = await currentVersion(race);
      await update(race, { leopard_positive_examples: await classZip('green-stripes', 10, 73) }, label('cust-R1'));
      await ready(race);
      exported = await currentVersion(race);
      // Back to the first version, so what follows never trained on cust-R1's images.
      expect((await t.call('POST', `/v3/classifiers/${race}/versions/${first}/activate?${VERSION}`)).status).toBe(200);
      await update(race, { trucks_positive_examples: zips.trucks }, label('cust-R2'));
      await ready(race);
      pinned = await currentVersion(race);
      await update(race, { triangles_positive_examples: zips.triangles });
      await ready(race);
    });

    /** Runs `deletion` just before the service reads the head file of `versionId` (once). */
    async function deleteWhileReading(versionId: number, deletion: () => Promise<unknown>) {
      const heads = t.service.ctx.heads;
      const file = await headFileOf(versionId);
      const read = heads.read.bind(heads);
      heads.read = async (relative: string) => {
        if (relative === file) {
          heads.read = read;
          await deletion();
        }
        return read(relative);
      };
    }

    it('an export that reads a version while the deletion removes it answers 410, never 5xx', async () => {
      await deleteWhileReading(exported, async () => expect((await forget('cust-R1')).status).toBe(202));
      const res = await t.call('GET', `/v3/classifiers/${race}/onnx_model?${VERSION}&version_id=${exported}`);
      expect(res.status).toBe(410);
      expect(res.body.error).toMatch(REMOVED);
    });

    it('a classify pinned to a version the deletion removes meanwhile answers as after the deletion', async () => {
      await deleteWhileReading(pinned, async () => expect((await forget('cust-R2')).status).toBe(202));
      const res = await classify(`${race}@${pinned}`);
      expect(res.body).toEqual({
        code: 400,
        error: `Classifier '${race}' has no version ${pinned}. GET /v3/classifiers/${race}/versions lists its versions.`,
      });
      await ready(race);
    });

    it('a deletion racing a classifier deletion or an activation leaves a consistent state', async () => {
      const gone = await create('gone', { cars_positive_examples: zips.cars, negative_examples: zips.noise });
      await ready(gone);
      await update(gone, { leopard_positive_examples: await classZip('green-stripes', 10, 74) }, label('cust-R3'));
      const [forgot, deleted] = await Promise.all([
        forget('cust-R3'),
        t.call('DELETE', `/v3/classifiers/${gone}?${VERSION}`),
      ]);
      expect([forgot.status, deleted.status]).toEqual([202, 200]);
      expect((await t.call('GET', `/v3/classifiers/${gone}?${VERSION}`)).status).toBe(404);
      expect(headFilesOnDisk(t.dataDir).filter((f) => f.startsWith(`${gone}/`))).toEqual([]);

      const rolled = await create('rolled', { cars_positive_examples: zips.cars, negative_examples: zips.noise });
      await ready(rolled);
      const first = await currentVersion(rolled);
      await update(rolled, { leopard_positive_examples: await classZip('green-stripes', 10, 75) }, label('cust-R4'));
      await ready(rolled);
      const tainted = await currentVersion(rolled);
      const [activated, forgotToo] = await Promise.all([
        t.call('POST', `/v3/classifiers/${rolled}/versions/${first}/activate?${VERSION}`),
        forget('cust-R4'),
      ]);
      expect(activated.status).toBe(200);
      expect(forgotToo.status).toBe(202);
      await ready(rolled);
      const listed = await versionList(rolled);
      expect(listed.versions.map((v: { version_id: number }) => v.version_id)).not.toContain(tainted);
      expect(listed.versions.map((v: { version_id: number }) => v.version_id)).toContain(listed.current_version_id);
      expect((await t.call('GET', `/v3/classifiers/${rolled}?${VERSION}`)).body.classes).toEqual([{ class: 'cars' }]);
    });
  });

  describe('finding 5: X-Watson-Metadata is parsed as Watson did', () => {
    const form = () =>
      trainingForm({ cars_positive_examples: zips.cars, negative_examples: zips.noise }, { name: 'labels' });
    const createWith = (value: string) =>
      t.call('POST', `/v3/classifiers?${VERSION}`, { body: form(), headers: { 'X-Watson-Metadata': value } });
    const names = async () =>
      (await t.call('GET', `/v3/classifiers?${VERSION}`)).body.classifiers.map((c: { name: string }) => c.name);

    it('refuses two headers, several values, another field name or an empty id with a 400 that says so; nothing is stored', async () => {
      const before = await names();
      // Two header lines, as a client may send them: fetch cannot, so node:http does.
      const body = new Response(form());
      const twoHeaders = await new Promise<{ status: number; body: any }>((resolve, reject) => {
        const req = http.request(`${t.url}/v3/classifiers?${VERSION}`, { method: 'POST' }, (res) => {
          let text = '';
          res.on('data', (chunk) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
        });
        req.on('error', reject);
        req.setHeader('Authorization', basicAuth(ALICE_KEY));
        req.setHeader('Content-Type', body.headers.get('content-type')!);
        req.setHeader('X-Watson-Metadata', ['customer_id=c1', 'customer_id=c2']);
        void body.arrayBuffer().then((bytes) => req.end(Buffer.from(bytes)));
      });
      expect(twoHeaders.status).toBe(400);
      expect(twoHeaders.body.error).toMatch(/X-Watson-Metadata.*(once|one)/);

      const cases: Array<[string, RegExp]> = [
        ['customer_id=c1, customer_id=c2', /several values|once/],
        ['customer_id=c1; customer_id=c2', /customer_id.*(twice|once)/],
        ['xcustomer_id=c1', /'xcustomer_id'/],
        ['Customer_ID=c1', /'Customer_ID'/],
        ['customer_id=', /empty/],
        ['customer_id', /customer_id=<id>/],
        [`customer_id=${'x'.repeat(1001)}`, /1000/],
        ['customer_id=a\tb', /control character/],
      ];
      for (const [value, message] of cases) {
        const res = await createWith(value);
        expect({ value, status: res.status }).toEqual({ value, status: 400 });
        expect({ value, error: res.body.error }).toEqual({ value, error: expect.stringMatching(message) });
      }
      expect(await names()).toEqual(before);
    });

    it('accepts spaces around the pair and a trailing semicolon, and the DELETE of that id finds it', async () => {
      const res = await createWith(' customer_id = spaced ; ');
      expect(res.status).toBe(200);
      expect((await forget('spaced')).status).toBe(202);
      expect((await t.call('GET', `/v3/classifiers/${res.body.classifier_id}?${VERSION}`)).status).toBe(404);
    });

    it('answers a DELETE with a customer_id no label can have with a 400 that says why, an unknown one with a 202 that deletes nothing', async () => {
      const kept = await createWith('customer_id=keeper');
      expect(kept.status).toBe(200);
      const bad: Array<[string, RegExp]> = [
        ['customer_id=', /customer_id/],
        [`customer_id=${'x'.repeat(1001)}`, /1000/],
        [`customer_id=${encodeURIComponent('a;b')}`, /';'/],
        [`customer_id=${encodeURIComponent('a=b')}`, /'='/],
        [`customer_id=${encodeURIComponent('a\u0001b')}`, /control character/],
        ['customer_id=a&customer_id=b', /once/],
      ];
      for (const [query, message] of bad) {
        const res = await t.call('DELETE', `/v3/user_data?${VERSION}&${query}`);
        expect({ query, status: res.status }).toEqual({ query, status: 400 });
        expect({ query, error: res.body.error }).toEqual({ query, error: expect.stringMatching(message) });
      }
      expect((await forget('nobody-uses-this')).status).toBe(202);
      expect((await t.call('GET', `/v3/classifiers/${kept.body.classifier_id}?${VERSION}`)).status).toBe(200);
      await t.call('DELETE', `/v3/classifiers/${kept.body.classifier_id}?${VERSION}`);
    });
  });
});
