import fs from 'node:fs';
import path from 'node:path';
import { bootService, BOB_KEY, VERSION, waitForStatus, type TestService } from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';

/** The Watson tutorial's journey: create → poll → ready → update → retraining (old version serves) → ready → delete. */
describe('classifier lifecycle', () => {
  let t: TestService;
  let zips: Record<string, Buffer>;

  beforeAll(async () => {
    t = await bootService();
    zips = {
      circles: await classZip('red-circles', 12, 1),
      squares: await classZip('blue-squares', 12, 2),
      noise: await classZip('noise', 12, 3),
      stripes: await classZip('green-stripes', 12, 4),
    };
  });
  afterAll(async () => {
    await t?.close();
  });

  it('trains, retrains while the old version serves, and deletes everything', async () => {
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: zips.circles,
          squares_positive_examples: zips.squares,
          negative_examples: zips.noise,
        },
        { name: 'shapes demo' },
      ),
    });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({
      name: 'shapes demo',
      owner: 'alice',
      status: 'training',
      core_ml_enabled: false,
      classes: [{ class: 'circles' }, { class: 'squares' }],
    });
    const id: string = created.body.classifier_id;
    expect(id).toMatch(/^shapesdemo_\d+$/);
    expect(created.body.created).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(created.body.retrained).toBeUndefined();

    const ready = await waitForStatus(t, id, ['ready', 'failed']);
    expect(ready.status).toBe('ready');
    expect(ready.evaluation.classes.map((c: { class: string }) => c.class)).toEqual(['circles', 'squares']);
    for (const c of ready.evaluation.classes) expect(c.roc_auc).toBeGreaterThan(0.9);
    // How far 0.5 can be trusted for this classifier, out of fold: bank photos said yes to, own classes said yes to.
    const openSet = ready.evaluation.open_set;
    expect(openSet.bank_photos).toBeGreaterThan(0);
    expect(openSet.false_positive_rate).toBeLessThanOrEqual(0.05);
    expect(openSet.recall).toBeGreaterThanOrEqual(0.9);
    const v1 = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(v1.versions).toHaveLength(1);
    const firstVersion = v1.current_version_id;

    // Hold the worker so the retrain cannot finish: the old version must keep serving meanwhile.
    await t.service.worker!.stop();
    const updated = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({ stripes_positive_examples: zips.stripes }),
    });
    expect(updated.status).toBe(200);
    expect(updated.body.status).toBe('retraining');
    expect(updated.body.classes).toEqual([{ class: 'circles' }, { class: 'squares' }, { class: 'stripes' }]);
    expect(Date.parse(updated.body.updated)).toBeGreaterThan(Date.parse(created.body.updated));
    const during = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(during.current_version_id).toBe(firstVersion);
    expect((await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).body.status).toBe('retraining');

    await t.service.worker!.start();
    const retrained = await waitForStatus(t, id, ['ready', 'failed']);
    expect(retrained.status).toBe('ready');
    expect(retrained.retrained).toBeDefined();
    const after = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(after.versions).toHaveLength(2);
    expect(after.current_version_id).not.toBe(firstVersion);
    expect(after.versions[1].classes).toEqual([{ class: 'circles' }, { class: 'squares' }, { class: 'stripes' }]);
    expect(after.versions[0].classes).toEqual([{ class: 'circles' }, { class: 'squares' }]);

    const brief = await t.call('GET', `/v3/classifiers?${VERSION}`);
    expect(brief.body).toEqual({ classifiers: [{ classifier_id: id, name: 'shapes demo', status: 'ready' }] });
    const verbose = await t.call('GET', `/v3/classifiers?${VERSION}&verbose=true`);
    expect(verbose.body.classifiers[0]).toMatchObject({
      classifier_id: id,
      owner: 'alice',
      classes: retrained.classes,
    });

    const deleted = await t.call('DELETE', `/v3/classifiers/${id}?${VERSION}`);
    expect(deleted).toEqual({ status: 200, body: {} });
    expect((await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).status).toBe(404);
    expect(fs.existsSync(path.join(t.dataDir, 'heads', id))).toBe(false);
    const leftImages = fs
      .readdirSync(path.join(t.dataDir, 'images'), { recursive: true })
      .filter((f) => String(f).length > 10);
    expect(leftImages).toEqual([]);
  });

  it('keeps owners apart: another key sees a 404 exactly like an unknown id', async () => {
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm({ a_positive_examples: zips.circles, negative_examples: zips.noise }, { name: 'private' }),
    });
    const id = created.body.classifier_id;
    const unknown = await t.call('GET', `/v3/classifiers/nope_123?${VERSION}`, { key: BOB_KEY });
    expect(unknown.status).toBe(404);
    for (const [method, body] of [
      ['GET', undefined],
      ['DELETE', undefined],
      ['POST', trainingForm({ b_positive_examples: zips.squares })],
    ] as const) {
      const res = await t.call(method, `/v3/classifiers/${id}?${VERSION}`, { key: BOB_KEY, body });
      expect(res.status).toBe(404);
      expect(res.body.error).toBe(unknown.body.error.replace('nope_123', id));
    }
    expect((await t.call('GET', `/v3/classifiers?${VERSION}`, { key: BOB_KEY })).body).toEqual({ classifiers: [] });
    expect((await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).status).toBe(200);
    // Deleting right after creating works, even while training.
    expect((await t.call('DELETE', `/v3/classifiers/${id}?${VERSION}`)).status).toBe(200);
  });
});
