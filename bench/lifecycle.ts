/**
 * bench:lifecycle — how long a user waits for training, measured against the
 * real service (API + training worker) running in another process on 127.0.0.1.
 *
 *  1. create with 2 classes × 100 photos + 100 negatives: upload time, then
 *     upload end → `ready` (target ≤ 5 s on 2 cores);
 *  2. a classifier of 2,000 examples (2 × 700 + 600 negatives), created and
 *     trained once so their embeddings are cached;
 *  3. update it with 100 new images (50 per class): upload end → `ready`
 *     (target ≤ 3 s).
 *
 * Every image is new to the service (distinct bytes), so only the retrain's 100
 * new images find no cached embedding. Polls every 50 ms.
 *
 * Then the worker scaling run, on a service of its own on PostgreSQL (a new database on
 * BENCH_POSTGRES_URL's server, by default the local one, dropped after) or, where none answers,
 * SQLite: 8 classifiers of 2 × 20 + 20 negatives (all new images) created at once and trained
 * with the service's one training worker, then again with a second worker process on the same
 * data directory, database and Redis namespace. Each round is preceded by a warm-up (one small
 * classifier per worker). Reported per round: wall time from the first create sent until all 8
 * are ready, each classifier's create answer → ready, the workers' own time per run (their
 * training-duration metric, read from /metrics), which worker ran how many, and the service's
 * CPU per training (API + workers); then the 2-worker / 1-worker ratios. The API embeds uploads,
 * so much of that CPU and of the wall time is the API's; the workers' part is the time after the
 * last upload was answered and their time per run. On 2 cores two workers share the CPU one
 * already uses: the ratios show overhead, not speed-up. BENCH_SCALING=off skips this run,
 * BENCH_SCALING=only runs it alone.
 * Last line: one JSON object.
 */
import os from 'node:os';
import { BenchImages, zipOf, type ExampleRole } from './lib/bench-images';
import { benchMain } from './lib/bench-main';
import { openBenchDatabase } from './lib/bench-database';
import {
  cpuSeconds,
  residentMb,
  startBenchService,
  startExtraWorker,
  summedCpuSeconds,
  type BenchService,
  type ExtraWorker,
} from './lib/bench-service';
import { WatsonClient } from './lib/watson-client';

const TARGETS = { create_s: 5, retrain_s: 3 };
const POLL_MS = 50;
const SMALL_READY_TIMEOUT_MS = 120_000;
const LARGE_READY_TIMEOUT_MS = 900_000;
/** The worker scaling run: classifiers trained at once, and each one's examples per class (negatives too). */
const PARALLEL_CLASSIFIERS = 8;
const PARALLEL_EXAMPLES_PER_ZIP = 20;
const WARMUP_EXAMPLES_PER_ZIP = 10;
const PARALLEL_POLL_MS = 100;
const PARALLEL_READY_TIMEOUT_MS = 900_000;
/** How long to wait for the workers' metrics (published after each run) to count every run. */
const METRICS_WAIT_MS = 15_000;

type ScalingMode = 'on' | 'off' | 'only';

function scalingMode(): ScalingMode {
  const raw = process.env.BENCH_SCALING ?? 'on';
  if (raw !== 'on' && raw !== 'off' && raw !== 'only')
    throw new Error(`BENCH_SCALING must be on, off or only, not '${raw}'`);
  return raw;
}

interface TimedTraining {
  upload_s: number;
  to_ready_s: number;
  upload_mb: number;
  /** CPU the service's processes (API + worker) used from upload end to ready: the wait's floor on idle cores is this / cores. */
  to_ready_cpu_s?: number;
}

const seconds = (fromMs: number, toMs: number) => Math.round(toMs - fromMs) / 1000;
const loadAverage = () => Math.round(os.loadavg()[0] * 100) / 100;

async function zipsFor(images: BenchImages, plan: Array<{ field: string; role: ExampleRole; count: number }>) {
  const zips: Record<string, Buffer> = {};
  for (const { field, role, count } of plan) zips[field] = zipOf(await images.take(count, role), field);
  return zips;
}

const megabytes = (zips: Record<string, Buffer>) =>
  Math.round(Object.values(zips).reduce((sum, zip) => sum + zip.length, 0) / 1e4) / 100;

/** Sends the call, then polls until `ready`: the upload time (call sent → answer) and answer → ready apart. */
async function timeUntilReady(
  service: BenchService,
  client: WatsonClient,
  zips: Record<string, Buffer>,
  send: () => Promise<{ classifier_id: string }>,
  timeoutMs: number,
): Promise<TimedTraining & { id: string }> {
  const serviceCpu = () => {
    const api = cpuSeconds(service.pid);
    const worker = cpuSeconds(service.workerPid);
    return api === undefined || worker === undefined ? undefined : api + worker;
  };
  const sent = performance.now();
  const { classifier_id: id } = await send();
  const answered = performance.now();
  const cpuAnswered = serviceCpu();
  await client.waitUntilReady(id, timeoutMs, POLL_MS);
  const ready = performance.now();
  const cpuReady = serviceCpu();
  return {
    id,
    upload_s: seconds(sent, answered),
    to_ready_s: seconds(answered, ready),
    upload_mb: megabytes(zips),
    to_ready_cpu_s:
      cpuAnswered === undefined || cpuReady === undefined
        ? undefined
        : Math.round((cpuReady - cpuAnswered) * 100) / 100,
  };
}

function printStep(label: string, timing: TimedTraining) {
  const cpu =
    timing.to_ready_cpu_s === undefined
      ? ''
      : ` (service CPU meanwhile ${timing.to_ready_cpu_s} s: at least ${(timing.to_ready_cpu_s / os.cpus().length).toFixed(2)} s on ${os.cpus().length} idle cores)`;
  console.log(
    `${label}: upload ${timing.upload_mb} MB in ${timing.upload_s.toFixed(2)} s; upload end → ready ${timing.to_ready_s.toFixed(2)} s${cpu}`,
  );
}

/** The three timed steps on the bench's own service (SQLite). */
async function runSteps(service: BenchService, images: BenchImages) {
  const client = new WatsonClient(service.url, service.apiKey);

  const smallZips = await zipsFor(images, [
    { field: 'a_positive_examples', role: 'class-a', count: 100 },
    { field: 'b_positive_examples', role: 'class-b', count: 100 },
    { field: 'negative_examples', role: 'negative', count: 100 },
  ]);
  const loadBefore = loadAverage();
  const small = await timeUntilReady(
    service,
    client,
    smallZips,
    () => client.createClassifier('lifecycle-small', smallZips),
    SMALL_READY_TIMEOUT_MS,
  );
  printStep(`create 2×100 + 100 negatives (target ≤${TARGETS.create_s} s to ready)`, small);

  const largeZips = await zipsFor(images, [
    { field: 'a_positive_examples', role: 'class-a', count: 700 },
    { field: 'b_positive_examples', role: 'class-b', count: 700 },
    { field: 'negative_examples', role: 'negative', count: 600 },
  ]);
  const large = await timeUntilReady(
    service,
    client,
    largeZips,
    () => client.createClassifier('lifecycle-2000', largeZips),
    LARGE_READY_TIMEOUT_MS,
  );
  printStep('create 2×700 + 600 negatives (embeds and caches 2,000 examples)', large);

  const updateZips = await zipsFor(images, [
    { field: 'a_positive_examples', role: 'class-a', count: 50 },
    { field: 'b_positive_examples', role: 'class-b', count: 50 },
  ]);
  const retrain = await timeUntilReady(
    service,
    client,
    updateZips,
    () => client.updateClassifier(large.id, updateZips),
    SMALL_READY_TIMEOUT_MS,
  );
  printStep(`retrain +100 images on 2,000 cached (target ≤${TARGETS.retrain_s} s to ready)`, retrain);
  const loadAfter = loadAverage();
  console.log(`load average (1 min) before ${loadBefore}, after ${loadAfter}; cores ${os.cpus().length}`);

  return {
    create_2x100_100neg_upload_s: small.upload_s,
    create_2x100_100neg_to_ready_s: small.to_ready_s,
    create_2000_upload_s: large.upload_s,
    create_2000_to_ready_s: large.to_ready_s,
    retrain_100_on_2000_cached_upload_s: retrain.upload_s,
    retrain_100_on_2000_cached_s: retrain.to_ready_s,
    service_cpu_s: {
      create_2x100_100neg: small.to_ready_cpu_s,
      create_2000: large.to_ready_cpu_s,
      retrain_100_on_2000_cached: retrain.to_ready_cpu_s,
    },
    targets: TARGETS,
    met: { create: small.to_ready_s <= TARGETS.create_s, retrain: retrain.to_ready_s <= TARGETS.retrain_s },
    api_rss_mb: residentMb(service.pid),
    worker_rss_mb: residentMb(service.workerPid),
    loadavg_1m: { before: loadBefore, after: loadAfter },
    poll_ms: POLL_MS,
  };
}

/** Training runs the workers counted (outcome `trained`) and their summed seconds, per worker (process_instance), from GET /metrics. */
async function trainingRunsByWorker(service: BenchService): Promise<Map<string, { count: number; sum: number }>> {
  const res = await fetch(`${service.url}/metrics`);
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
  const runs = new Map<string, { count: number; sum: number }>();
  for (const line of (await res.text()).split('\n')) {
    const match = /^watson_vr_training_run_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$/.exec(line);
    if (!match || !/outcome="trained"/.test(match[2])) continue;
    const worker = /process_instance="([^"]*)"/.exec(match[2])?.[1] ?? '?';
    const entry = runs.get(worker) ?? { count: 0, sum: 0 };
    entry[match[1] as 'sum' | 'count'] += Number(match[3]);
    runs.set(worker, entry);
  }
  return runs;
}

const totalRuns = (runs: Map<string, { count: number; sum: number }>) =>
  [...runs.values()].reduce((total, r) => ({ count: total.count + r.count, sum: total.sum + r.sum }), {
    count: 0,
    sum: 0,
  });

/** Waits until the workers' published metrics count `runs` more trained runs than `before`; then the runs per worker since `before`. */
async function runsSince(service: BenchService, before: Map<string, { count: number; sum: number }>, runs: number) {
  const deadline = Date.now() + METRICS_WAIT_MS;
  for (;;) {
    const now = await trainingRunsByWorker(service);
    const since = new Map(
      [...now].map(([worker, r]) => [
        worker,
        { count: r.count - (before.get(worker)?.count ?? 0), sum: r.sum - (before.get(worker)?.sum ?? 0) },
      ]),
    );
    if (totalRuns(since).count >= runs || Date.now() > deadline) return since;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : NaN;
};
const round2 = (value: number) => Math.round(value * 100) / 100;

/** Creates `count` classifiers of `perZip` images per class (and negatives) at once and waits until all are ready. */
async function trainAtOnce(client: WatsonClient, images: BenchImages, label: string, count: number, perZip: number) {
  const zips: Array<Record<string, Buffer>> = [];
  for (let i = 0; i < count; i++) {
    zips.push(
      await zipsFor(images, [
        { field: 'a_positive_examples', role: 'class-a', count: perZip },
        { field: 'b_positive_examples', role: 'class-b', count: perZip },
        { field: 'negative_examples', role: 'negative', count: perZip },
      ]),
    );
  }
  const start = performance.now();
  const trainings = await Promise.all(
    zips.map(async (zip, i) => {
      const { classifier_id: id } = await client.createClassifier(`${label}-${i}`, zip);
      const answered = performance.now();
      await client.waitUntilReady(id, PARALLEL_READY_TIMEOUT_MS, PARALLEL_POLL_MS);
      return { answered, ready: performance.now() };
    }),
  );
  return { start, trainings };
}

/** One round of the worker scaling run: warm-up, then PARALLEL_CLASSIFIERS trained at once by the workers `workerPids`. */
async function parallelRound(service: BenchService, client: WatsonClient, images: BenchImages, workerPids: number[]) {
  const label = `parallel-${workerPids.length}w`;
  await trainAtOnce(client, images, `${label}-warmup`, workerPids.length, WARMUP_EXAMPLES_PER_ZIP);
  const servicePids = [service.pid, ...service.apiPids, ...workerPids];
  const runsBefore = await trainingRunsByWorker(service);
  const cpuBefore = summedCpuSeconds(servicePids);
  const workerCpuBefore = workerPids.map(cpuSeconds);
  const { start, trainings } = await trainAtOnce(
    client,
    images,
    label,
    PARALLEL_CLASSIFIERS,
    PARALLEL_EXAMPLES_PER_ZIP,
  );
  const end = Math.max(...trainings.map((t) => t.ready));
  const uploadsEnd = Math.max(...trainings.map((t) => t.answered));
  const cpuAfter = summedCpuSeconds(servicePids);
  const workerCpu = workerPids.map((pid, i) => {
    const after = cpuSeconds(pid);
    const before = workerCpuBefore[i];
    return before === undefined || after === undefined ? undefined : round2(after - before);
  });
  const runs = await runsSince(service, runsBefore, PARALLEL_CLASSIFIERS);
  const all = totalRuns(runs);
  const toReady = trainings.map((t) => seconds(t.answered, t.ready));
  const round = {
    workers: workerPids.length,
    wall_s: seconds(start, end),
    /** First create sent → last create answered (the API embeds uploads), then → all ready: the workers' tail. */
    uploads_s: seconds(start, uploadsEnd),
    after_uploads_s: seconds(uploadsEnd, end),
    to_ready_s: { median: median(toReady), max: Math.max(...toReady) },
    /** A worker's own time per run (job start → published), from its training-duration metric. */
    run_s: all.count ? round2(all.sum / all.count) : undefined,
    runs_per_worker: [...runs.values()]
      .map((r) => r.count)
      .filter((n) => n > 0)
      .sort((a, b) => b - a),
    cpu_s_per_training:
      cpuBefore === undefined || cpuAfter === undefined
        ? undefined
        : round2((cpuAfter - cpuBefore) / PARALLEL_CLASSIFIERS),
    worker_cpu_s: workerCpu,
  };
  console.log(
    `${PARALLEL_CLASSIFIERS} classifiers (2×${PARALLEL_EXAMPLES_PER_ZIP} + ${PARALLEL_EXAMPLES_PER_ZIP} negatives) at once, ${round.workers} worker(s): ` +
      `all ready after ${round.wall_s.toFixed(2)} s (uploads answered after ${round.uploads_s} s, then ${round.after_uploads_s} s); create answer → ready median ${round.to_ready_s.median} s, max ${round.to_ready_s.max} s; ` +
      `${round.run_s} s per run in the worker (runs per worker ${round.runs_per_worker.join(' + ')}); ` +
      `service CPU ${round.cpu_s_per_training} s per training (workers ${round.worker_cpu_s.join(' + ')} s in all)`,
  );
  return round;
}

const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || b === 0 ? undefined : Math.round((a / b) * 1000) / 1000;

/** The worker scaling run on a service of its own: 1 worker, then 2 (see the file's comment). */
async function runWorkerScaling(images: BenchImages) {
  const database = await openBenchDatabase();
  console.log(`worker scaling run on ${database.kind}${database.reason ? ` (${database.reason})` : ''}`);
  let service: BenchService | undefined;
  let extra: ExtraWorker | undefined;
  try {
    service = await startBenchService(database.env);
    if (service.workerPid === undefined) throw new Error('the scaling service started no training worker');
    const client = new WatsonClient(service.url, service.apiKey);
    const one = await parallelRound(service, client, images, [service.workerPid]);
    extra = await startExtraWorker(service);
    console.log(`second training worker started (pid ${extra.pid})`);
    const two = await parallelRound(service, client, images, [service.workerPid, extra.pid]);
    const result = {
      database: database.kind,
      classifiers: PARALLEL_CLASSIFIERS,
      examples_per_classifier: 3 * PARALLEL_EXAMPLES_PER_ZIP,
      one_worker: one,
      two_workers: two,
      wall_ratio_2w_vs_1w: ratio(two.wall_s, one.wall_s),
      after_uploads_ratio_2w_vs_1w: ratio(two.after_uploads_s, one.after_uploads_s),
      run_s_ratio_2w_vs_1w: ratio(two.run_s, one.run_s),
      cpu_per_training_ratio_2w_vs_1w: ratio(two.cpu_s_per_training, one.cpu_s_per_training),
    };
    console.log(
      `2 workers vs 1: wall time ratio ${result.wall_ratio_2w_vs_1w} (after the uploads ${result.after_uploads_ratio_2w_vs_1w}), time per run ratio ${result.run_s_ratio_2w_vs_1w}, ` +
        `CPU per training ratio ${result.cpu_per_training_ratio_2w_vs_1w}; on ${os.cpus().length} cores the workers share ` +
        `the same CPU: the ratios show overhead, not speed-up`,
    );
    return result;
  } finally {
    await extra?.stop();
    await service?.stop();
    await database.drop();
  }
}

async function runLifecycle(service: BenchService, images: BenchImages) {
  const scaling = scalingMode();
  return {
    bench: 'lifecycle',
    cores: os.cpus().length,
    images: images.usesPhotos ? 'food-photos' : 'generated',
    ...(scaling === 'only' ? {} : await runSteps(service, images)),
    ...(scaling === 'off' ? {} : { worker_scaling: await runWorkerScaling(images) }),
  };
}

benchMain(runLifecycle);
