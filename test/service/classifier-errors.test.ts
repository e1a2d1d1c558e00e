import crypto from 'node:crypto';
import AdmZip from 'adm-zip';
import { solidColorJpeg } from '../../fixtures/images';
import { ALICE_KEY, bootService, VERSION, type TestService } from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';
import { tmpEntries } from '../support/upload-files';

/** Every 4xx of the classifier endpoints: status, Watson error body, and a message that says what to do. */
describe('classifier endpoints refuse bad input clearly', () => {
  let t: TestService;
  let good: Buffer;
  let negatives: Buffer;

  beforeAll(async () => {
    // Small limits so the size errors are cheap to provoke.
    t = await bootService({ MAX_ZIP_MB: '1', MAX_REQUEST_MB: '2', START_WORKER: 'false' });
    good = await classZip('red-circles', 10, 1);
    negatives = await classZip('noise', 10, 2);
  });
  afterAll(async () => {
    await t?.close();
  });

  const create = (zips: Record<string, Buffer>, fields: Record<string, string> = { name: 'x' }) =>
    t.call('POST', `/v3/classifiers?${VERSION}`, { body: trainingForm(zips, fields) });

  it('401 without a key, with an unknown key, or with another Basic user', async () => {
    const none = await t.call('GET', `/v3/classifiers?${VERSION}`, { key: null });
    expect(none.status).toBe(401);
    expect(none.body).toEqual({ code: 401, error: expect.stringMatching(/apikey/) });
    expect((await t.call('GET', `/v3/classifiers?${VERSION}`, { key: 'wrong-key-000' })).status).toBe(401);
    const otherUser = `Basic ${Buffer.from(`admin:${ALICE_KEY}`).toString('base64')}`;
    expect((await t.call('GET', `/v3/classifiers?${VERSION}`, { headers: { Authorization: otherUser } })).status).toBe(
      401,
    );
    const bearer = await t.call('GET', `/v3/classifiers?${VERSION}`, {
      headers: { Authorization: `Bearer ${ALICE_KEY}` },
    });
    expect(bearer.status).toBe(200);
  });

  it('exchanges a key for a token at /identity/token, as IAM clients expect', async () => {
    const res = await fetch(`${t.url}/identity/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=${ALICE_KEY}`,
    });
    const token = (await res.json()) as { access_token: string };
    expect(token).toMatchObject({ token_type: 'Bearer', expires_in: 3600 });
    const list = await t.call('GET', `/v3/classifiers?${VERSION}`, {
      headers: { Authorization: `Bearer ${token.access_token}` },
    });
    expect(list.status).toBe(200);
  });

  it('stops honouring a token once its key is revoked', async () => {
    const carol = await t.service.apiKeys.add('carol', 'carol-key-0123456789', 'cli');
    const res = await fetch(`${t.url}/identity/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=carol-key-0123456789',
    });
    const { access_token: token } = (await res.json()) as { access_token: string };
    const bearer = { headers: { Authorization: `Bearer ${token}` } };
    expect((await t.call('GET', `/v3/classifiers?${VERSION}`, bearer)).status).toBe(200);
    await t.service.apiKeys.revoke(carol.id);
    expect((await t.call('GET', `/v3/classifiers?${VERSION}`, bearer)).status).toBe(401);
  });

  it('400 without version or with a malformed one', async () => {
    const missing = await t.call('GET', '/v3/classifiers');
    expect(missing).toEqual({
      status: 400,
      body: { code: 400, error: "Missing 'version' query parameter. Add ?version=2018-03-19 to the URL." },
    });
    const bad = await t.call('GET', '/v3/classifiers?version=yesterday');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/'yesterday'/);
  });

  it('415 for a POST that is not multipart', async () => {
    const res = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: JSON.stringify({ name: 'x' }),
      headers: { 'Content-Type': 'application/json' },
    });
    expect(res.status).toBe(415);
    expect(res.body.error).toMatch(/multipart\/form-data/);
  });

  it('400 for a missing name', async () => {
    const res = await create({ a_positive_examples: good, negative_examples: negatives }, {});
    expect(res).toEqual({
      status: 400,
      body: { code: 400, error: expect.stringMatching(/^Missing required parameter 'name'/) },
    });
  });

  it('400 for fewer than two example sets', async () => {
    const res = await create({ a_positive_examples: good });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatch(/At least two example sets/);
    expect((await create({ negative_examples: negatives })).status).toBe(400);
  });

  it.each(['a-b', 'x/y', 'dollar$', "it's", 'b[1]'])(
    '400 for the class name %s, naming the character',
    async (className) => {
      const res = await create({ [`${className}_positive_examples`]: good, negative_examples: negatives });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatch(/contains the character/);
    },
  );

  it('accepts unicode class names as they are', async () => {
    const res = await create(
      { chien_français_positive_examples: good, negative_examples: negatives },
      { name: 'Chiens' },
    );
    expect(res.status).toBe(200);
    expect(res.body.classes).toEqual([{ class: 'chien_français' }]);
  });

  it('400 for a zip with too few images, naming the zip and the count', async () => {
    const small = await classZip('red-circles', 9, 3);
    const res = await create({ a_positive_examples: small, negative_examples: negatives });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatch(/a_positive_examples/);
    expect(res.body.error).toMatch(/\b9\b/);
  });

  it('400 for a plain image where a zip is required, and for a corrupt zip', async () => {
    const image = await solidColorJpeg({ r: 1, g: 2, b: 3 });
    const plain = await create({ a_positive_examples: image, negative_examples: negatives });
    expect(plain.status).toBe(400);
    expect(plain.body.error).toMatch(/a_positive_examples/);
    const corrupt = await create({
      a_positive_examples: good.subarray(0, good.length - 100),
      negative_examples: negatives,
    });
    expect(corrupt.status).toBe(400);
    expect(corrupt.body.error).toMatch(/a_positive_examples/);
  });

  it('skips __MACOSX, hidden files and non-images without counting them', async () => {
    const zip = new AdmZip(good);
    zip.addFile('__MACOSX/._0.jpg', Buffer.from('resource fork'));
    zip.addFile('.DS_Store', Buffer.from('x'));
    zip.addFile('notes.txt', Buffer.from('hello'));
    const res = await create({ a_positive_examples: zip.toBuffer(), negative_examples: negatives });
    expect(res.status).toBe(200);
  });

  it('400 for an unexpected file field and for the same class twice', async () => {
    const typo = await create({ a_positive_example: good, negative_examples: negatives });
    expect(typo.status).toBe(400);
    expect(typo.body.error).toMatch(/Unexpected file field 'a_positive_example'/);
    const form = trainingForm({ a_positive_examples: good, negative_examples: negatives }, { name: 'x' });
    form.append('a_positive_examples', new Blob([new Uint8Array(good)]), 'again.zip');
    const twice = await t.call('POST', `/v3/classifiers?${VERSION}`, { body: form });
    expect(twice.status).toBe(400);
    expect(twice.body.error).toMatch(/more than once/);
  });

  it('400 for a zip over the per-zip limit, 413 for a request over the per-call limit', async () => {
    const noise = new AdmZip();
    noise.addFile('big.bin', crypto.randomBytes(1.5 * 1024 * 1024));
    const tooBigZip = await create({ a_positive_examples: noise.toBuffer(), negative_examples: negatives });
    expect(tooBigZip.status).toBe(400);
    expect(tooBigZip.body.error).toMatch(/a_positive_examples.*larger than 1 MB/);
    const huge = Buffer.alloc(900 * 1024, 1);
    const res = await create({ a_positive_examples: huge, b_positive_examples: huge, c_positive_examples: huge });
    expect(res.status).toBe(413);
    expect(res.body.error).toMatch(/at most 2 MB/);
  });

  it('404 for unknown ids, and for their exported models', async () => {
    const res = await t.call('GET', `/v3/classifiers/unknown_1?${VERSION}`);
    expect(res).toEqual({ status: 404, body: { code: 404, error: expect.stringMatching(/unknown_1/) } });
    expect((await t.call('DELETE', `/v3/classifiers/unknown_1?${VERSION}`)).status).toBe(404);
    for (const model of ['core_ml_model', 'onnx_model']) {
      const exported = await t.call('GET', `/v3/classifiers/unknown_1/${model}?${VERSION}`);
      expect(exported).toEqual({
        status: 404,
        body: { code: 404, error: expect.stringMatching(/Cannot find classifier 'unknown_1'/) },
      });
    }
  });

  it('a failed update leaves the classifier and its data exactly as they were', async () => {
    const created = await create({ a_positive_examples: good, negative_examples: negatives });
    const id = created.body.classifier_id;
    const before = await t.call('GET', `/v3/classifiers/${id}?${VERSION}`);
    const emptyUpdate = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({}, { name: 'y' }),
    });
    expect(emptyUpdate.status).toBe(400);
    expect(emptyUpdate.body.error).toMatch(/No example files/);
    const bad = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({
        b_positive_examples: await classZip('blue-squares', 10, 4),
        c_positive_examples: await classZip('green-stripes', 3, 5),
      }),
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/c_positive_examples/);
    const after = await t.call('GET', `/v3/classifiers/${id}?${VERSION}`);
    expect(after.body).toEqual(before.body);
    expect((await t.service.ctx.classifiers.trainingSnapshot(id))!.examples).toHaveLength(20);
  });

  it('no temp upload file is left behind', async () => {
    await new Promise((r) => setTimeout(r, 100));
    expect(tmpEntries(t.dataDir)).toEqual([]);
  });
});
