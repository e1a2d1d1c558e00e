import fs from 'node:fs';
import os from 'node:os';
import { startBenchService, type BenchService } from '../../bench/lib/bench-service';

/** The session id of a process (/proc/<pid>/stat, field 6). */
function sessionOf(pid: number | 'self'): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
}

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

  // Linux gives each session (autogroup) an equal share of a busy machine, whatever its niceness: in
  // the load generator's session, the service's latency under load counted the generator's work too
  // (the 300-s soak's p99 ratio, 4.18 at a load average of 34 on 2 cores).
  it('runs in a session of its own, its worker in the same one', async () => {
    service = await startBenchService({ ORT_THREADS: '1' });
    expect(sessionOf(service.pid)).not.toBe(sessionOf('self'));
    expect(sessionOf(service.workerPid!)).toBe(sessionOf(service.pid));
  });
});
