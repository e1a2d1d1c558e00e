/**
 * Load and soak: the real service (API process + training worker process, real Redis on
 * 127.0.0.1, temp data dir) under 8 classify clients, a continuous retrain loop, uploads of new
 * classifiers and deletes, for SOAK_S seconds (default 60) after a warm-up of the same load.
 *
 * What it asserts:
 * - no 5xx and no connection error on any request;
 * - every classify answer comes from the classifiers asked for, in the right version: the retrained
 *   classifier gains one known class per retrain, so with threshold=0 its class set names the
 *   version, which must be one served while the request was in flight (the current one or,
 *   during a retrain, the previous one; never older than one this client already saw); an
 *   uploaded classifier answers with exactly its own classes, and never once its DELETE answered;
 * - p99 latency of one designated client under load ≤ 4 × its p99 alone (see below);
 * - RSS of the API and the worker grows < 20 % from after the warm-up to the end (the retrained
 *   classifier is replaced by a fresh one, and deleted, every RETRAINS_PER_CLASSIFIER retrains, so
 *   the data in play stays bounded and growth means a leak, not more data);
 * - open file descriptors of both do not grow, and nothing is left on disk that nothing refers to.
 * It prints its figures as one JSON line starting with {"soak":.
 *
 * Latency, made fair on a small shared machine: classify inference runs one request at a time
 * (one ONNX session in one thread), so with 8 closed-loop clients every request waits for the 7
 * others and p99 grows about 8× by queueing alone, whatever the code does. So one designated
 * client sends the same request back to back, alone (idle p99) and amid the load (load p99), and
 * the 7 other clients pace themselves to use about BACKGROUND_SHARE of what the lane serves when
 * idle. The ratio then measures how much the other clients, the retraining worker (one ONNX
 * thread of its own: ORT_THREADS=1 for both processes; it runs 10 steps nicer than the API) and
 * the uploads and deletes slow an ordinary request, not how long a queue is. Other work on
 * the machine drifts over minutes, so the idle p99 is the mean of a window just before the load
 * and one just after it.
 *
 * Memory and descriptors are compared at two quiet points (every activity stopped, the worker
 * idle): after the warm-up and at the end. Descriptors do not count clients' TCP connections to
 * the API, which come and go with the load generator; everything else (files, Redis connections,
 * pipes, listening sockets) must come back to where it was, give or take FD_SLACK.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { classImages, type ClassImageKind } from '../../fixtures/images';
import { cpuSeconds, openFileDescriptors, residentMb, startBenchService, type BenchService } from '../../bench/lib/bench-service';
import { percentile } from '../../bench/lib/load-generator';
import { RetrainLoop } from '../../bench/lib/retrain-loop';
import { multipartForm, prebuildForm, ServiceCallError, WatsonClient, type PrebuiltForm } from '../../bench/lib/watson-client';
import { waitFor } from '../support/service-harness';
import { classZip } from '../support/example-zips';
import { tmpEntries, unreferencedHeadFiles, unreferencedImageFiles } from './support/data-dir';

const SOAK_S = soakSeconds();
const WARMUP_S = 15;
const IDLE_S = 20;
const BACKGROUND_CLIENTS = 7;
/** Share of the idle capacity of the single inference lane the 7 paced clients use together. */
const BACKGROUND_SHARE = 0.25;
/** Bounds on the work prepared: more than the run can use, so no loop runs dry. */
const RETRAINS_PER_CLASSIFIER = 5;
/** A retrained classifier is replaced by a fresh one after RETRAINS_PER_CLASSIFIER retrains, so memory can settle. */
const RETRAINED_CLASSIFIERS = Math.ceil((WARMUP_S + SOAK_S) / 0.4 / RETRAINS_PER_CLASSIFIER) + 1;
/**
 * Uploads start at most every UPLOAD_EVERY_MS, and less often when embedding their images (in the
 * API, on the lane classify uses) would take more than UPLOAD_SHARE of its idle capacity. Each
 * waits for the previous one to be ready.
 */
const UPLOAD_EVERY_MS = 3_000;
const UPLOAD_SHARE = 0.2;
const UPLOADS = Math.ceil(((WARMUP_S + SOAK_S) * 1000) / UPLOAD_EVERY_MS) + 2;
const IMAGES_PER_ZIP = 10;
const DELETE_EVERY_MS = 3_000;
/** Every 4th upload is deleted while it trains. */
const DELETE_WHILE_TRAINING_EVERY = 4;
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_P99_RATIO = 4;
const MAX_RSS_GROWTH = 0.2;
/** A descriptor opened lazily the first time some path runs (a libuv or ONNX thread's eventfd, say). */
const FD_SLACK = 2;
const KINDS: ClassImageKind[] = ['red-circles', 'blue-squares', 'green-stripes', 'yellow-triangles', 'noise'];

function soakSeconds(): number {
  const value = Number(process.env.SOAK_S ?? '60');
  if (!Number.isFinite(value) || value < 10 || value > 1800) throw new Error(`SOAK_S must be 10–1800 seconds, not '${process.env.SOAK_S}'`);
  return value;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round1 = (value: number) => Math.round(value * 10) / 10;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

interface ClassifyAnswer {
  images?: Array<{ classifiers?: Array<{ classifier_id: string; name: string; classes: Array<{ class: string; score: number }> }> }>;
  warnings?: Array<{ warning_id: string; description: string }>;
}

type Outcome = { status: number; text: string; ms: number } | { error: string; ms: number };

/** POST of a prebuilt form on the client's own keep-alive connection; latency in ms, measured here. */
function post(agent: http.Agent, url: string, authorization: string, form: PrebuiltForm): Promise<Outcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.request(url, {
      method: 'POST',
      agent,
      timeout: REQUEST_TIMEOUT_MS,
      headers: { Authorization: authorization, 'Content-Type': form.contentType, 'Content-Length': String(form.body.length) },
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString(), ms: performance.now() - started }));
      res.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message, ms: performance.now() - started }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message, ms: performance.now() - started }));
    req.end(form.body);
  });
}

/** A classifier as the test knows it; times in performance.now() ms. */
interface Tracked {
  id: string;
  name: string;
  /** The classes of each version it can have, oldest first (an upload has one). */
  versions: string[][];
  /** The retrain loops run on it; the versions served so far follow from their rounds. */
  loops: RetrainLoop[];
  /** A retrained classifier's retrains still to run (undefined: an upload). */
  retrains?: Array<Record<string, Buffer>>;
  /** A retrained classifier's classify request, the same bytes every time. */
  form?: PrebuiltForm;
  readyAt?: number;
  deleteSent?: number;
  deleteAnswered?: number;
}

interface Client {
  agent: http.Agent;
  /** The newest version of each classifier this client has had an answer from. */
  versionSeen: Map<string, number>;
}

/** Resident memory (median) and descriptors (fewest) of a process over a second, while nothing runs. */
async function quietSnapshot(pid: number, serverPort?: number): Promise<{ rss_mb: number; fds: number }> {
  const rss: number[] = [];
  const fds: number[] = [];
  for (let i = 0; i < 5; i++) {
    rss.push(residentMb(pid) ?? NaN);
    fds.push(openFileDescriptors(pid, serverPort)?.open ?? NaN);
    await sleep(250);
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

  it('answers every request from the right classifier and version, without 5xx, latency blow-up or leaks', async () => {
    service = await startBenchService({ ORT_THREADS: '1' });
    const svc = service;
    const apiPort = Number(new URL(svc.url).port);
    const workerPid = svc.workerPid!;
    expect(workerPid).toBeDefined();
    const client = new WatsonClient(svc.url, svc.apiKey);
    const classifyUrl = `${svc.url}${client.classifyPath()}`;

    // ---- The data: every zip made up front, each with images no other zip has. ----
    let seed = 1000;
    const zipOfKind = (k: number) => classZip(KINDS[k % KINDS.length], IMAGES_PER_ZIP, seed++);
    const queryJpeg = (await classImages('red-circles', 1, 7))[0];
    const classifyForm = (ids: string[]) =>
      prebuildForm(multipartForm({ images_file: { bytes: queryJpeg, filename: 'query.jpg' } }, { classifier_ids: ids.join(','), threshold: '0' }));
    // Retrained classifier g: version 0 has g<g>c0 and g<g>c1, retrain k adds g<g>r<k>.
    const retrainPlans: Array<{ name: string; base: Record<string, Buffer>; rounds: Array<Record<string, Buffer>>; versions: string[][] }> = [];
    for (let g = 0; g < RETRAINED_CLASSIFIERS; g++) {
      const versions = [[`g${g}c0`, `g${g}c1`]];
      const rounds: Array<Record<string, Buffer>> = [];
      for (let k = 1; k <= RETRAINS_PER_CLASSIFIER; k++) {
        versions.push([...versions[k - 1], `g${g}r${k}`]);
        rounds.push({ [`g${g}r${k}_positive_examples`]: await zipOfKind(k) });
      }
      const base = { [`g${g}c0_positive_examples`]: await zipOfKind(g), [`g${g}c1_positive_examples`]: await zipOfKind(g + 1) };
      retrainPlans.push({ name: `retrained-${g}`, base, rounds, versions });
    }
    const uploadPlans: Array<{ name: string; classes: string[]; zips: Record<string, Buffer> }> = [];
    for (let u = 0; u < UPLOADS; u++) {
      const classes = [`u${u}a`, `u${u}b`];
      const zips = { [`${classes[0]}_positive_examples`]: await zipOfKind(u), [`${classes[1]}_positive_examples`]: await zipOfKind(u + 2) };
      uploadPlans.push({ name: `upload-${u}`, classes, zips });
    }

    const tracked = new Map<string, Tracked>();
    const counts = { classify: 0, classify_previous_version: 0, uploads: 0, deletes: 0, deleted_while_training: 0, retrained_replaced: 0, deleted_ids_asked: 0 };
    const statusCounts: Record<string, number> = {};
    const connectionErrors: string[] = [];
    /** What was wrong, each kind once, with how often. */
    const wrongAnswers = new Map<string, number>();
    const activityErrors: unknown[] = [];
    const wrong = (what: string) => wrongAnswers.set(what, (wrongAnswers.get(what) ?? 0) + 1);

    /** Creates the next retrained classifier from its plan and waits until it is ready. */
    const createRetrained = async (): Promise<Tracked> => {
      const plan = retrainPlans.shift()!;
      const view = await client.createClassifier(plan.name, plan.base);
      const t: Tracked = { id: view.classifier_id, name: plan.name, versions: plan.versions, loops: [], retrains: plan.rounds };
      tracked.set(t.id, t);
      await client.waitUntilReady(t.id, 180_000, 100);
      t.readyAt = performance.now();
      t.form = await classifyForm([t.id]);
      return t;
    };
    /** The retrained classifier the clients ask for; replaced by a fresh one after RETRAINS_PER_CLASSIFIER retrains. */
    let current = await createRetrained();

    /** One classify as client `who`; checks the answer against what was asked and when. Returns its latency. */
    const classifyAndCheck = async (who: Client, ids: string[], form: PrebuiltForm) => {
      const sent = performance.now();
      const outcome = await post(who.agent, classifyUrl, client.authorization, form);
      const answered = performance.now();
      counts.classify++;
      if ('error' in outcome) {
        connectionErrors.push(outcome.error);
        return outcome.ms;
      }
      statusCounts[outcome.status] = (statusCounts[outcome.status] ?? 0) + 1;
      const asked = ids.map((id) => tracked.get(id)!);
      const mayBeGone = (t: Tracked) => t.deleteSent !== undefined && t.deleteSent < answered;
      // 400 "no valid classifier_ids" is right only when everything asked for was deleted.
      if (outcome.status !== 200 && !(outcome.status === 400 && asked.every(mayBeGone))) {
        wrong(`${asked.map((t) => t.name).join(',')}: status ${outcome.status}: ${outcome.text.slice(0, 300)}`);
        return outcome.ms;
      }
      const answer = JSON.parse(outcome.text) as ClassifyAnswer;
      const results = answer.images?.[0]?.classifiers ?? [];
      const notFound = new Set(
        (answer.warnings ?? []).filter((w) => w.warning_id === 'classifier_not_found').map((w) => /'([^']+)'/.exec(w.description)?.[1]),
      );
      for (const r of results) if (!ids.includes(r.classifier_id)) wrong(`${r.classifier_id} answered though not asked for (asked ${ids.join(',')})`);
      for (const t of asked) {
        const result = results.find((r) => r.classifier_id === t.id);
        if (!result) {
          if (!mayBeGone(t) || !notFound.has(t.id)) wrong(`${t.name} (${mayBeGone(t) ? 'being deleted' : 'not deleted'}) did not answer: ${outcome.text.slice(0, 300)}`);
          continue;
        }
        if (t.deleteAnswered !== undefined && t.deleteAnswered < sent) wrong(`deleted classifier ${t.name} answered: ${JSON.stringify(result).slice(0, 200)}`);
        const classes = JSON.stringify(result.classes.map((c) => c.class).sort());
        const version = t.versions.findIndex((v) => JSON.stringify([...v].sort()) === classes);
        // Versions that may have served it while it was in flight: the current one, and the next once its retrain was sent.
        const oldest = t.loops.reduce((n, l) => n + l.rounds.filter(([, ready]) => ready <= sent).length, 0);
        const newest = t.loops.reduce((n, l) => n + l.updatesSent.filter((at) => at <= answered).length, 0);
        const seen = who.versionSeen.get(t.id) ?? 0;
        if (result.name !== t.name || version < 0) wrong(`${t.name} answered as ${result.name} with classes ${classes}: no version of ${t.name} has them`);
        else if (version < oldest || version > newest) wrong(`${t.name} answered version ${version}; versions ${oldest}..${newest} served while the request was in flight`);
        else if (version < seen) wrong(`${t.name} answered version ${version} after this client had seen version ${seen}`);
        if (version >= 0 && version < newest) counts.classify_previous_version++;
        who.versionSeen.set(t.id, Math.max(seen, version));
      }
      return outcome.ms;
    };

    const newClient = (): Client => ({ agent: new http.Agent({ keepAlive: true, maxSockets: 1 }), versionSeen: new Map() });
    const designated = newClient();
    /** One classify of the current retrained classifier as the designated client. */
    const designatedClassify = () => {
      const t = current;
      return classifyAndCheck(designated, [t.id], t.form!);
    };

    /** The designated client alone: back-to-back classifies of the retrained classifier. */
    const runAlone = async (seconds: number, latencies: number[]) => {
      const until = performance.now() + seconds * 1000;
      while (performance.now() < until) latencies.push(await designatedClassify());
    };

    // ---- Warm-up, then the designated client alone. ----
    await runAlone(3, []);
    const idleBefore: number[] = [];
    const loadStart = round1(os.loadavg()[0]);
    await runAlone(IDLE_S, idleBefore);
    idleBefore.sort((a, b) => a - b);
    const idleMedianMs = percentile(idleBefore, 50);
    // Each paced client's cycle: BACKGROUND_CLIENTS idle requests' worth of time per BACKGROUND_SHARE.
    const thinkMs = Math.max(20, (BACKGROUND_CLIENTS / BACKGROUND_SHARE - 1) * idleMedianMs);
    const uploadEveryMs = Math.max(UPLOAD_EVERY_MS, (2 * IMAGES_PER_ZIP * idleMedianMs) / UPLOAD_SHARE);

    const background = Array.from({ length: BACKGROUND_CLIENTS }, newClient);
    const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)];
    const isUpload = (t: Tracked) => t.retrains === undefined;
    const deleteTracked = async (t: Tracked) => {
      t.deleteSent = performance.now();
      await client.deleteClassifier(t.id);
      t.deleteAnswered = performance.now();
      const after = await client.getClassifier(t.id).then(
        (view) => `status ${view.status}`,
        (error: unknown) => (error instanceof ServiceCallError ? error.status : error),
      );
      if (after !== 404) wrong(`GET of deleted ${t.name}: ${String(after)}`);
    };

    /** Everything at once for `seconds`; resolves once every activity has stopped and the worker is idle. */
    const runPhase = async (seconds: number, designatedLatencies: number[]) => {
      const until = performance.now() + seconds * 1000;
      let failed = false;
      const running = () => !failed && performance.now() < until;
      const guard = (activity: Promise<unknown>) =>
        activity.catch((error) => {
          activityErrors.push(error);
          failed = true;
        });
      const pause = async (ms: number) => {
        const end = performance.now() + ms;
        while (running() && performance.now() < end) await sleep(Math.min(100, end - performance.now()));
      };

      const designatedClient = async () => {
        while (running()) designatedLatencies.push(await designatedClassify());
      };
      const pacedClient = async (who: Client) => {
        while (running()) {
          await pause(thinkMs * (0.5 + Math.random()));
          if (!running()) break;
          const all = [...tracked.values()];
          const live = all.filter((t) => isUpload(t) && t.readyAt !== undefined && t.deleteSent === undefined);
          const deleted = all.filter((t) => t.deleteAnswered !== undefined);
          const ids = new Set([current.id]);
          for (let n = Math.floor(Math.random() * 3); n > 0 && live.length > 0; n--) ids.add(pick(live).id);
          if (deleted.length > 0 && Math.random() < 0.25) {
            ids.add(pick(deleted).id);
            counts.deleted_ids_asked++;
          }
          await classifyAndCheck(who, [...ids], await classifyForm([...ids]));
        }
      };
      const retrainer = async () => {
        while (running()) {
          if (current.retrains!.length === 0) {
            if (retrainPlans.length === 0) break; // bounded: every prepared retrain is done
            const old = current;
            current = await createRetrained();
            await deleteTracked(old);
            counts.retrained_replaced++;
            continue;
          }
          const loop = new RetrainLoop(client, current.id, current.retrains!, current.form!);
          current.loops.push(loop);
          await loop.start();
          while (running() && loop.roundsLeft > 0) await pause(100);
          await loop.stop();
        }
      };
      const uploader = async () => {
        while (running() && uploadPlans.length > 0) {
          const started = performance.now();
          const plan = uploadPlans.shift()!;
          const view = await client.createClassifier(plan.name, plan.zips);
          const upload: Tracked = { id: view.classifier_id, name: plan.name, versions: [plan.classes], loops: [] };
          tracked.set(upload.id, upload);
          counts.uploads++;
          if (counts.uploads % DELETE_WHILE_TRAINING_EVERY === 0) {
            await deleteTracked(upload);
            counts.deleted_while_training++;
            await pause(started + uploadEveryMs - performance.now());
            continue;
          }
          await client.waitUntilReady(upload.id, 180_000, 100);
          upload.readyAt = performance.now();
          await pause(started + uploadEveryMs - performance.now());
        }
      };
      const deleter = async () => {
        for (;;) {
          await pause(DELETE_EVERY_MS);
          if (!running()) break;
          const live = [...tracked.values()].filter((t) => isUpload(t) && t.readyAt !== undefined && t.deleteSent === undefined);
          if (live.length < 2) continue; // keep one for the clients to ask for
          // Alternately the oldest and the newest: the newest often holds the highest version id.
          await deleteTracked(counts.deletes % 2 === 0 ? live[0] : live[live.length - 1]);
          counts.deletes++;
        }
      };

      await Promise.all([
        guard(designatedClient()),
        ...background.map((who) => guard(pacedClient(who))),
        guard(retrainer()),
        guard(uploader()),
        guard(deleter()),
      ]);
    };

    // ---- Warm-up under the full load, a quiet point, the soak, a quiet point. ----
    await runPhase(WARMUP_S, []);
    const quiet = async () => ({ api: await quietSnapshot(svc.pid, apiPort), worker: await quietSnapshot(workerPid) });
    const before = await quiet();
    const cpuBefore = { api: cpuSeconds(svc.pid), worker: cpuSeconds(workerPid) };
    const retrains = () => [...tracked.values()].reduce((n, t) => n + t.loops.reduce((m, l) => m + l.rounds.length, 0), 0);
    const retrainsBefore = retrains();
    const countsBefore = { ...counts };
    const loadLatencies: number[] = [];
    const soakStarted = performance.now();
    await runPhase(SOAK_S, loadLatencies);
    const soakSecondsRun = (performance.now() - soakStarted) / 1000;
    const cpuAfter = { api: cpuSeconds(svc.pid), worker: cpuSeconds(workerPid) };
    const after = await quiet();
    loadLatencies.sort((a, b) => a - b);
    const idleAfter: number[] = [];
    await runAlone(IDLE_S, idleAfter);
    idleAfter.sort((a, b) => a - b);

    // Disk: nothing left behind that nothing refers to (a deleted classifier's last run may still be finishing).
    const leftOnDisk = await waitFor(
      'the data dir to hold only referenced files',
      async () => {
        const left = [...tmpEntries(svc.dataDir), ...unreferencedImageFiles(svc.dataDir), ...unreferencedHeadFiles(svc.dataDir)];
        return left.length === 0 ? left : undefined;
      },
      30_000,
      500,
    ).catch(() => [...tmpEntries(svc.dataDir), ...unreferencedImageFiles(svc.dataDir), ...unreferencedHeadFiles(svc.dataDir)]);

    const growth = (start: number, end: number) => Math.round((end / start - 1) * 1000) / 1000;
    // The machine's other load drifts over minutes: the windows before and after bracket the soak.
    const idleP99 = (percentile(idleBefore, 99) + percentile(idleAfter, 99)) / 2;
    const loadP99 = percentile(loadLatencies, 99);
    const figures = {
      soak: {
        soak_s: round1(soakSecondsRun),
        warmup_s: WARMUP_S,
        cores: os.cpus().length,
        loadavg_1m: { idle_start: loadStart, end: round1(os.loadavg()[0]) },
        designated_client: {
          idle_before: { requests: idleBefore.length, p50_ms: round1(idleMedianMs), p99_ms: round1(percentile(idleBefore, 99)) },
          idle_after: { requests: idleAfter.length, p50_ms: round1(percentile(idleAfter, 50)), p99_ms: round1(percentile(idleAfter, 99)) },
          idle_p99_ms: round1(idleP99),
          load: { requests: loadLatencies.length, p50_ms: round1(percentile(loadLatencies, 50)), p99_ms: round1(loadP99) },
          p99_ratio: Math.round((loadP99 / idleP99) * 100) / 100,
        },
        paced_clients: { clients: BACKGROUND_CLIENTS, think_ms: Math.round(thinkMs), share_of_idle_capacity: BACKGROUND_SHARE },
        uploads_every_ms: Math.round(uploadEveryMs),
        soak_counts: {
          classify: counts.classify - countsBefore.classify,
          retrains: retrains() - retrainsBefore,
          uploads: counts.uploads - countsBefore.uploads,
          deletes: (['deletes', 'deleted_while_training', 'retrained_replaced'] as const).reduce((n, k) => n + counts[k] - countsBefore[k], 0),
        },
        total_counts: { ...counts, retrains: retrains() },
        // Prepared work left over: 0 would mean a loop ran dry before the end.
        unused_plans: { retrained_classifiers: retrainPlans.length, uploads: uploadPlans.length },
        status_codes: statusCounts,
        connection_errors: connectionErrors.length,
        rss_mb: { api: [before.api.rss_mb, after.api.rss_mb], worker: [before.worker.rss_mb, after.worker.rss_mb] },
        rss_growth: { api: growth(before.api.rss_mb, after.api.rss_mb), worker: growth(before.worker.rss_mb, after.worker.rss_mb) },
        fds: { api: [before.api.fds, after.api.fds], worker: [before.worker.fds, after.worker.fds] },
        cpu_s_during_soak: {
          api: cpuAfter.api !== undefined && cpuBefore.api !== undefined ? round1(cpuAfter.api - cpuBefore.api) : undefined,
          worker: cpuAfter.worker !== undefined && cpuBefore.worker !== undefined ? round1(cpuAfter.worker - cpuBefore.worker) : undefined,
        },
      },
    };
    process.stdout.write(`${JSON.stringify(figures)}\n`);

    expect(activityErrors.map(String)).toEqual([]);
    expect(connectionErrors).toEqual([]);
    expect([...wrongAnswers].slice(0, 20).map(([what, times]) => `${times}× ${what}`)).toEqual([]);
    expect(Object.keys(statusCounts).filter((status) => Number(status) >= 500)).toEqual([]);
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
  }, (WARMUP_S + SOAK_S + 2 * IDLE_S + 300) * 1000);
});
