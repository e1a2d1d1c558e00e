import { bootService, VERSION, waitFor, waitForStatus, type TestService } from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';

/** kill -9 of the training worker mid-run: the run is picked up again and nothing accepted is lost. */
describe('a training worker killed mid-job', () => {
  let t: TestService;

  beforeAll(async () => {
    t = await bootService({ TRAINING_LOCK_MS: '3000' });
  });
  afterAll(async () => {
    await t?.close();
  });

  async function killWorkerOnceTrainingRuns(id: string) {
    await waitFor(
      'the training run to report progress',
      async () => {
        const res = await t.call('GET', `/v3/classifiers/${id}?${VERSION}`);
        return res.body.training_progress > 0 ? true : undefined;
      },
      60_000,
      50,
    );
    const pid = t.service.worker!.pid!;
    process.kill(pid, 'SIGKILL');
    await waitFor('the supervisor to start a new worker', async () =>
      t.service.worker!.pid !== pid ? true : undefined,
    );
  }

  it('during a first training and during a retrain, with the last good version serving throughout', async () => {
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: await classZip('red-circles', 60, 21),
          squares_positive_examples: await classZip('blue-squares', 60, 22),
          negative_examples: await classZip('noise', 60, 23),
        },
        { name: 'crash test' },
      ),
    });
    const id = created.body.classifier_id;
    await killWorkerOnceTrainingRuns(id);
    expect((await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).body.status).toBe('training');
    const ready = await waitForStatus(t, id, ['ready', 'failed'], 120_000);
    expect(ready.status).toBe('ready');
    const v1 = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(v1.versions).toHaveLength(1);
    expect(v1.versions[0].examples).toBe(180);

    const updated = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({ stripes_positive_examples: await classZip('green-stripes', 60, 24) }),
    });
    expect(updated.body.status).toBe('retraining');
    await killWorkerOnceTrainingRuns(id);
    const during = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(during.current_version_id).toBe(v1.current_version_id);
    const retrained = await waitForStatus(t, id, ['ready', 'failed'], 120_000);
    expect(retrained.status).toBe('ready');
    const v2 = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(v2.versions).toHaveLength(2);
    expect(v2.versions[1].examples).toBe(240);
    expect(retrained.classes).toEqual([{ class: 'circles' }, { class: 'squares' }, { class: 'stripes' }]);
    // Two trainings, each with a killed worker, on a shared 2-core machine: the budget of the waits inside, not jest's default.
  }, 300_000);
});
