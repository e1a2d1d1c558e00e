import { ApiMetrics, WorkerMetrics, mergeSnapshots } from '../../src/lib/metrics';
import { routeTemplateOf } from '../../src/entry-points/http/openapi';

describe('request route labels', () => {
  const routeOf = routeTemplateOf(
    {
      paths: {
        '/v3/classifiers': {},
        '/v3/classifiers/{classifier_id}': {},
        '/v3/classifiers/{classifier_id}/versions': {},
      },
    },
    ['/docs'],
  );

  it('names a request by its route template, never by the id in it', () => {
    expect(routeOf('/v3/classifiers')).toBe('/v3/classifiers');
    expect(routeOf('/v3/classifiers/dogs_1941945966')).toBe('/v3/classifiers/{classifier_id}');
    expect(routeOf('/v3/classifiers/dogs_1941945966/versions')).toBe('/v3/classifiers/{classifier_id}/versions');
    expect(routeOf('/docs')).toBe('/docs');
  });

  it('names anything else "other", so raw paths never become label values', () => {
    expect(routeOf('/v3/classifiers/a/b/c')).toBe('other');
    expect(routeOf('/etc/passwd')).toBe('other');
    expect(routeOf('/v3/classifiersX')).toBe('other');
  });
});

describe('mergeSnapshots', () => {
  it("keeps every process's series apart, process start times included", async () => {
    const api = new ApiMetrics();
    const worker = new WorkerMetrics();
    const otherWorker = new WorkerMetrics();
    worker.trainingRuns.inc({ outcome: 'trained' }, 2);
    otherWorker.trainingRuns.inc({ outcome: 'trained' }, 5);
    // Two workers in one test process share host/pid; a real one has its own.
    const relabel = (snapshot: Awaited<ReturnType<WorkerMetrics['snapshot']>>) =>
      snapshot.map((m) => ({
        ...m,
        values: m.values.map((v) => ({ ...v, labels: { ...v.labels, process_instance: 'elsewhere/1' } })),
      }));
    const text = await mergeSnapshots([
      await api.snapshot(),
      await worker.snapshot(),
      relabel(await otherWorker.snapshot()),
    ]).metrics();
    const lines = text.split('\n');
    expect(lines.filter((l) => l.startsWith('watson_vr_training_runs_total{')).sort()).toEqual(
      [
        `watson_vr_training_runs_total{outcome="trained",process_role="worker",process_instance="${worker.instance}"} 2`,
        'watson_vr_training_runs_total{outcome="trained",process_role="worker",process_instance="elsewhere/1"} 5',
      ].sort(),
    );
    expect(lines.filter((l) => l.startsWith('process_start_time_seconds{'))).toHaveLength(3);
    expect(lines.filter((l) => l.startsWith('# TYPE watson_vr_training_runs_total '))).toEqual([
      '# TYPE watson_vr_training_runs_total counter',
    ]);
  });
});
