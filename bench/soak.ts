/**
 * bench:soak — the soak's load (bench/lib/soak-load.ts: 8 classify clients, a retrain loop, uploads
 * and deletes, every answer checked) on the real service (API + training worker, ORT_THREADS=1, as
 * the soak test runs it) for SOAK_MINUTES minutes (default 30), to see whether memory levels off.
 * Not run in CI.
 *
 * Each minute, for the API process and the worker: resident memory (/proc), V8 heap used and
 * external memory (their /metrics), open descriptors (/proc; clients' connections to the API not
 * counted) and the event-loop delay p99 (the worst of the minute's 5-s windows); and the designated
 * client's p99, requests, 5xx and connection errors. One line per minute while it runs.
 *
 * Resident memory is also taken at two quiet points (every activity stopped, the worker idle), after
 * a warm-up and at the end, as the soak test does. Levelling off is judged on the per-minute curve:
 * the growth of each process's RSS over the second half of the run, per 10 minutes.
 * With SOAK_HEAP_SNAPSHOTS=<dir>, the API process writes a V8 heap snapshot into <dir> at both quiet
 * points, and the kinds of objects that grew most between them are printed: where to look for a leak.
 * Last line: one JSON object with the headline figures and the per-minute RSS and heap curves.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  openFileDescriptors,
  residentMb,
  startBenchService,
  RedisNotAnsweringError,
  type BenchService,
} from './lib/bench-service';
import { percentile } from './lib/load-generator';
import { SoakLoad } from './lib/soak-load';
import { parseMetrics, type Sample } from '../test/support/prometheus';
import { heapGrowth, summariseHeapSnapshot, type HeapGroup } from './lib/heap-summary';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 30);
const WARMUP_S = 60;
const IDLE_S = 20;
const SCRAPE_EVERY_MS = 5_000;
const MB = 1024 * 1024;
const SNAPSHOT_DIR = process.env.SOAK_HEAP_SNAPSHOTS ? path.resolve(process.env.SOAK_HEAP_SNAPSHOTS) : undefined;

type Role = 'api' | 'worker';
const ROLES: Role[] = ['api', 'worker'];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

interface ProcessSample {
  rss_mb?: number;
  heap_mb?: number;
  external_mb?: number;
  fds?: number;
  event_loop_p99_ms?: number;
}

interface MinuteSample {
  minute: number;
  api: ProcessSample;
  worker: ProcessSample;
  requests: number;
  designated_p99_ms: number;
  status_5xx: number;
  connection_errors: number;
}

/** One process's samples out of a scrape of the API's /metrics (which holds the worker's too). */
function valueOf(samples: Sample[], name: string, role: Role): number | undefined {
  return samples.find((s) => s.name === name && s.labels.process_role === role)?.value;
}

async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(`${url}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return parseMetrics(await res.text());
}

/** Median RSS over a second of every role, while nothing runs. */
async function quietRss(pids: Record<Role, number>): Promise<Record<Role, number>> {
  const rss: Record<Role, number[]> = { api: [], worker: [] };
  for (let i = 0; i < 5; i++) {
    for (const role of ROLES) rss[role].push(residentMb(pids[role]) ?? NaN);
    await sleep(250);
  }
  return { api: median(rss.api), worker: median(rss.worker) };
}

/** Has the process write a heap snapshot into SNAPSHOT_DIR (it listens for SIGUSR2); resolves with its path once written. */
async function heapSnapshot(pid: number): Promise<string> {
  const dir = SNAPSHOT_DIR!;
  const before = new Set(fs.readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  for (let lastSize = -1; ;) {
    await sleep(1000);
    const file = fs.readdirSync(dir).find((name) => name.endsWith('.heapsnapshot') && !before.has(name));
    if (file === undefined) continue;
    const size = fs.statSync(path.join(dir, file)).size;
    // Written in one go by the process; done when it stops growing and parses.
    if (size === lastSize && size > 0) return path.join(dir, file);
    lastSize = size;
  }
}

/** RSS growth per 10 minutes over the second half of the curve (least squares), in MB. */
function secondHalfSlope(points: Array<[number, number | undefined]>): number | undefined {
  const half = points.slice(Math.floor(points.length / 2)).filter((p): p is [number, number] => p[1] !== undefined);
  if (half.length < 2) return undefined;
  const mx = half.reduce((s, [x]) => s + x, 0) / half.length;
  const my = half.reduce((s, [, y]) => s + y, 0) / half.length;
  const slope = half.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0) / half.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return round(slope * 10);
}

async function run(service: BenchService) {
  const pids: Record<Role, number> = { api: service.pid, worker: service.workerPid! };
  const apiPort = Number(new URL(service.url).port);
  const load = await SoakLoad.start(service.url, service.apiKey);

  const idle: number[] = [];
  await load.runAlone(IDLE_S, idle);
  idle.sort((a, b) => a - b);
  load.calibrate(percentile(idle, 50));
  console.log(
    `idle: designated client p50 ${round(percentile(idle, 50))} ms, p99 ${round(percentile(idle, 99))} ms; warm-up ${WARMUP_S} s`,
  );
  await load.runPhase(WARMUP_S, []);
  const quietStart = await quietRss(pids);
  const snapshotStart = SNAPSHOT_DIR ? await heapSnapshot(pids.api) : undefined;

  const latencies: number[] = [];
  const minutes: MinuteSample[] = [];
  const started = performance.now();
  let done = false;
  const sampler = async () => {
    let minute = 1;
    let windowP99: Record<Role, number[]> = { api: [], worker: [] };
    let from = { latencies: 0, requests: load.counts.classify, errors: 0, status5xx: 0 };
    const fives = () =>
      Object.entries(load.statusCounts).reduce((n, [status, count]) => n + (Number(status) >= 500 ? count : 0), 0);
    for (;;) {
      await sleep(SCRAPE_EVERY_MS);
      let samples: Sample[] = [];
      try {
        samples = await scrape(service.url);
      } catch (error) {
        console.log(`scrape failed: ${String(error)}`);
      }
      for (const role of ROLES) {
        const p99 = valueOf(samples, 'nodejs_eventloop_lag_p99_seconds', role);
        if (p99 !== undefined) windowP99[role].push(p99 * 1000);
      }
      // A minute is reported once it is full; the phase's last steps after its time are not one.
      if (performance.now() - started < minute * 60_000) {
        if (done) return;
        continue;
      }
      if (minute > MINUTES) return;
      const slice = latencies.slice(from.latencies).sort((a, b) => a - b);
      const processSample = (role: Role): ProcessSample => {
        const heap = valueOf(samples, 'nodejs_heap_size_used_bytes', role);
        const external = valueOf(samples, 'nodejs_external_memory_bytes', role);
        return {
          rss_mb: residentMb(pids[role]),
          heap_mb: heap === undefined ? undefined : round(heap / MB),
          external_mb: external === undefined ? undefined : round(external / MB),
          fds: openFileDescriptors(pids[role], role === 'api' ? apiPort : undefined)?.open,
          event_loop_p99_ms: windowP99[role].length ? round(Math.max(...windowP99[role])) : undefined,
        };
      };
      const sample: MinuteSample = {
        minute,
        api: processSample('api'),
        worker: processSample('worker'),
        requests: load.counts.classify - from.requests,
        designated_p99_ms: round(percentile(slice, 99)),
        status_5xx: fives() - from.status5xx,
        connection_errors: load.connectionErrors.length - from.errors,
      };
      minutes.push(sample);
      const show = (p: ProcessSample) =>
        `rss ${p.rss_mb} MB heap ${p.heap_mb} MB ext ${p.external_mb} MB fds ${p.fds} loop p99 ${p.event_loop_p99_ms} ms`;
      console.log(
        `min ${minute}: api ${show(sample.api)} | worker ${show(sample.worker)} | ${sample.requests} req, p99 ${sample.designated_p99_ms} ms, 5xx ${sample.status_5xx}, conn errors ${sample.connection_errors}`,
      );
      from = {
        latencies: latencies.length,
        requests: load.counts.classify,
        errors: load.connectionErrors.length,
        status5xx: fives(),
      };
      windowP99 = { api: [], worker: [] };
      minute++;
    }
  };
  const sampling = sampler();
  const retrainsBefore = load.retrains();
  await load.runPhase(MINUTES * 60, latencies);
  const ranS = (performance.now() - started) / 1000;
  done = true;
  await sampling;
  const quietEnd = await quietRss(pids);
  latencies.sort((a, b) => a - b);
  let apiHeapGrowth: HeapGroup[] | undefined;
  if (snapshotStart) {
    apiHeapGrowth = heapGrowth(
      summariseHeapSnapshot(snapshotStart),
      summariseHeapSnapshot(await heapSnapshot(pids.api)),
    );
    console.log('API heap, the kinds that grew most between the quiet points (self sizes):');
    for (const g of apiHeapGrowth)
      console.log(`  ${g.kind}: ${g.count >= 0 ? '+' : ''}${g.count} objects, ${round(g.bytes / MB, 2)} MB`);
  }

  const curve = (role: Role, key: keyof ProcessSample) => minutes.map((m) => m[role][key]);
  const growth = (role: Role) => round(quietEnd[role] / quietStart[role] - 1, 3);
  return {
    soak_bench: {
      minutes: MINUTES,
      ran_s: round(ranS),
      cores: os.cpus().length,
      loadavg_1m_end: round(os.loadavg()[0]),
      requests: load.counts.classify,
      retrains: load.retrains() - retrainsBefore,
      uploads: load.counts.uploads,
      status_codes: load.statusCounts,
      connection_errors: load.connectionErrors.length,
      connection_error_kinds: [...new Set(load.connectionErrors)].slice(0, 5),
      wrong_answers: [...load.wrongAnswers].slice(0, 5).map(([what, times]) => `${times}× ${what}`),
      activity_errors: load.activityErrors.map(String).slice(0, 5),
      designated_p99_ms: { idle: round(percentile(idle, 99)), load: round(percentile(latencies, 99)) },
      quiet_rss_mb: { api: [quietStart.api, quietEnd.api], worker: [quietStart.worker, quietEnd.worker] },
      quiet_rss_growth: { api: growth('api'), worker: growth('worker') },
      rss_mb_per_10_min_second_half: {
        api: secondHalfSlope(minutes.map((m) => [m.minute, m.api.rss_mb])),
        worker: secondHalfSlope(minutes.map((m) => [m.minute, m.worker.rss_mb])),
      },
      heap_mb_per_10_min_second_half: {
        api: secondHalfSlope(minutes.map((m) => [m.minute, m.api.heap_mb])),
        worker: secondHalfSlope(minutes.map((m) => [m.minute, m.worker.heap_mb])),
      },
      fds: {
        api: [minutes[0]?.api.fds, minutes.at(-1)?.api.fds],
        worker: [minutes[0]?.worker.fds, minutes.at(-1)?.worker.fds],
      },
      event_loop_p99_ms_worst: {
        api: Math.max(...minutes.map((m) => m.api.event_loop_p99_ms ?? 0)),
        worker: Math.max(...minutes.map((m) => m.worker.event_loop_p99_ms ?? 0)),
      },
      api_heap_growth_top: apiHeapGrowth
        ?.slice(0, 5)
        .map((g) => ({ kind: g.kind, objects: g.count, mb: round(g.bytes / MB, 2) })),
      per_minute: {
        api_rss_mb: curve('api', 'rss_mb'),
        worker_rss_mb: curve('worker', 'rss_mb'),
        api_heap_mb: curve('api', 'heap_mb'),
        worker_heap_mb: curve('worker', 'heap_mb'),
        designated_p99_ms: minutes.map((m) => m.designated_p99_ms),
      },
    },
  };
}

async function main() {
  if (!Number.isFinite(MINUTES) || MINUTES < 1)
    throw new Error(`SOAK_MINUTES must be a number of minutes ≥ 1, not '${process.env.SOAK_MINUTES}'`);
  let service: BenchService;
  try {
    const snapshots =
      SNAPSHOT_DIR &&
      [process.env.NODE_OPTIONS, '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${SNAPSHOT_DIR}`]
        .filter(Boolean)
        .join(' ');
    if (SNAPSHOT_DIR) fs.mkdirSync(SNAPSHOT_DIR, { recursive: true });
    service = await startBenchService({ ORT_THREADS: '1', ...(snapshots ? { NODE_OPTIONS: snapshots } : {}) });
  } catch (error) {
    if (!(error instanceof RedisNotAnsweringError)) throw error;
    console.log(error.message);
    process.exit(1);
  }
  console.log(
    `service (pid ${service.pid}, worker pid ${service.workerPid}) at ${service.url}; ${MINUTES} minutes of soak load`,
  );
  let figures: object;
  try {
    figures = await run(service);
  } finally {
    await service.stop();
  }
  console.log(JSON.stringify(figures));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
