/**
 * bench:classify — POST /v3/classify latency and throughput of the real service
 * (API + training worker in another process on 127.0.0.1), driven by autocannon
 * from this process with one prebuilt request: a 640-px JPEG and
 * `classifier_ids=<custom>,default`.
 *
 * Windows of BENCH_DURATION_S seconds (default 30) at 1 and 8 connections,
 * first idle, then while a retrain loop keeps the same classifier retraining
 * (fresh zip of new images, poll until ready, again). After each window: the
 * API process's resident memory. Targets (2 cores): p50 ≤ 25 ms and p99 ≤ 80 ms
 * at 1 connection, ≥ 60 requests/s at 8, no errors, also while retraining.
 * Then the API CPU of one request by stage (stage-profile.ts: decode, MobileNetV2, CenterNet,
 * scoring, measured in this process; the rest of the idle c=1 API CPU is HTTP, multipart and JSON).
 * Last line: one JSON object.
 */
import os from 'node:os';
import { BenchImages, zipOf } from './lib/bench-images';
import { benchMain } from './lib/bench-main';
import { cpuSeconds, residentMb, type BenchService } from './lib/bench-service';
import { runLoad, type LoadFigures } from './lib/load-generator';
import { RetrainLoop } from './lib/retrain-loop';
import { profileStages } from './lib/stage-profile';
import { multipartForm, prebuildForm, WatsonClient, type PrebuiltForm } from './lib/watson-client';

const TARGETS = { c1_p50_ms: 25, c1_p99_ms: 80, c8_rps: 60, errors: 0 };
const QUERY_WIDTH = 640;
const SETUP_IMAGES_PER_ZIP = 30;
const RETRAIN_IMAGES_PER_ZIP = 20;
/** Rounds prepared per second of retraining windows: more than a retrain can finish, so the loop never runs dry. */
const RETRAIN_ROUNDS_PER_S = 1;
const WARMUP_REQUESTS = 20;
const PROFILE_REPEATS = 30;
const PROFILE_EXAMPLES_PER_CLASS = 15;

interface WindowFigures extends LoadFigures {
  api_rss_mb?: number;
  worker_rss_mb?: number;
  loadavg_1m: [number, number];
  /** CPU the API process spent per answered request: its cost whatever else runs on the machine. */
  api_cpu_ms_per_request?: number;
  /** CPU of the training worker and of this process (autocannon) during the window. */
  worker_cpu_s?: number;
  load_generator_cpu_s: number;
  retrain_coverage?: number;
}

const round2 = (value: number) => Math.round(value * 100) / 100;
const loadAverage = () => round2(os.loadavg()[0]);
const sumCpuUsage = (usage: NodeJS.CpuUsage) => (usage.user + usage.system) / 1e6;

function cpuDelta(before: number | undefined, after: number | undefined, per: (cpu: number) => number): number | undefined {
  return before === undefined || after === undefined ? undefined : round2(per(after - before));
}

function durationS(): number {
  const raw = process.env.BENCH_DURATION_S ?? '30';
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 1 || value > 600) throw new Error(`BENCH_DURATION_S must be 1–600 seconds, not '${raw}'`);
  return Math.round(value);
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

async function checkAnswer(client: WatsonClient, form: PrebuiltForm, classifierId: string): Promise<void> {
  const answer = await client.classify<{ images: Array<{ classifiers?: Array<{ classifier_id: string; classes: unknown[] }> }> }>(form);
  const classifiers = answer.images[0]?.classifiers ?? [];
  const ids = classifiers.map((c) => c.classifier_id);
  if (!ids.includes(classifierId) || !ids.includes('default')) {
    throw new Error(`classify did not apply ${classifierId} and default: ${JSON.stringify(answer).slice(0, 400)}`);
  }
  console.log(`sample answer: ${JSON.stringify(classifiers)}`);
}

function printWindow(label: string, w: WindowFigures) {
  const coverage = w.retrain_coverage === undefined ? '' : `, retraining ${Math.round(w.retrain_coverage * 100)}% of the window`;
  console.log(
    `${label.padEnd(16)} c=${w.connections}: ${w.requests} requests in ${w.duration_s.toFixed(1)} s = ${w.rps} req/s; ` +
      `p50 ${w.p50_ms} ms, p90 ${w.p90_ms} ms, p99 ${w.p99_ms} ms, max ${w.max_ms} ms; non-2xx ${w.non2xx}, errors ${w.errors}; ` +
      `API CPU ${w.api_cpu_ms_per_request} ms/request, worker CPU ${w.worker_cpu_s} s, autocannon CPU ${w.load_generator_cpu_s} s; ` +
      `API RSS ${w.api_rss_mb} MB, worker RSS ${w.worker_rss_mb} MB; load ${w.loadavg_1m.join(' → ')}${coverage}`,
  );
}

async function runClassifyBench(service: BenchService, images: BenchImages) {
  const seconds = durationS();
  const client = new WatsonClient(service.url, service.apiKey);
  const classifierId = await trainSetupClassifier(client, images);
  const query = await images.queryJpeg(QUERY_WIDTH);
  const form = await prebuildForm(
    multipartForm({ images_file: { bytes: query, filename: 'query.jpg' } }, { classifier_ids: `${classifierId},default` }),
  );
  console.log(`classifier ${classifierId} ready; query JPEG ${QUERY_WIDTH} px wide, ${query.length} bytes; windows of ${seconds} s`);
  await checkAnswer(client, form, classifierId);
  for (let i = 0; i < WARMUP_REQUESTS; i++) await client.classify(form);

  const window = async (label: string, connections: number, retrains?: RetrainLoop): Promise<WindowFigures> => {
    const loadStart = loadAverage();
    const apiCpu = cpuSeconds(service.pid);
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
      api_rss_mb: residentMb(service.pid),
      worker_rss_mb: residentMb(service.workerPid),
      loadavg_1m: [loadStart, loadAverage()],
      api_cpu_ms_per_request: cpuDelta(apiCpu, cpuSeconds(service.pid), (cpu) => (cpu * 1000) / figures.requests),
      worker_cpu_s: cpuDelta(workerCpu, cpuSeconds(service.workerPid), (cpu) => cpu),
      load_generator_cpu_s: round2(sumCpuUsage(process.cpuUsage(ownCpu))),
      retrain_coverage: retrains?.coverage(from, performance.now()),
    };
    printWindow(label, result);
    return result;
  };

  const idle = { c1: await window('idle', 1), c8: await window('idle', 8) };

  const rounds = Math.ceil(2 * seconds * RETRAIN_ROUNDS_PER_S) + 4;
  const retrainZips: Array<Record<string, Buffer>> = [];
  for (let i = 0; i < rounds; i++) {
    const field = i % 2 === 0 ? 'a_positive_examples' : 'b_positive_examples';
    retrainZips.push({ [field]: zipOf(await images.take(RETRAIN_IMAGES_PER_ZIP, i % 2 === 0 ? 'class-a' : 'class-b'), field) });
  }
  const retrains = new RetrainLoop(client, classifierId, retrainZips, form);
  await retrains.start();
  let retraining;
  try {
    retraining = { c1: await window('while retraining', 1, retrains), c8: await window('while retraining', 8, retrains) };
  } finally {
    await retrains.stop();
  }
  console.log(
    `retrain loop: ${retrains.rounds.length} retrains of +${RETRAIN_IMAGES_PER_ZIP} images finished` +
      ` (median ${medianSeconds(retrains.rounds)} s each), ${retrains.roundsLeft} prepared rounds unused;` +
      ` ${retrains.classifyChecksPassed} classify checks during retraining answered with the previous version`,
  );

  const stages = await profileStages(
    query,
    [await images.take(PROFILE_EXAMPLES_PER_CLASS, 'class-a'), await images.take(PROFILE_EXAMPLES_PER_CLASS, 'class-b')],
    PROFILE_REPEATS,
  );
  const staged = stages.decode_ms + stages.mobilenet_ms + stages.centernet_ms + stages.scoring_ms;
  const byStage = { ...stages, http_and_rest_ms: idle.c1.api_cpu_ms_per_request === undefined ? undefined : round2(idle.c1.api_cpu_ms_per_request - staged) };
  console.log(`API CPU per request by stage (ms): ${JSON.stringify(byStage)}`);

  const windows = [idle.c1, idle.c8, retraining.c1, retraining.c8];
  const met = (c1: WindowFigures, c8: WindowFigures) => ({
    c1_p50: c1.p50_ms <= TARGETS.c1_p50_ms,
    c1_p99: c1.p99_ms <= TARGETS.c1_p99_ms,
    c8_rps: c8.rps >= TARGETS.c8_rps,
    errors: c1.errors + c1.non2xx + c8.errors + c8.non2xx === TARGETS.errors,
  });
  const brief = (w: WindowFigures) => ({
    p50_ms: w.p50_ms,
    p99_ms: w.p99_ms,
    rps: w.rps,
    non2xx: w.non2xx,
    errors: w.errors,
    api_cpu_ms_per_request: w.api_cpu_ms_per_request,
    ...(w.retrain_coverage === undefined ? {} : { retrain_coverage: w.retrain_coverage }),
  });
  return {
    bench: 'classify',
    cores: os.cpus().length,
    images: images.usesPhotos ? 'food-photos' : 'generated',
    duration_s: seconds,
    idle: { c1: brief(idle.c1), c8: brief(idle.c8) },
    retraining: { c1: brief(retraining.c1), c8: brief(retraining.c8) },
    retrains_finished: retrains.rounds.length,
    api_cpu_ms_by_stage: byStage,
    rss_mb: Math.max(...windows.map((w) => w.api_rss_mb ?? 0)),
    worker_rss_mb: Math.max(...windows.map((w) => w.worker_rss_mb ?? 0)),
    targets: TARGETS,
    met: { idle: met(idle.c1, idle.c8), retraining: met(retraining.c1, retraining.c8) },
    loadavg_1m: { start: idle.c1.loadavg_1m[0], end: retraining.c8.loadavg_1m[1] },
  };
}

function medianSeconds(rounds: Array<[number, number]>): number {
  const durations = rounds.map(([start, end]) => end - start).sort((a, b) => a - b);
  return durations.length ? Math.round(durations[Math.floor(durations.length / 2)]) / 1000 : NaN;
}

benchMain(runClassifyBench);
