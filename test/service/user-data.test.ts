import { bootService, VERSION, waitForStatus, type TestService } from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';

describe('DELETE /v3/user_data', () => {
  let t: TestService;
  beforeAll(async () => {
    t = await bootService();
  });
  afterAll(async () => {
    await t?.close();
  });

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
