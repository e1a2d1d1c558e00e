/**
 * Load and soak: the real service (API process + training worker process, real Redis on
 * 127.0.0.1, temp data dir) under the soak load of bench/lib/soak-load.ts (8 classify clients, a
 * continuous retrain loop, uploads of new classifiers and deletes, every answer checked) for SOAK_S
 * seconds (default 60, at most 1800) after a warm-up of the same load.
 *
 * What it asserts:
 * - no 5xx and no connection error on any request;
 * - every classify answer comes from the classifiers asked for, in the right version (see soak-load.ts);
 * - p99 latency of one designated client under load ≤ 4 × its p99 alone;
 * - RSS of the API and the worker grows < 20 % from after the warm-up to the end (the retrained
 *   classifier is replaced by a fresh one, and deleted, every few retrains, so the data in play
 *   stays bounded and growth means a leak, not more data);
 * - open file descriptors of both do not grow, and nothing is left on disk that nothing refers to.
 * It prints its figures as one JSON line starting with {"soak":. For memory over longer runs, minute
 * by minute, see `npm run bench:soak`.
 *
 * The idle p99 is the mean of the designated client's idle windows: one just before the load, one
 * after each SEGMENT_S of it (the soak pauses for it) and one just after the load: other work on the
 * machine drifts over minutes, and a reference taken only at both ends of a half-hour soak is not
 * the machine the load ran on. The retraining worker has one ONNX thread of its own
 * (ORT_THREADS=1 for both processes) and runs 10 steps nicer than the API.
 *
 * Memory and descriptors are compared at two quiet points (every activity stopped, the worker
 * idle): after the warm-up and at the end. Descriptors do not count clients' TCP connections to
 * the API, which come and go with the load generator; everything else (files, Redis connections,
 * pipes, listening sockets) must come back to where it was, give or take FD_SLACK.
 *
 * The time limit is what the test does, each part at its longest: the service's start, the phases,
 * each phase's last steps (SOAK_STEP_LIMIT_MS), the idle windows, the quiet points, the disk check
 * and the stop.
 */
import fs from 'node:fs';
import os from 'node:os';
import {
  cpuSeconds,
  openFileDescriptors,
  residentMb,
  startBenchService,
  START_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
  type BenchService,
} from '../../bench/lib/bench-service';
import { percentile } from '../../bench/lib/load-generator';
import { SoakLoad, SOAK_STEP_LIMIT_MS } from '../../bench/lib/soak-load';
import { waitFor } from '../support/service-harness';
import { tmpEntries, unreferencedHeadFiles, unreferencedImageFiles } from './support/data-dir';

const SOAK_S = soakSeconds();
const WARMUP_S = 15;
const IDLE_S = 20;
/** The longest stretch of load without an idle window of the designated client. */
const SEGMENT_S = 300;
const SEGMENTS = soakSegments(SOAK_S, SEGMENT_S);
/** The designated client's first requests, before its idle window. */
const FIRST_REQUESTS_S = 3;
const MAX_P99_RATIO = 4;
const MAX_RSS_GROWTH = 0.2;
/** A descriptor opened lazily the first time some path runs (a libuv or ONNX thread's eventfd, say). */
const FD_SLACK = 2;
const QUIET_SNAPSHOT_MS = 5 * 250;
const DISK_CHECK_MS = 30_000;
/** The first retrained classifier: its zips made and its training, at its longest. */
const FIRST_CLASSIFIER_MS = SOAK_STEP_LIMIT_MS + 30_000;
const TIME_LIMIT_MS =
  START_TIMEOUT_MS +
  FIRST_CLASSIFIER_MS +
  (FIRST_REQUESTS_S + (SEGMENTS.length + 1) * IDLE_S + WARMUP_S + SOAK_S) * 1000 +
  (1 + SEGMENTS.length) * SOAK_STEP_LIMIT_MS +
  4 * QUIET_SNAPSHOT_MS +
  DISK_CHECK_MS +
  STOP_TIMEOUT_MS;

function soakSeconds(): number {
  const value = Number(process.env.SOAK_S ?? '60');
  if (!Number.isFinite(value) || value < 10 || value > 1800)
    throw new Error(`SOAK_S must be 10–1800 seconds, not '${process.env.SOAK_S}'`);
  return value;
}

/** `seconds` cut into as few equal segments as keep each at most `longest` seconds long. */
function soakSegments(seconds: number, longest: number): number[] {
  const n = Math.ceil(seconds / longest);
  return Array.from({ length: n }, () => seconds / n);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round1 = (value: number) => Math.round(value * 10) / 10;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** Resident memory (median) and descriptors (fewest) of a process over a second, while nothing runs. */
async function quietSnapshot(pid: number, serverPort?: number): Promise<{ rss_mb: number; fds: number }> {
  const rss: number[] = [];
  const fds: number[] = [];
  for (let i = 0; i < 5; i++) {
    rss.push(residentMb(pid) ?? NaN);
    fds.push(openFileDescriptors(pid, serverPort)?.open ?? NaN);
    await sleep(QUIET_SNAPSHOT_MS / 5);
  }
  return { rss_mb: median(rss), fds: Math.min(...fds) };
}

function parentPid(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

describe(`load and soak: 8 classify clients, retrains, uploads and deletes for ${SOAK_S} s`, () => {
  let service: BenchService | undefined;

  afterAll(async () => {
    await service?.stop();
  });

  it(
    'answers every request from the right classifier and version, without 5xx, latency blow-up or leaks',
    async () => {
      service = await startBenchService({ ORT_THREADS: '1' });
      const svc = service;
      const apiPort = Number(new URL(svc.url).port);
      const workerPid = svc.workerPid!;
      expect(workerPid).toBeDefined();
      const load = await SoakLoad.start(svc.url, svc.apiKey);
      const { counts } = load;

      // ---- Warm-up, then the designated client alone. ----
      await load.runAlone(FIRST_REQUESTS_S, []);
      const idleBefore: number[] = [];
      const loadStart = round1(os.loadavg()[0]);
      await load.runAlone(IDLE_S, idleBefore);
      idleBefore.sort((a, b) => a - b);
      const idleMedianMs = percentile(idleBefore, 50);
      load.calibrate(idleMedianMs);

      // ---- Warm-up under the full load, a quiet point, the soak, a quiet point. ----
      await load.runPhase(WARMUP_S, []);
      const quiet = async () => ({
        api: await quietSnapshot(svc.pid, apiPort),
        worker: await quietSnapshot(workerPid),
      });
      const before = await quiet();
      const cpuBefore = { api: cpuSeconds(svc.pid), worker: cpuSeconds(workerPid) };
      const retrainsBefore = load.retrains();
      const countsBefore = { ...counts };
      const loadLatencies: number[] = [];
      const idleBetween: number[][] = [];
      let soakSecondsRun = 0;
      for (const [i, seconds] of SEGMENTS.entries()) {
        const segmentStarted = performance.now();
        await load.runPhase(seconds, loadLatencies);
        soakSecondsRun += (performance.now() - segmentStarted) / 1000;
        if (i === SEGMENTS.length - 1) break;
        const window: number[] = [];
        await load.runAlone(IDLE_S, window);
        idleBetween.push(window.sort((a, b) => a - b));
      }
      const cpuAfter = { api: cpuSeconds(svc.pid), worker: cpuSeconds(workerPid) };
      const after = await quiet();
      loadLatencies.sort((a, b) => a - b);
      const idleAfter: number[] = [];
      await load.runAlone(IDLE_S, idleAfter);
      idleAfter.sort((a, b) => a - b);

      // Disk: nothing left behind that nothing refers to (a deleted classifier's last run may still be finishing).
      const leftOnDisk = await waitFor(
        'the data dir to hold only referenced files',
        async () => {
          const left = [
            ...tmpEntries(svc.dataDir),
            ...unreferencedImageFiles(svc.dataDir),
            ...unreferencedHeadFiles(svc.dataDir),
          ];
          return left.length === 0 ? left : undefined;
        },
        DISK_CHECK_MS,
        500,
      ).catch(() => [
        ...tmpEntries(svc.dataDir),
        ...unreferencedImageFiles(svc.dataDir),
        ...unreferencedHeadFiles(svc.dataDir),
      ]);

      const growth = (start: number, end: number) => Math.round((end / start - 1) * 1000) / 1000;
      // The machine's other load drifts over minutes: the idle windows bracket the soak and its segments.
      const idleWindows = [idleBefore, ...idleBetween, idleAfter];
      const idleP99 = idleWindows.reduce((sum, w) => sum + percentile(w, 99), 0) / idleWindows.length;
      const loadP99 = percentile(loadLatencies, 99);
      const figures = {
        soak: {
          soak_s: round1(soakSecondsRun),
          warmup_s: WARMUP_S,
          cores: os.cpus().length,
          loadavg_1m: { idle_start: loadStart, end: round1(os.loadavg()[0]) },
          designated_client: {
            idle_before: {
              requests: idleBefore.length,
              p50_ms: round1(idleMedianMs),
              p99_ms: round1(percentile(idleBefore, 99)),
            },
            idle_after: {
              requests: idleAfter.length,
              p50_ms: round1(percentile(idleAfter, 50)),
              p99_ms: round1(percentile(idleAfter, 99)),
            },
            idle_between_p99_ms: idleBetween.map((w) => round1(percentile(w, 99))),
            idle_p99_ms: round1(idleP99),
            load: {
              requests: loadLatencies.length,
              p50_ms: round1(percentile(loadLatencies, 50)),
              p99_ms: round1(loadP99),
            },
            p99_ratio: Math.round((loadP99 / idleP99) * 100) / 100,
          },
          paced_clients: {
            clients: load.backgroundClients,
            think_ms: Math.round(load.thinkMs),
            share_of_idle_capacity: load.backgroundShare,
          },
          uploads_every_ms: Math.round(load.uploadEveryMs),
          soak_counts: {
            classify: counts.classify - countsBefore.classify,
            retrains: load.retrains() - retrainsBefore,
            uploads: counts.uploads - countsBefore.uploads,
            deletes: (['deletes', 'deleted_while_training', 'retrained_replaced'] as const).reduce(
              (n, k) => n + counts[k] - countsBefore[k],
              0,
            ),
          },
          total_counts: { ...counts, retrains: load.retrains() },
          zips_made: load.zipsMade,
          status_codes: load.statusCounts,
          connection_errors: load.connectionErrors.length,
          rss_mb: { api: [before.api.rss_mb, after.api.rss_mb], worker: [before.worker.rss_mb, after.worker.rss_mb] },
          rss_growth: {
            api: growth(before.api.rss_mb, after.api.rss_mb),
            worker: growth(before.worker.rss_mb, after.worker.rss_mb),
          },
          fds: { api: [before.api.fds, after.api.fds], worker: [before.worker.fds, after.worker.fds] },
          cpu_s_during_soak: {
            api:
              cpuAfter.api !== undefined && cpuBefore.api !== undefined
                ? round1(cpuAfter.api - cpuBefore.api)
                : undefined,
            worker:
              cpuAfter.worker !== undefined && cpuBefore.worker !== undefined
                ? round1(cpuAfter.worker - cpuBefore.worker)
                : undefined,
          },
        },
      };
      process.stdout.write(`${JSON.stringify(figures)}\n`);

      expect(load.activityErrors.map(String)).toEqual([]);
      expect(load.connectionErrors).toEqual([]);
      expect([...load.wrongAnswers].slice(0, 20).map(([what, times]) => `${times}× ${what}`)).toEqual([]);
      expect(Object.keys(load.statusCounts).filter((status) => Number(status) >= 500)).toEqual([]);
      // The soak did what it claims: classifies, retrains, uploads and deletes all ran.
      expect(Object.entries(figures.soak.soak_counts).filter(([, n]) => n === 0)).toEqual([]);
      // The worker never died (a restart would have a new pid).
      expect(parentPid(workerPid)).toBe(svc.pid);
      expect(loadP99 / idleP99).toBeLessThanOrEqual(MAX_P99_RATIO);
      expect(figures.soak.rss_growth.api).toBeLessThan(MAX_RSS_GROWTH);
      expect(figures.soak.rss_growth.worker).toBeLessThan(MAX_RSS_GROWTH);
      expect(after.api.fds).toBeLessThanOrEqual(before.api.fds + FD_SLACK);
      expect(after.worker.fds).toBeLessThanOrEqual(before.worker.fds + FD_SLACK);
      expect(leftOnDisk).toEqual([]);
    },
    TIME_LIMIT_MS,
  );
});
