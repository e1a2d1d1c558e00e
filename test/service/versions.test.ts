import fs from 'node:fs';
import path from 'node:path';
import { classImages } from '../../fixtures/images';
import { bootService, BOB_KEY, VERSION, waitFor, waitForStatus, type TestService } from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';
import { heldImageServer } from '../support/held-image-server';

function imageForm(bytes: Buffer, fields: Record<string, string>): FormData {
  const form = new FormData();
  form.append('images_file', new Blob([new Uint8Array(bytes)]), 'image.jpg');
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  return form;
}

const classNames = (classes: Array<{ class: string }>) => classes.map((c) => c.class);

/** Versions you can use: pinning, activation (rollback) with its history, retention. */
describe('classifier versions', () => {
  let t: TestService;
  let id: string;
  let zips: Record<string, Buffer>;
  let circle: Buffer;
  let v1: number;
  let v2: number;

  const versions = async () => (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
  const classify = (fields: Record<string, string>, key?: string) =>
    t.call('POST', `/v3/classify?${VERSION}`, { body: imageForm(circle, { threshold: '0.0', ...fields }), key });
  const activate = (versionId: number | string, query = '') =>
    t.call('POST', `/v3/classifiers/${id}/versions/${versionId}/activate?${VERSION}${query}`);
  const update = async (zip: Record<string, Buffer>) => {
    const res = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, { body: trainingForm(zip) });
    expect(res.status).toBe(200);
    return res.body;
  };

  beforeAll(async () => {
    // A long URL deadline: the in-flight request waits while two retrains run.
    t = await bootService({ KEEP_VERSIONS: '2', ALLOW_PRIVATE_URLS: 'true', URL_FETCH_TIMEOUT_MS: '120000' });
    zips = {
      circles: await classZip('red-circles', 10, 51),
      squares: await classZip('blue-squares', 10, 52),
      stripes: await classZip('green-stripes', 10, 53),
      triangles: await classZip('yellow-triangles', 10, 54),
      noise: await classZip('noise', 10, 55),
    };
    [circle] = await classImages('red-circles', 1, 56);
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: zips.circles,
          squares_positive_examples: zips.squares,
          negative_examples: zips.noise,
        },
        { name: 'versioned' },
      ),
    });
    id = created.body.classifier_id;
    await waitForStatus(t, id, ['ready']);
    v1 = (await versions()).current_version_id;
    await update({ stripes_positive_examples: zips.stripes });
    await waitForStatus(t, id, ['ready']);
    v2 = (await versions()).current_version_id;
  });
  afterAll(async () => {
    await t?.close();
  });

  it('classifies with a pinned version (id@version) beside the current one, and says which version answered', async () => {
    const res = await classify({ classifier_ids: `${id}@${v1},${id},default` });
    expect(res.status).toBe(200);
    const [pinned, current, builtIn] = res.body.images[0].classifiers;
    expect(pinned).toMatchObject({ classifier_id: id, name: 'versioned', version_id: v1 });
    expect(classNames(pinned.classes).sort()).toEqual(['circles', 'squares']);
    expect(current).toMatchObject({ classifier_id: id, version_id: v2 });
    expect(classNames(current.classes).sort()).toEqual(['circles', 'squares', 'stripes']);
    expect(builtIn.version_id).toBeUndefined();
    // custom_classes counts every applied custom classifier's classes.
    expect(res.body.custom_classes).toBe(5);

    const viaGet = await t.call('GET', `/v3/classify?${VERSION}&url=x&classifier_ids=${id}@${v1}`);
    expect(viaGet.status).toBe(200); // the url fails per image; the pin itself was accepted
    expect(viaGet.body.images[0].error.description).toMatch(/not a valid absolute URL/);
  });

  it("refuses a pin of an unknown version, another owner's classifier, a malformed pin or a pinned built-in with a 400", async () => {
    const unknown = await classify({ classifier_ids: `${id}@999999` });
    expect(unknown.status).toBe(400);
    expect(unknown.body).toEqual({
      code: 400,
      error: `Classifier '${id}' has no version 999999. GET /v3/classifiers/${id}/versions lists its versions.`,
    });
    const otherOwner = await classify({ classifier_ids: `${id}@${v1}` }, BOB_KEY);
    expect(otherOwner.status).toBe(400);
    expect(otherOwner.body.error).toMatch(
      new RegExp(`^Cannot find classifier '${id}', so its version ${v1} cannot be used`),
    );
    for (const bad of [`${id}@`, `@${v1}`, `${id}@x`, `${id}@1@2`, `${id}@0`]) {
      const res = await classify({ classifier_ids: bad });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatch(/is not valid\. .*<classifier_id>@<version_id>/);
    }
    expect((await classify({ classifier_ids: 'default@1' })).body).toEqual({
      code: 400,
      error: "The built-in classifier 'default' has no versions to pin. Send 'default' without '@'.",
    });
  });

  it('activates an earlier version: it serves at once, the rollback is in the history, the next retrain starts from its examples', async () => {
    const res = await activate(v1);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      classifier_id: id,
      status: 'ready',
      classes: [{ class: 'circles' }, { class: 'squares' }],
    });
    expect(res.body.evaluation.version_id).toBe(v1);
    const served = await classify({ classifier_ids: id });
    expect(served.body.images[0].classifiers[0].version_id).toBe(v1);

    const listed = await versions();
    expect(listed.current_version_id).toBe(v1);
    expect(listed.versions.find((v: { version_id: number }) => v.version_id === v1).activated).toHaveLength(1);
    expect(listed.history.map((e: { event: string; version_id: number }) => [e.event, e.version_id])).toEqual([
      ['trained', v1],
      ['trained', v2],
      ['activated', v1],
    ]);
    // Idempotent: activating the current version again records nothing.
    expect((await activate(v1)).status).toBe(200);
    expect((await versions()).history).toHaveLength(3);

    // The next retrain: v1's examples (no stripes) plus the new class.
    await update({ triangles_positive_examples: zips.triangles });
    const ready = await waitForStatus(t, id, ['ready', 'failed']);
    expect(ready.status).toBe('ready');
    expect(classNames(ready.classes)).toEqual(['circles', 'squares', 'triangles']);
    const after = await versions();
    const v3 = after.versions.at(-1);
    expect(after.current_version_id).toBe(v3.version_id);
    expect(classNames(v3.classes)).toEqual(['circles', 'squares', 'triangles']);
  });

  it("answers activation mistakes in the error format: unknown or other classifier's version, bad id, another owner", async () => {
    const unknown = await activate(999999);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toBe(
      `Classifier '${id}' has no version 999999. GET /v3/classifiers/${id}/versions lists its versions.`,
    );
    expect((await activate('latest')).body).toMatchObject({
      code: 400,
      error: expect.stringMatching(/^The version id 'latest' .* positive integers/),
    });
    expect((await activate(v1, '&discard_pending=maybe')).body).toEqual({
      code: 400,
      error: "The parameter 'discard_pending' must be true or false.",
    });
    const bob = await t.call('POST', `/v3/classifiers/${id}/versions/${v1}/activate?${VERSION}`, { key: BOB_KEY });
    expect(bob.status).toBe(404);
    expect(bob.body.error).toMatch(new RegExp(`^Cannot find classifier '${id}'`));

    const other = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm({ a_positive_examples: zips.circles, negative_examples: zips.noise }, { name: 'other' }),
    });
    await waitForStatus(t, other.body.classifier_id, ['ready']);
    const otherVersion = (await t.call('GET', `/v3/classifiers/${other.body.classifier_id}/versions?${VERSION}`)).body
      .current_version_id;
    expect((await activate(otherVersion)).status).toBe(404);
    // A version of a deleted classifier: the classifier is gone, and so is every way to its versions.
    await t.call('DELETE', `/v3/classifiers/${other.body.classifier_id}?${VERSION}`);
    const gone = await t.call(
      'POST',
      `/v3/classifiers/${other.body.classifier_id}/versions/${otherVersion}/activate?${VERSION}`,
    );
    expect(gone.status).toBe(404);
    expect((await classify({ classifier_ids: `${other.body.classifier_id}@${otherVersion}` })).status).toBe(400);
  });

  it("answers a forged version id (another owner's, a deleted classifier's, one past the last) exactly like an unknown one", async () => {
    const form = (name: string) =>
      trainingForm({ a_positive_examples: zips.circles, negative_examples: zips.noise }, { name });
    const bobs = (await t.call('POST', `/v3/classifiers?${VERSION}`, { key: BOB_KEY, body: form('bobs') })).body
      .classifier_id;
    const gone = (await t.call('POST', `/v3/classifiers?${VERSION}`, { body: form('gone') })).body.classifier_id;
    const versionOf = async (cid: string, key?: string) => {
      await waitFor(`${cid} to be ready`, async () => {
        const res = await t.call('GET', `/v3/classifiers/${cid}?${VERSION}`, { key });
        return res.body.status === 'ready' ? true : undefined;
      });
      return (await t.call('GET', `/v3/classifiers/${cid}/versions?${VERSION}`, { key })).body
        .current_version_id as number;
    };
    const bobsVersion = await versionOf(bobs, BOB_KEY);
    const goneVersion = await versionOf(gone);
    await t.call('DELETE', `/v3/classifiers/${gone}?${VERSION}`);
    const forged = {
      otherOwner: bobsVersion,
      deleted: goneVersion,
      nextNumber: Math.max(bobsVersion, goneVersion) + 1,
      unknown: 987654,
    };
    const requests: Array<[string, (v: number) => Promise<{ status: number; body: unknown }>]> = [
      ['activate', (v) => activate(v)],
      ['classify pin', (v) => classify({ classifier_ids: `${id}@${v}` })],
    ];
    for (const [endpoint, request] of requests) {
      const answers = new Map<string, string>();
      for (const [kind, v] of Object.entries(forged)) {
        const res = await request(v);
        answers.set(
          kind,
          JSON.stringify({ status: res.status, body: res.body }).split(`version ${v}.`).join('version <v>.'),
        );
      }
      expect({
        endpoint,
        answers: new Set(answers.values()).size === 1 ? 'identical' : Object.fromEntries(answers),
      }).toEqual({
        endpoint,
        answers: 'identical',
      });
    }
    // Bob's classifier still has its version, untouched.
    expect(
      (await t.call('GET', `/v3/classifiers/${bobs}/versions?${VERSION}`, { key: BOB_KEY })).body.current_version_id,
    ).toBe(bobsVersion);
  });

  it('keeps a version pinned by a request in flight, prunes it afterwards, and never the current one', async () => {
    // A URL that answers only when told to holds a classify request pinned to the oldest kept version.
    const held = await heldImageServer(circle);
    try {
      const kept = (await versions()).versions.filter((v: { pruned?: string }) => !v.pruned);
      const current = (await versions()).current_version_id;
      const oldest = kept.find((v: { version_id: number }) => v.version_id !== current).version_id;
      const inFlight = t.call(
        'GET',
        `/v3/classify?${VERSION}&threshold=0&url=${encodeURIComponent(held.url)}&classifier_ids=${id}@${oldest}`,
      );
      await held.arrived;

      // Two more versions: with KEEP_VERSIONS=2 the pinned one would be pruned, but it is leased.
      await update({ more_positive_examples: zips.triangles });
      await waitForStatus(t, id, ['ready']);
      await update({ other_positive_examples: zips.squares });
      await waitForStatus(t, id, ['ready']);
      // The worker applies retention just after the publish that made the classifier ready: wait until
      // it has (the two newest and the pinned one left unpruned).
      const during = await waitFor('retention after the last retrain', async () => {
        const listed = await versions();
        return listed.versions.filter((v: { pruned?: string }) => !v.pruned).length === 3 ? listed : undefined;
      });
      expect(during.versions.find((v: { version_id: number }) => v.version_id === oldest).pruned).toBeUndefined();
      expect(during.versions.filter((v: { pruned?: string }) => v.pruned).length).toBeGreaterThan(0);

      held.release();
      const answer = await inFlight;
      expect(answer.status).toBe(200);
      expect(answer.body.images[0].classifiers[0].version_id).toBe(oldest);

      // Activation applies retention too: now the pinned version goes, its head file with it.
      const now = during.current_version_id;
      const previous = during.versions.filter(
        (v: { pruned?: string; version_id: number }) => !v.pruned && v.version_id !== now && v.version_id !== oldest,
      )[0].version_id;
      expect((await activate(previous)).status).toBe(200);
      const after = await versions();
      const pruned = after.versions.find((v: { version_id: number }) => v.version_id === oldest);
      expect(pruned.pruned).toBeDefined();
      expect(after.current_version_id).toBe(previous);
      expect(
        after.versions
          .filter((v: { pruned?: string }) => !v.pruned)
          .map((v: { version_id: number }) => v.version_id)
          .sort(),
      ).toEqual([previous, now].sort());
      const headFiles = fs.readdirSync(path.join(t.dataDir, 'heads', id));
      expect(headFiles).toHaveLength(2);

      const pinnedPruned = await classify({ classifier_ids: `${id}@${oldest}` });
      expect(pinnedPruned.status).toBe(400);
      expect(pinnedPruned.body.error).toMatch(/was pruned by the retention setting \(KEEP_VERSIONS\)/);
      expect((await activate(oldest)).status).toBe(410);
    } finally {
      await held.close();
    }
  });
});

/** Its own service: with the default retention, no version of this race is pruned whichever way it goes. */
describe('a rollback while a retrain runs', () => {
  let t: TestService;
  afterAll(async () => {
    await t?.close();
  });

  it('loses neither the rollback nor the update', async () => {
    t = await bootService();
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: await classZip('red-circles', 10, 61),
          squares_positive_examples: await classZip('blue-squares', 10, 62),
        },
        { name: 'race' },
      ),
    });
    const id = created.body.classifier_id;
    const versions = async () => (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    await waitForStatus(t, id, ['ready']);
    const v1 = (await versions()).current_version_id;
    await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({ stripes_positive_examples: await classZip('green-stripes', 10, 63) }),
    });
    await waitForStatus(t, id, ['ready']);
    const v2 = (await versions()).current_version_id;

    const update = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({ triangles_positive_examples: await classZip('yellow-triangles', 10, 64) }),
    });
    expect(update.body.status).toBe('retraining');
    // Activate as soon as the run is active (or, if it was quicker, just after it ended).
    await waitFor(
      'the retrain to start',
      async () => {
        const active = await t.service.ctx.queue.queue.getJobs(['active']);
        if (active.some((job) => job.data.classifierId === id)) return true;
        return (await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).body.status === 'ready' ? true : undefined;
      },
      60_000,
      10,
    );
    const rolledBack = await t.call('POST', `/v3/classifiers/${id}/versions/${v1}/activate?${VERSION}`);
    expect(rolledBack.status).toBe(200);
    const settled = await waitForStatus(t, id, ['ready', 'failed']);
    expect(settled.status).toBe('ready');
    const after = await versions();
    const activation = after.history.filter((e: { event: string }) => e.event === 'activated').at(-1);
    expect(activation.version_id).toBe(v1);
    const withTriangles = after.versions.filter((v: { classes: Array<{ class: string }> }) =>
      classNames(v.classes).includes('triangles'),
    );
    expect(withTriangles).toHaveLength(1);
    if (rolledBack.body.status === 'retraining') {
      // The run was still going: it did not publish over the rollback, and the update trained on v1's examples.
      expect(classNames(rolledBack.body.classes)).toEqual(['circles', 'squares', 'triangles']);
      expect(classNames(withTriangles[0].classes)).toEqual(['circles', 'squares', 'triangles']);
      expect(after.current_version_id).toBe(withTriangles[0].version_id);
      expect(withTriangles[0].created >= activation.created).toBe(true);
      expect(classNames(settled.classes)).toEqual(['circles', 'squares', 'triangles']);
    } else {
      // The run ended first: its version is kept (and can be activated), and v1 serves.
      expect(classNames(withTriangles[0].classes)).toEqual(['circles', 'squares', 'stripes', 'triangles']);
      expect(after.current_version_id).toBe(v1);
      expect(classNames(settled.classes)).toEqual(['circles', 'squares']);
    }
    console.log(`rollback raced a ${rolledBack.body.status === 'retraining' ? 'running' : 'finished'} retrain`);
    expect(after.versions.map((v: { version_id: number }) => v.version_id)).toContain(v2);
  });
});
