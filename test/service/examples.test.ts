import AdmZip from 'adm-zip';
import sharp from 'sharp';
import { classImages } from '../../fixtures/images';
import { NEAR_DUPLICATE_DISTANCE } from '../../src/ml/near-duplicates';
import { darknetPhoto, darknetPhotosInstalled } from '../support/darknet-photos';
import { trainingForm } from '../support/example-zips';
import { cachedEmbeddings, headsHolding, imageFileExists } from '../support/forgetting';
import {
  ALICE_KEY,
  basicAuth,
  bootService,
  BOB_KEY,
  VERSION,
  waitFor,
  waitForStatus,
  type TestService,
} from '../support/service-harness';

const zipOf = (entries: Array<[string, Buffer]>) => {
  const zip = new AdmZip();
  for (const [name, bytes] of entries) zip.addFile(name, bytes);
  return zip.toBuffer();
};
const realPhoto = darknetPhotosInstalled(['dog'], 'the near-duplicate test is skipped')
  ? darknetPhoto('dog').bytes
  : undefined;
const json = (body: unknown) => ({ body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });

/**
 * Issue 23: a classifier's examples, the ones its serving version gets wrong, their thumbnails, and
 * removing or moving them as the next version, over HTTP against the real service and worker.
 */
describe('reviewing and fixing a classifier’s examples (issue 23)', () => {
  let t: TestService;
  let id: string;
  let circles: Buffer[];
  let squares: Buffer[];
  let noise: Buffer[];
  /** A blue square planted in the circles zip: the mislabelled photo. */
  let planted: Buffer;
  /** A real photo in the circles zip, and a re-encoded copy of it among the negatives: near-duplicates under two labels. */
  let copy: Buffer;
  let copyOfCopy: Buffer;

  const examples = async (query = '') => {
    const res = await t.call('GET', `/v3/classifiers/${id}/examples?${VERSION}${query}`);
    expect(res.status).toBe(200);
    return res.body;
  };
  const allExamples = async (query = '') => {
    const out: any[] = [];
    let token: string | undefined;
    do {
      const page = await examples(`${query}&limit=7${token ? `&page_token=${encodeURIComponent(token)}` : ''}`);
      out.push(...page.examples);
      token = page.next_page_token;
    } while (token);
    return out;
  };
  const byFile = async (fileName: string) => (await allExamples()).find((e) => e.file_name === fileName);
  const changes = (body: unknown, key = ALICE_KEY) =>
    t.call('POST', `/v3/classifiers/${id}/examples/changes?${VERSION}`, { ...json(body), key });
  const versions = async () => (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
  const ready = async () => {
    const done = await waitForStatus(t, id, ['ready', 'failed']);
    expect({ status: done.status, explanation: done.explanation }).toEqual({ status: 'ready', explanation: undefined });
    return done;
  };
  const imageHashOf = async (exampleId: string) => {
    const db = await t.openDatabase();
    try {
      const row = await db.kysely
        .selectFrom('examples')
        .select('image_hash')
        .where('id', '=', Number(exampleId.slice(3)))
        .executeTakeFirst();
      return row?.image_hash;
    } finally {
      await db.close();
    }
  };

  beforeAll(async () => {
    t = await bootService();
    circles = await classImages('red-circles', 10, 231);
    squares = await classImages('blue-squares', 11, 232);
    noise = await classImages('noise', 10, 233);
    planted = squares[10];
    // A real photo where Debian's darknet package provides one: generated pictures all look alike to the network.
    copy = realPhoto ?? (await classImages('yellow-triangles', 1, 234))[0];
    copyOfCopy = await sharp(copy).jpeg({ quality: 85 }).toBuffer();
    const res = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: zipOf([
            ...circles.map((b, i): [string, Buffer] => [`circles/c${i}.jpg`, b]),
            ['circles/planted.jpg', planted],
            ['circles/copy.jpg', copy],
          ]),
          squares_positive_examples: zipOf(squares.slice(0, 10).map((b, i) => [`squares/s${i}.jpg`, b])),
          negative_examples: zipOf([
            ...noise.slice(0, 9).map((b, i): [string, Buffer] => [`noise/n${i}.jpg`, b]),
            ['noise/copy-of-copy.jpg', copyOfCopy],
          ]),
        },
        { name: 'shapes' },
      ),
    });
    expect(res.status).toBe(200);
    id = res.body.classifier_id;
    await ready();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('lists every example newest first, by class or negatives, in pages, with the serving version’s out-of-fold evaluation', async () => {
    const first = await examples('&limit=5');
    expect(first.examples).toHaveLength(5);
    expect(first.version_id).toBe((await versions()).current_version_id);
    const all = await allExamples();
    expect(all).toHaveLength(32);
    const ids = all.map((e) => Number(e.example_id.slice(3)));
    expect(new Set(ids).size).toBe(32);
    expect([...ids].sort((a, b) => b - a)).toEqual(ids); // newest (highest id) first, no page overlaps
    expect(all.filter((e) => e.class === 'circles')).toHaveLength(12);
    expect(all.filter((e) => e.negative)).toHaveLength(10);
    for (const e of all) {
      expect(e.evaluation).toEqual({
        predicted_class: e.evaluation.predicted_class,
        score: expect.any(Number),
        correct: e.evaluation.predicted_class === (e.class ?? null),
      });
      expect(e.created).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    }
    expect((await allExamples('&class=squares')).map((e) => e.file_name).sort()).toEqual(
      squares
        .slice(0, 10)
        .map((_, i) => `squares/s${i}.jpg`)
        .sort(),
    );
    const negatives = await allExamples('&negative=true');
    expect(negatives).toHaveLength(10);
    expect(negatives.every((e) => e.negative && e.class === undefined)).toBe(true);
    // The photos it learned right are right out of fold too.
    const circle = all.find((e) => e.file_name === 'circles/c0.jpg');
    expect(circle.evaluation).toMatchObject({ predicted_class: 'circles', correct: true });
  });

  it('finds the planted square as mislabelled, most confident first, paged', async () => {
    const res = await t.call('GET', `/v3/classifiers/${id}/examples/mistakes?${VERSION}`);
    expect(res.status).toBe(200);
    const { mistakes } = res.body;
    expect(res.body.version_id).toBe((await versions()).current_version_id);
    const confidences = mistakes.map((m: any) => m.confidence);
    expect([...confidences].sort((a, b) => b - a)).toEqual(confidences);
    const mislabeled = mistakes.find(
      (m: any) => m.kind === 'mislabeled' && m.example.file_name === 'circles/planted.jpg',
    );
    expect(mislabeled).toMatchObject({ predicted_class: 'squares', example: { class: 'circles' } });
    expect(mislabeled.confidence).toBeGreaterThan(0.5);
    expect(mislabeled.example.evaluation).toEqual({
      predicted_class: 'squares',
      score: mislabeled.confidence,
      correct: false,
    });

    const paged: any[] = [];
    let token: string | undefined;
    do {
      const page = await t.call(
        'GET',
        `/v3/classifiers/${id}/examples/mistakes?${VERSION}&limit=1${token ? `&page_token=${token}` : ''}`,
      );
      paged.push(...page.body.mistakes);
      token = page.body.next_page_token;
    } while (token);
    expect(paged).toEqual(mistakes);
  });

  (realPhoto ? it : it.skip)(
    'finds the photo and its re-encoded copy, labelled differently, as a cross-class near-duplicate (needs the darknet package)',
    async () => {
      const { mistakes } = (await t.call('GET', `/v3/classifiers/${id}/examples/mistakes?${VERSION}&limit=200`)).body;
      const duplicate = mistakes.find(
        (m: any) =>
          m.kind === 'cross_class_duplicate' &&
          m.examples
            .map((e: any) => e.file_name)
            .sort()
            .join() === 'circles/copy.jpg,noise/copy-of-copy.jpg',
      );
      expect(duplicate).toBeDefined();
      expect(duplicate.distance).toBeLessThanOrEqual(NEAR_DUPLICATE_DISTANCE);
      expect(duplicate.confidence).toBeCloseTo(1 - duplicate.distance, 6);
      expect(duplicate.examples.map((e: any) => e.negative).sort()).toEqual([false, true]);
    },
  );

  it('serves a thumbnail of at most 160 px, private, with an ETag that answers 304', async () => {
    const planted = await byFile('circles/planted.jpg');
    const path = `/v3/classifiers/${id}/examples/${planted.example_id}/thumbnail?${VERSION}`;
    const res = await fetch(`${t.url}${path}`, { headers: { Authorization: basicAuth(ALICE_KEY) } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/jpeg');
    expect(res.headers.get('cache-control')).toMatch(/^private, max-age=\d+$/);
    const etag = res.headers.get('etag')!;
    expect(etag).toMatch(/^".+"$/);
    const meta = await sharp(Buffer.from(await res.arrayBuffer())).metadata();
    expect(meta.format).toBe('jpeg');
    expect(Math.max(meta.width!, meta.height!)).toBeLessThanOrEqual(160);
    const again = await fetch(`${t.url}${path}`, {
      headers: { Authorization: basicAuth(ALICE_KEY), 'If-None-Match': etag },
    });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    // Another owner, an unknown id and a malformed one: the same 404 as any unknown example.
    const bob = await t.call('GET', path, { key: BOB_KEY });
    expect(bob).toEqual({
      status: 404,
      body: {
        code: 404,
        error: `Cannot find classifier '${id}'. Check the classifier_id (GET /v3/classifiers lists yours).`,
      },
    });
    for (const unknown of ['ex_999999', 'nope', 'ex_0'])
      expect(await t.call('GET', `/v3/classifiers/${id}/examples/${unknown}/thumbnail?${VERSION}`)).toEqual({
        status: 404,
        body: {
          code: 404,
          error: `Classifier '${id}' has no example '${unknown}'. GET /v3/classifiers/${id}/examples lists its examples.`,
        },
      });
  });

  it('refuses bad paging and filters with a 400 that says what to send', async () => {
    for (const query of ['&limit=0', '&limit=201', '&limit=abc', '&limit=-1']) {
      const res = await t.call('GET', `/v3/classifiers/${id}/examples?${VERSION}${query}`);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatch(/'limit' must be a whole number from 1 to 200/);
    }
    for (const path of ['examples', 'examples/mistakes']) {
      const res = await t.call('GET', `/v3/classifiers/${id}/${path}?${VERSION}&page_token=garbage`);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatch(/page_token/);
    }
    // A token of the other list is not one of this list's.
    const first = await examples('&limit=1');
    const crossed = await t.call(
      'GET',
      `/v3/classifiers/${id}/examples/mistakes?${VERSION}&page_token=${first.next_page_token}`,
    );
    expect(crossed.status).toBe(400);
    const unknownClass = await t.call('GET', `/v3/classifiers/${id}/examples?${VERSION}&class=Circles`);
    expect(unknownClass.status).toBe(400);
    expect(unknownClass.body.error).toMatch(/no class 'Circles'.*circles, squares/);
    const both = await t.call('GET', `/v3/classifiers/${id}/examples?${VERSION}&class=circles&negative=true`);
    expect(both.status).toBe(400);
    const bob = await t.call('GET', `/v3/classifiers/${id}/examples?${VERSION}`, { key: BOB_KEY });
    expect(bob.status).toBe(404);
    expect((await t.call('GET', `/v3/classifiers/${id}/examples/mistakes?${VERSION}`, { key: BOB_KEY })).status).toBe(
      404,
    );
  });

  it('refuses bad changes with clear errors and changes nothing', async () => {
    const before = await allExamples();
    const status = (await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).body;
    const [c0, c1, c2] = before.filter((e) => e.class === 'circles').map((e) => e.example_id);
    const square = before.find((e) => e.class === 'squares').example_id;
    const cases: Array<[unknown, number, RegExp]> = [
      [{}, 400, /Nothing to change/],
      [{ remove: [] }, 400, /Nothing to change/],
      [{ remove: 'ex_1' }, 400, /'remove' must be a list/],
      [{ remove: [c0], extra: 1 }, 400, /./],
      [{ remove: Array.from({ length: 501 }, (_, i) => `ex_${i + 1}`) }, 400, /at most 500/],
      [{ remove: [c0], move: [{ example_id: c0, class: 'squares' }] }, 400, /named more than once/],
      [{ remove: [c0, c0] }, 400, /named more than once/],
      [{ remove: ['ex_99999999'] }, 404, /has no example 'ex_99999999'/],
      [{ remove: ['not-an-id'] }, 404, /has no example 'not-an-id'/],
      [{ move: [{ example_id: c0, class: 'triangles' }] }, 400, /no such class/],
      [{ move: [{ example_id: c0, class: 'circles' }] }, 400, /already in class 'circles'/],
      [{ move: [{ example_id: c0 }] }, 400, /either "class".*or "negative": true/],
      [{ move: [{ example_id: c0, class: 'squares', negative: true }] }, 400, /not both/],
      // Valid changes next to an invalid one: none of them happens.
      [{ remove: [c1], move: [{ example_id: c2, class: 'nowhere' }] }, 400, /no such class/],
      // Circles has 12: taking 3 leaves 9 of the 10 needed.
      [
        { remove: [c0, c1], move: [{ example_id: c2, negative: true }] },
        400,
        /leave class 'circles' with 9 examples; at least 10 are needed \(MIN_IMAGES_PER_ZIP\)\. It has 12 now, so take away at most 2/,
      ],
      // Squares has 10: moving one out leaves 9.
      [{ move: [{ example_id: square, class: 'circles' }] }, 400, /leave class 'squares' with 9/],
    ];
    for (const [body, code, message] of cases) {
      const res = await changes(body);
      expect({ body, status: res.status }).toEqual({ body, status: code });
      expect(res.body.error).toMatch(message);
    }
    const malformed = await t.call('POST', `/v3/classifiers/${id}/examples/changes?${VERSION}`, {
      body: '{"remove": [',
      headers: { 'Content-Type': 'application/json' },
    });
    expect(malformed.status).toBe(400);
    // Another owner's example ids look like unknown ones; another owner cannot change alice's.
    const bobs = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      key: BOB_KEY,
      body: trainingForm(
        {
          a_positive_examples: zipOf(circles.map((b, i) => [`a/${i}.jpg`, b])),
          negative_examples: zipOf(noise.map((b, i) => [`n/${i}.jpg`, b])),
        },
        { name: 'bobs' },
      ),
    });
    const bobId = bobs.body.classifier_id;
    const bobExample = (await t.call('GET', `/v3/classifiers/${bobId}/examples?${VERSION}&limit=1`, { key: BOB_KEY }))
      .body.examples[0].example_id;
    const foreign = await changes({ remove: [bobExample] });
    expect(foreign).toEqual({
      status: 404,
      body: {
        code: 404,
        error: `Classifier '${id}' has no example '${bobExample}'. GET /v3/classifiers/${id}/examples lists its examples.`,
      },
    });
    expect((await changes({ remove: [c0] }, BOB_KEY)).status).toBe(404);
    expect((await t.call('DELETE', `/v3/classifiers/${id}/examples/${c0}?${VERSION}`, { key: BOB_KEY })).status).toBe(
      404,
    );
    expect(await allExamples()).toEqual(before);
    expect((await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).body).toEqual(status);
    expect((await versions()).versions).toHaveLength(1);
  });

  it('moves the mislabelled photo as the next version: the old one serves meanwhile, the image and embedding stay, the history says what changed', async () => {
    const planted = await byFile('circles/planted.jpg');
    const hash = await imageHashOf(planted.example_id);
    const v1 = (await versions()).current_version_id;
    const res = await t.call('POST', `/v3/classifiers/${id}/examples/${planted.example_id}/move?${VERSION}`, {
      ...json({ class: 'squares' }),
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ classifier_id: id, status: 'retraining', changes: { removed: 0, moved: 1 } });
    expect(res.body.evaluation.version_id).toBe(v1); // the previous version answers until the retrain is done
    // Judged by its new label at once, it is no longer a mistake.
    const mistakes = (await t.call('GET', `/v3/classifiers/${id}/examples/mistakes?${VERSION}`)).body.mistakes;
    expect(mistakes.some((m: any) => m.kind === 'mislabeled' && m.example.example_id === planted.example_id)).toBe(
      false,
    );
    const done = await ready();
    const list = await versions();
    expect(list.versions).toHaveLength(2);
    expect(list.versions[1]).toMatchObject({
      version_id: done.evaluation.version_id,
      changes: { removed: 0, moved: 1 },
    });
    expect(list.versions[0].changes).toBeUndefined();
    const moved = await byFile('circles/planted.jpg');
    expect(moved).toMatchObject({ example_id: planted.example_id, class: 'squares', negative: false });
    expect(moved.evaluation).toMatchObject({ predicted_class: 'squares', correct: true });
    expect(imageFileExists(t.dataDir, hash!)).toBe(true);
    const db = await t.openDatabase();
    try {
      expect((await cachedEmbeddings(db, [hash!])).size).toBe(1);
    } finally {
      await db.close();
    }
    // The squares' recall did not fall, and circles lost its stray square.
    const evaluation = (cls: string, v: any) => v.evaluation.classes.find((c: any) => c.class === cls);
    expect(evaluation('squares', list.versions[1]).support).toBe(11);
    expect(evaluation('circles', list.versions[1]).support).toBe(11);
  });

  it('removes examples for good: forgotten by the next version, images and embeddings gone unless another example (of any owner) uses them, the versions trained on them removed once the retrain is done', async () => {
    const copyExample = await byFile('circles/copy.jpg');
    const sharedNoise = await byFile('noise/n8.jpg');
    const own = (await imageHashOf(copyExample.example_id))!;
    const shared = (await imageHashOf(sharedNoise.example_id))!;
    const db = await t.openDatabase();
    const embedding = (await cachedEmbeddings(db, [own])).get(own)!;
    await db.close();
    // As a circle, the copy's embedding is in the heads' k-NN gate.
    expect(headsHolding(t.dataDir, embedding).length).toBeGreaterThan(0);
    const before = await versions();
    const [v1, v2] = before.versions.map((v: any) => v.version_id);

    const res = await changes({ remove: [copyExample.example_id, sharedNoise.example_id] });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'retraining', changes: { removed: 2, moved: 0 } });
    // Gone from the lists and thumbnails at once; the picture only it used goes with its embedding.
    expect(await byFile('circles/copy.jpg')).toBeUndefined();
    expect(
      (await t.call('GET', `/v3/classifiers/${id}/examples/${copyExample.example_id}/thumbnail?${VERSION}`)).status,
    ).toBe(404);
    expect(imageFileExists(t.dataDir, own)).toBe(false);
    expect(imageFileExists(t.dataDir, shared)).toBe(true); // bob's classifier still uses that picture
    const db2 = await t.openDatabase();
    expect([...(await cachedEmbeddings(db2, [own, shared])).keys()]).toEqual([shared]);
    await db2.close();
    // Again: it is unknown now.
    expect((await changes({ remove: [copyExample.example_id] })).status).toBe(404);
    // The old versions serve until the retrain is done.
    expect((await t.call('GET', `/v3/classifiers/${id}/onnx_model?${VERSION}&version_id=${v1}`)).status).toBe(200);

    const done = await ready();
    const after = await versions();
    expect(after.versions.map((v: any) => v.version_id)).toEqual([done.evaluation.version_id]);
    expect(after.versions[0].changes).toEqual({ removed: 2, moved: 0 });
    expect(after.history.map((h: any) => h.version_id)).toEqual([v1, v2, done.evaluation.version_id]);
    // Retention deletes the rows, then (leases read again) the files, just after the publish that made it ready.
    await waitFor('the removed versions’ head files to go', async () =>
      headsHolding(t.dataDir, embedding).length === 0 ? true : undefined,
    );
    const exported = await t.call('GET', `/v3/classifiers/${id}/onnx_model?${VERSION}&version_id=${v2}`);
    expect(exported.status).toBe(410);
    expect(exported.body.error).toMatch(/removed an example it was trained on/);
  });

  it('applies racing changes one after the other: a second removal of the same example is a 404, and two that together go below the minimum are refused', async () => {
    const circlesNow = (await allExamples('&class=circles')).map((e) => e.example_id);
    expect(circlesNow).toHaveLength(10);
    const squaresNow = (await allExamples('&class=squares')).map((e) => e.example_id);
    expect(squaresNow).toHaveLength(11);
    // Squares has 11: each removal alone is fine, both together would leave 9.
    const [a, b] = await Promise.all([changes({ remove: [squaresNow[0]] }), changes({ remove: [squaresNow[1]] })]);
    expect([a.status, b.status].sort()).toEqual([200, 400]);
    expect([a, b].find((r) => r.status === 400)!.body.error).toMatch(/leave class 'squares' with 9/);
    // The same negative removed twice at once: one removal, and the other finds it gone.
    const negative = (await allExamples('&negative=true'))[0].example_id;
    const twice = await Promise.all([changes({ remove: [negative] }), changes({ remove: [negative] })]);
    expect(twice.map((r) => r.status).sort()).toEqual([200, 404]);
    await ready();
    expect(await allExamples('&class=squares')).toHaveLength(10);
  });

  it('collapses changes made while a retrain runs into the next version, and answers 404 once the classifier is deleted', async () => {
    const negatives = (await allExamples('&negative=true')).map((e) => e.example_id);
    const first = await changes({ move: [{ example_id: negatives[0], class: 'circles' }] });
    expect(first.status).toBe(200);
    const second = await changes({ move: [{ example_id: negatives[1], class: 'circles' }] });
    expect(second.status).toBe(200);
    await ready();
    const list = await versions();
    const moved = list.versions.reduce((sum: number, v: any) => sum + (v.changes?.moved ?? 0), 0);
    expect(moved).toBe(2);
    expect(await allExamples('&class=circles')).toHaveLength(12);
    expect(await allExamples('&negative=true')).toHaveLength(6);

    const deleted = await Promise.all([
      t.call('DELETE', `/v3/classifiers/${id}?${VERSION}`),
      changes({ remove: [negatives[2]] }),
    ]);
    expect(deleted[0].status).toBe(200);
    expect([200, 404]).toContain(deleted[1].status);
    await waitFor('the classifier to be gone', async () =>
      (await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).status === 404 ? true : undefined,
    );
    const after = await changes({ remove: [negatives[3]] });
    expect(after).toEqual({
      status: 404,
      body: {
        code: 404,
        error: `Cannot find classifier '${id}'. Check the classifier_id (GET /v3/classifiers lists yours).`,
      },
    });
    expect((await t.call('GET', `/v3/classifiers/${id}/examples?${VERSION}`)).status).toBe(404);
  });
});
