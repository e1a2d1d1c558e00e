import os from 'node:os';
import { startBenchService, type BenchService } from '../../bench/lib/bench-service';

/**
 * The training worker runs 10 steps nicer than the API, also when the whole service was started
 * under `nice`: the worker used to take max(its niceness, 10), so a service started at 10 or more
 * trained at the API's own priority and retraining slowed classify (found by the soak test).
 */
describe('training worker priority', () => {
  let service: BenchService | undefined;

  afterEach(async () => {
    await service?.stop();
    service = undefined;
  });

  it.each([0, 5])('is 10 steps below the API started %i steps nicer than this process', async (niceness) => {
    service = await startBenchService({ ORT_THREADS: '1' }, { niceness });
    const api = os.getPriority(service.pid);
    expect(api).toBe(Math.min(19, os.getPriority() + niceness));
    expect(os.getPriority(service.workerPid!)).toBe(Math.min(19, api + 10));
  });
});
