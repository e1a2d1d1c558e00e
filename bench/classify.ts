/**
 * bench:classify — POST /v3/classify latency and throughput of the real service
 * (API + training worker in another process on 127.0.0.1), driven by autocannon
 * from this process with two prebuilt requests of one 640-px JPEG: `classifier_ids=<custom>,default`
 * (the detector's head runs) and `classifier_ids=<custom>` (custom only: both networks run only up to
 * their embedding taps).
 *
 * Windows of BENCH_DURATION_S seconds (default 30) at 1 and 8 connections, each taken for both
 * requests in turn (so drift of a shared machine hits both alike), first idle, then while a retrain
 * loop keeps the same classifier retraining (fresh zip of new images, poll until ready, again). After
 * each window: the API process's resident memory. Targets (2 cores): p50 ≤ 25 ms and p99 ≤ 80 ms
 * at 1 connection, ≥ 60 requests/s at 8, no errors, also while retraining; a custom-only request's API
 * CPU ≤ 0.70 × a `default` + custom one's.
 * Then the API CPU of one request by stage (stage-profile.ts: decode, MobileNetV2, CenterNet,
 * scoring, measured in this process; the rest of the idle c=1 API CPU is HTTP, multipart and JSON),
 * for both kinds of request.
 *
 * Then the scaling run: the same request against two more services, up side by side, one of
 * 1 API process × 2 ORT threads and one of 2 API processes (node:cluster, API_PROCESSES=2) × 1
 * thread, idle windows at 1 and 8 connections taken in turn (so drift of a shared machine hits
 * both alike). API CPU per request sums every API process and the cluster's primary. Reported:
 * the 2×1 / 1×2 ratios of req/s and of CPU per request; the CPU ratio should stay ≤ 1.10 (a second
 * process may add overhead, not work per request). On a machine of 2 cores the two set-ups have the
 * same CPU, so the req/s ratio shows overhead, not speed-up. BENCH_SCALING=off skips this run,
 * BENCH_SCALING=only runs it alone.
 * Last line: one JSON object.
 */
import os from 'node:os';
import { BenchImages, zipOf } from './lib/bench-images';
import { benchMain } from './lib/bench-main';
import { cpuSeconds, residentMb, startBenchService, summedCpuSeconds, type BenchService } from './lib/bench-service';
import { runLoad, type LoadFigures } from './lib/load-generator';
import { RetrainLoop } from './lib/retrain-loop';
import { profileStages, type StageCpu } from './lib/stage-profile';
import { multipartForm, prebuildForm, WatsonClient, type PrebuiltForm } from './lib/watson-client';

const TARGETS = { c1_p50_ms: 25, c1_p99_ms: 80, c8_rps: 60, errors: 0 };
/** A custom-only request's API CPU at most this share of a `default` + custom one's (issue 22). */
const CUSTOM_ONLY_MAX_CPU_RATIO = 0.7;
const QUERY_WIDTH = 640;
const SETUP_IMAGES_PER_ZIP = 30;
const RETRAIN_IMAGES_PER_ZIP = 20;
/** Rounds prepared per second of retraining windows: more than a retrain can finish, so the loop never runs dry. */
const RETRAIN_ROUNDS_PER_S = 1;
const WARMUP_REQUESTS = 20;
/** The scaling services' warm-up: 8 connections, so every API process of a cluster gets some (node:cluster hands out connections in turn). */
const SCALING_WARMUP_S = 3;
const PROFILE_REPEATS = 30;
const PROFILE_EXAMPLES_PER_CLASS = 15;
/** The scaling run's set-ups: API processes × ORT threads each, the same threads in all. */
const SCALING_SETUPS = [
  { name: '1x2', apiProcesses: 1, ortThreads: 2 },
  { name: '2x1', apiProcesses: 2, ortThreads: 1 },
] as const;
/** API CPU per request may grow by this factor at most from 1 API process to 2 (issue 12). */
const MAX_CPU_PER_REQUEST_GROWTH = 1.1;

interface WindowFigures extends LoadFigures {
  api_rss_mb?: number;
  worker_rss_mb?: number;
  loadavg_1m: [number, number];
  /** CPU the API processes (and a cluster's primary) spent per answered request: their cost whatever else runs on the machine. */
  api_cpu_ms_per_request?: number;
  /** CPU of the training worker and of this process (autocannon) during the window. */
  worker_cpu_s?: number;
  load_generator_cpu_s: number;
  retrain_coverage?: number;
}

type ScalingMode = 'on' | 'off' | 'only';

const round2 = (value: number) => Math.round(value * 100) / 100;
const loadAverage = () => round2(os.loadavg()[0]);
const sumCpuUsage = (usage: NodeJS.CpuUsage) => (usage.user + usage.system) / 1e6;

function cpuDelta(
  before: number | undefined,
  after: number | undefined,
  per: (cpu: number) => number,
): number | undefined {
  return before === undefined || after === undefined ? undefined : round2(per(after - before));
}

function durationS(): number {
  const raw = process.env.BENCH_DURATION_S ?? '30';
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 1 || value > 600)
    throw new Error(`BENCH_DURATION_S must be 1–600 seconds, not '${raw}'`);
  return Math.round(value);
}

function scalingMode(): ScalingMode {
  const raw = process.env.BENCH_SCALING ?? 'on';
  if (raw !== 'on' && raw !== 'off' && raw !== 'only')
    throw new Error(`BENCH_SCALING must be on, off or only, not '${raw}'`);
  return raw;
}

/** The processes that serve API calls: the API processes and, in a cluster, the primary that hands them connections. */
const apiSidePids = (service: BenchService) => [service.pid, ...service.apiPids];

/** Resident memory of the API side in MB, summed over its processes. */
function apiRssMb(service: BenchService): number | undefined {
  const each = [...new Set(apiSidePids(service))].map(residentMb);
  return each.some((mb) => mb === undefined) ? undefined : round2(each.reduce((sum: number, mb) => sum + mb!, 0));
}

async function trainSetupClassifier(client: WatsonClient, images: BenchImages): Promise<string> {
  const zips = {
    a_positive_examples: zipOf(await images.take(SETUP_IMAGES_PER_ZIP, 'class-a'), 'a'),
    b_positive_examples: zipOf(await images.take(SETUP_IMAGES_PER_ZIP, 'class-b'), 'b'),
    negative_examples: zipOf(await images.take(SETUP_IMAGES_PER_ZIP, 'negative'), 'negative'),
  };
  const view = await client.createClassifier('bench-classify', zips);
  await client.waitUntilReady(view.classifier_id, 300_000, 100);
  return view.classifier_id;
}

async function checkAnswer(client: WatsonClient, form: PrebuiltForm, classifierIds: string[]): Promise<void> {
  const answer = await client.classify<{
    images: Array<{ classifiers?: Array<{ classifier_id: string; classes: unknown[] }> }>;
  }>(form);
  const classifiers = answer.images[0]?.classifiers ?? [];
  const ids = classifiers.map((c) => c.classifier_id);
  if (ids.join() !== classifierIds.join()) {
    throw new Error(
      `classify did not apply exactly ${classifierIds.join(' and ')}: ${JSON.stringify(answer).slice(0, 400)}`,
    );
  }
  console.log(`sample answer: ${JSON.stringify(classifiers)}`);
}

function printWindow(label: string, w: WindowFigures) {
  const coverage =
    w.retrain_coverage === undefined ? '' : `, retraining ${Math.round(w.retrain_coverage * 100)}% of the window`;
  console.log(
    `${label.padEnd(16)} c=${w.connections}: ${w.requests} requests in ${w.duration_s.toFixed(1)} s = ${w.rps} req/s; ` +
      `p50 ${w.p50_ms} ms, p90 ${w.p90_ms} ms, p99 ${w.p99_ms} ms, max ${w.max_ms} ms; non-2xx ${w.non2xx}, errors ${w.errors}; ` +
      `API CPU ${w.api_cpu_ms_per_request} ms/request, worker CPU ${w.worker_cpu_s} s, autocannon CPU ${w.load_generator_cpu_s} s; ` +
      `API RSS ${w.api_rss_mb} MB, worker RSS ${w.worker_rss_mb} MB; load ${w.loadavg_1m.join(' → ')}${coverage}`,
  );
}

/**
 * A service with a trained custom classifier and the classify requests to replay against it:
 * `form` asks for `<custom>,default`, `customOnlyForm` for `<custom>` alone.
 */
interface ClassifyTarget {
  service: BenchService;
  client: WatsonClient;
  classifierId: string;
  form: PrebuiltForm;
  customOnlyForm: PrebuiltForm;
}

/** Trains the setup classifier on `service` and prebuilds the requests; `query` is the JPEG every request sends. */
async function prepareTarget(service: BenchService, images: BenchImages, query: Buffer): Promise<ClassifyTarget> {
  const client = new WatsonClient(service.url, service.apiKey);
  const classifierId = await trainSetupClassifier(client, images);
  const formFor = (classifierIds: string) =>
    prebuildForm(
      multipartForm({ images_file: { bytes: query, filename: 'query.jpg' } }, { classifier_ids: classifierIds }),
    );
  const form = await formFor(`${classifierId},default`);
  const customOnlyForm = await formFor(classifierId);
  await checkAnswer(client, form, [classifierId, 'default']);
  await checkAnswer(client, customOnlyForm, [classifierId]);
  return { service, client, classifierId, form, customOnlyForm };
}

/** One window of `seconds` at `connections` against `target` (its `form` unless another is given), with the API side's CPU and memory. */
async function measureWindow(
  target: ClassifyTarget,
  label: string,
  connections: number,
  seconds: number,
  retrains?: RetrainLoop,
  form: PrebuiltForm = target.form,
): Promise<WindowFigures> {
  const { service, client } = target;
  const loadStart = loadAverage();
  const apiCpu = summedCpuSeconds(apiSidePids(service));
  const workerCpu = cpuSeconds(service.workerPid);
  const ownCpu = process.cpuUsage();
  const from = performance.now();
  const figures = await runLoad({
    url: `${service.url}${client.classifyPath()}`,
    connections,
    durationS: seconds,
    headers: { Authorization: client.authorization, 'Content-Type': form.contentType },
    body: form.body,
  });
  const result: WindowFigures = {
    ...figures,
    api_rss_mb: apiRssMb(service),
    worker_rss_mb: residentMb(service.workerPid),
    loadavg_1m: [loadStart, loadAverage()],
    api_cpu_ms_per_request: cpuDelta(
      apiCpu,
      summedCpuSeconds(apiSidePids(service)),
      (cpu) => (cpu * 1000) / figures.requests,
    ),
    worker_cpu_s: cpuDelta(workerCpu, cpuSeconds(service.workerPid), (cpu) => cpu),
    load_generator_cpu_s: round2(sumCpuUsage(process.cpuUsage(ownCpu))),
    retrain_coverage: retrains?.coverage(from, performance.now()),
  };
  printWindow(label, result);
  return result;
}

const brief = (w: WindowFigures) => ({
  p50_ms: w.p50_ms,
  p99_ms: w.p99_ms,
  rps: w.rps,
  non2xx: w.non2xx,
  errors: w.errors,
  api_cpu_ms_per_request: w.api_cpu_ms_per_request,
  ...(w.retrain_coverage === undefined ? {} : { retrain_coverage: w.retrain_coverage }),
});

type WindowPair = { c1: WindowFigures; c8: WindowFigures };

/**
 * Windows at 1 and 8 connections for both requests, taken in turn: `default` + custom, then custom
 * only, at each connection count.
 */
async function measureBoth(target: ClassifyTarget, phase: string, seconds: number, retrains?: RetrainLoop) {
  const both: Partial<WindowPair> = {};
  const customOnly: Partial<WindowPair> = {};
  for (const connections of [1, 8] as const) {
    both[`c${connections}`] = await measureWindow(target, phase, connections, seconds, retrains);
    customOnly[`c${connections}`] = await measureWindow(
      target,
      `${phase}, custom`,
      connections,
      seconds,
      retrains,
      target.customOnlyForm,
    );
  }
  return { both: both as WindowPair, customOnly: customOnly as WindowPair };
}

/** The windows on the bench's own service: idle, then while retraining, each for both requests; then the CPU by stage. */
async function runServiceWindows(target: ClassifyTarget, images: BenchImages, query: Buffer, seconds: number) {
  const { client, classifierId, form } = target;
  for (let i = 0; i < WARMUP_REQUESTS; i++) {
    await client.classify(form);
    await client.classify(target.customOnlyForm);
  }

  const idlePhase = await measureBoth(target, 'idle', seconds);
  const idle = idlePhase.both;

  const rounds = Math.ceil(2 * seconds * RETRAIN_ROUNDS_PER_S) + 4;
  const retrainZips: Array<Record<string, Buffer>> = [];
  for (let i = 0; i < rounds; i++) {
    const field = i % 2 === 0 ? 'a_positive_examples' : 'b_positive_examples';
    retrainZips.push({
      [field]: zipOf(await images.take(RETRAIN_IMAGES_PER_ZIP, i % 2 === 0 ? 'class-a' : 'class-b'), field),
    });
  }
  const retrains = new RetrainLoop(client, classifierId, retrainZips, form);
  await retrains.start();
  let retrainingPhase;
  try {
    retrainingPhase = await measureBoth(target, 'while retraining', seconds, retrains);
  } finally {
    await retrains.stop();
  }
  const retraining = retrainingPhase.both;
  console.log(
    `retrain loop: ${retrains.rounds.length} retrains of +${RETRAIN_IMAGES_PER_ZIP} images finished` +
      ` (median ${medianSeconds(retrains.rounds)} s each), ${retrains.roundsLeft} prepared rounds unused;` +
      ` ${retrains.classifyChecksPassed} classify checks during retraining answered with the previous version`,
  );

  const stages = await profileStages(
    query,
    [
      await images.take(PROFILE_EXAMPLES_PER_CLASS, 'class-a'),
      await images.take(PROFILE_EXAMPLES_PER_CLASS, 'class-b'),
    ],
    PROFILE_REPEATS,
  );
  const withRest = (stage: StageCpu, window: WindowFigures) => {
    const staged = stage.decode_ms + stage.mobilenet_ms + stage.centernet_ms + stage.scoring_ms;
    return {
      ...stage,
      http_and_rest_ms:
        window.api_cpu_ms_per_request === undefined ? undefined : round2(window.api_cpu_ms_per_request - staged),
    };
  };
  const byStage = withRest(stages.withDefault, idle.c1);
  const customOnlyByStage = withRest(stages.customOnly, idlePhase.customOnly.c1);
  console.log(
    `API CPU per request by stage (ms), default + custom: ${JSON.stringify(byStage)}; custom only: ${JSON.stringify(customOnlyByStage)}`,
  );

  const customOnly = { idle: idlePhase.customOnly, retraining: retrainingPhase.customOnly };
  const cpuRatio = {
    idle: {
      c1: ratio(customOnly.idle.c1.api_cpu_ms_per_request, idle.c1.api_cpu_ms_per_request),
      c8: ratio(customOnly.idle.c8.api_cpu_ms_per_request, idle.c8.api_cpu_ms_per_request),
    },
    retraining: {
      c1: ratio(customOnly.retraining.c1.api_cpu_ms_per_request, retraining.c1.api_cpu_ms_per_request),
      c8: ratio(customOnly.retraining.c8.api_cpu_ms_per_request, retraining.c8.api_cpu_ms_per_request),
    },
  };
  console.log(
    `custom-only / default + custom API CPU per request: ${JSON.stringify(cpuRatio)} (target ≤ ${CUSTOM_ONLY_MAX_CPU_RATIO})`,
  );

  const windows = [
    idle.c1,
    idle.c8,
    retraining.c1,
    retraining.c8,
    customOnly.idle.c1,
    customOnly.idle.c8,
    customOnly.retraining.c1,
    customOnly.retraining.c8,
  ];
  const met = (c1: WindowFigures, c8: WindowFigures) => ({
    c1_p50: c1.p50_ms <= TARGETS.c1_p50_ms,
    c1_p99: c1.p99_ms <= TARGETS.c1_p99_ms,
    c8_rps: c8.rps >= TARGETS.c8_rps,
    errors: c1.errors + c1.non2xx + c8.errors + c8.non2xx === TARGETS.errors,
  });
  return {
    idle: { c1: brief(idle.c1), c8: brief(idle.c8) },
    retraining: { c1: brief(retraining.c1), c8: brief(retraining.c8) },
    custom_only: {
      idle: { c1: brief(customOnly.idle.c1), c8: brief(customOnly.idle.c8) },
      retraining: { c1: brief(customOnly.retraining.c1), c8: brief(customOnly.retraining.c8) },
      api_cpu_ms_by_stage: customOnlyByStage,
      met: {
        idle: met(customOnly.idle.c1, customOnly.idle.c8),
        retraining: met(customOnly.retraining.c1, customOnly.retraining.c8),
      },
    },
    custom_only_cpu_ratio: cpuRatio,
    custom_only_cpu_ratio_max: CUSTOM_ONLY_MAX_CPU_RATIO,
    retraining_p50_ratio: {
      c1: ratio(retraining.c1.p50_ms, idle.c1.p50_ms),
      custom_only_c1: ratio(customOnly.retraining.c1.p50_ms, customOnly.idle.c1.p50_ms),
    },
    retrains_finished: retrains.rounds.length,
    api_cpu_ms_by_stage: byStage,
    rss_mb: Math.max(...windows.map((w) => w.api_rss_mb ?? 0)),
    worker_rss_mb: Math.max(...windows.map((w) => w.worker_rss_mb ?? 0)),
    targets: TARGETS,
    met: { idle: met(idle.c1, idle.c8), retraining: met(retraining.c1, retraining.c8) },
    loadavg_1m: { start: idle.c1.loadavg_1m[0], end: customOnly.retraining.c8.loadavg_1m[1] },
  };
}

/** `a / b` to 3 decimals; undefined when either is unknown. */
function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : Math.round((a / b) * 1000) / 1000;
}

/**
 * The scaling run: a service per SCALING_SETUPS entry, all up at once, each with its own trained
 * classifier and the same query; idle windows at 1 then 8 connections, the set-ups in turn.
 */
async function runScaling(images: BenchImages, query: Buffer, seconds: number) {
  const targets: Array<{ setup: (typeof SCALING_SETUPS)[number]; target: ClassifyTarget }> = [];
  const services: BenchService[] = [];
  try {
    for (const setup of SCALING_SETUPS) {
      const service = await startBenchService({
        API_PROCESSES: String(setup.apiProcesses),
        ORT_THREADS: String(setup.ortThreads),
      });
      services.push(service);
      console.log(
        `scaling ${setup.name}: ${setup.apiProcesses} API process(es) × ${setup.ortThreads} ORT thread(s), API pids ${service.apiPids.join(', ')}` +
          (setup.apiProcesses > 1 ? ` (primary ${service.pid})` : ''),
      );
      targets.push({ setup, target: await prepareTarget(service, images, query) });
    }
    for (const { target } of targets) {
      await runLoad({
        url: `${target.service.url}${target.client.classifyPath()}`,
        connections: 8,
        durationS: SCALING_WARMUP_S,
        headers: { Authorization: target.client.authorization, 'Content-Type': target.form.contentType },
        body: target.form.body,
      });
    }
    const windows = new Map<string, { c1?: WindowFigures; c8?: WindowFigures }>(
      SCALING_SETUPS.map((s) => [s.name, {}]),
    );
    for (const connections of [1, 8] as const) {
      for (const { setup, target } of targets) {
        windows.get(setup.name)![`c${connections}`] = await measureWindow(
          target,
          `scaling ${setup.name}`,
          connections,
          seconds,
        );
      }
    }
    const one = windows.get('1x2')!;
    const two = windows.get('2x1')!;
    const cpuRatio = {
      c1: ratio(two.c1!.api_cpu_ms_per_request, one.c1!.api_cpu_ms_per_request),
      c8: ratio(two.c8!.api_cpu_ms_per_request, one.c8!.api_cpu_ms_per_request),
    };
    const holds = (r: number | undefined) => (r === undefined ? undefined : r <= MAX_CPU_PER_REQUEST_GROWTH);
    const result = {
      setups: Object.fromEntries(
        SCALING_SETUPS.map((s) => {
          const w = windows.get(s.name)!;
          return [
            s.name,
            {
              api_processes: s.apiProcesses,
              ort_threads: s.ortThreads,
              c1: brief(w.c1!),
              c8: brief(w.c8!),
              api_rss_mb: Math.max(w.c1!.api_rss_mb ?? 0, w.c8!.api_rss_mb ?? 0),
            },
          ];
        }),
      ),
      rps_ratio_2x1_vs_1x2: { c1: ratio(two.c1!.rps, one.c1!.rps), c8: ratio(two.c8!.rps, one.c8!.rps) },
      p50_ratio_2x1_vs_1x2: { c1: ratio(two.c1!.p50_ms, one.c1!.p50_ms), c8: ratio(two.c8!.p50_ms, one.c8!.p50_ms) },
      cpu_per_request_ratio_2x1_vs_1x2: cpuRatio,
      cpu_per_request_max_ratio: MAX_CPU_PER_REQUEST_GROWTH,
      cpu_per_request_holds: { c1: holds(cpuRatio.c1), c8: holds(cpuRatio.c8) },
    };
    console.log(
      `scaling 2×1 vs 1×2: req/s ratio c=1 ${result.rps_ratio_2x1_vs_1x2.c1}, c=8 ${result.rps_ratio_2x1_vs_1x2.c8}; ` +
        `API CPU per request ratio c=1 ${cpuRatio.c1}, c=8 ${cpuRatio.c8} (limit ${MAX_CPU_PER_REQUEST_GROWTH}); ` +
        `on ${os.cpus().length} cores both set-ups have the same CPU: the ratios show overhead, not speed-up`,
    );
    return result;
  } finally {
    await Promise.all(services.map((service) => service.stop()));
  }
}

async function runClassifyBench(service: BenchService, images: BenchImages) {
  const seconds = durationS();
  const scaling = scalingMode();
  const query = await images.queryJpeg(QUERY_WIDTH);
  console.log(
    `query JPEG ${QUERY_WIDTH} px wide, ${query.length} bytes; windows of ${seconds} s; scaling run ${scaling}`,
  );
  let windows: Awaited<ReturnType<typeof runServiceWindows>> | undefined;
  if (scaling !== 'only') {
    const target = await prepareTarget(service, images, query);
    console.log(`classifier ${target.classifierId} ready`);
    windows = await runServiceWindows(target, images, query, seconds);
  }
  return {
    bench: 'classify',
    cores: os.cpus().length,
    images: images.usesPhotos ? 'food-photos' : 'generated',
    duration_s: seconds,
    ...windows,
    ...(scaling === 'off' ? {} : { scaling: await runScaling(images, query, seconds) }),
  };
}

function medianSeconds(rounds: Array<[number, number]>): number {
  const durations = rounds.map(([start, end]) => end - start).sort((a, b) => a - b);
  return durations.length ? Math.round(durations[Math.floor(durations.length / 2)]) / 1000 : NaN;
}

benchMain(runClassifyBench);
