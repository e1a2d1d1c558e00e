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
 * - RSS of the API and the worker grows < 20 % from after the warm-up to the end;
 * - open file descriptors of both do not grow, and nothing is left on disk that nothing refers to.
 * It prints its figures as one JSON line starting with {"soak":.
 *
 * Latency, made fair on a small shared machine: classify inference runs one request at a time
 * (one ONNX session in one thread), so with 8 closed-loop clients every request waits for the 7
 * others and p99 grows about 8× by queueing alone, whatever the code does. So one designated
 * client sends the same request back to back, alone first (idle p99) and then amid the load (load
 * p99), and the 7 other clients pace themselves to use about BACKGROUND_SHARE of what one lane
 * serves when idle. The ratio then measures how much the other clients, the retraining worker
 * (one ONNX thread of its own: ORT_THREADS=1 for both processes, so each has a core of a 2-core
 * machine) and the uploads and deletes slow an ordinary request, not how long a queue is.
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
const IDLE_S = 15;
const BACKGROUND_CLIENTS = 7;
/** Share of the idle capacity of the single inference lane the 7 paced clients use together. */
const BACKGROUND_SHARE = 0.4;
/** Bounds on the work prepared: more than the run can use, so no loop runs dry. */
const RETRAIN_ROUNDS = Math.ceil((WARMUP_S + SOAK_S) / 1.5);
const UPLOADS = Math.ceil((WARMUP_S + SOAK_S) / 4);
const IMAGES_PER_ZIP = 10;
const DELETE_EVERY_MS = 3_000;
/** Every 4th upload is deleted while it trains. */
const DELETE_WHILE_TRAINING_EVERY = 4;
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_P99_RATIO = 4;
const MAX_RSS_GROWTH = 0.2;
/** A descriptor opened lazily the first time some path runs (a libuv or ONNX thread's eventfd, say). */
const FD_SLACK = 2;
const BASE_CLASSES = ['c0', 'c1'];
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

/** An uploaded classifier as the test knows it; times in performance.now() ms. */
interface Upload {
  id: string;
  name: string;
  classes: string[];
  readyAt?: number;
  deleteSent?: number;
  deleteAnswered?: number;
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
    const retrainClass = (round: number) => `r${round}`; // the class retrain `round` (1, 2, …) adds
    const retrainZips: Array<Record<string, Buffer>> = [];
    for (let round = 1; round <= RETRAIN_ROUNDS; round++) {
      retrainZips.push({ [`${retrainClass(round)}_positive_examples`]: await zipOfKind(round) });
    }
    const uploadZips: Array<{ name: string; classes: string[]; zips: Record<string, Buffer> }> = [];
    for (let u = 0; u < UPLOADS; u++) {
      const classes = [`u${u}a`, `u${u}b`];
      uploadZips.push({
        name: `upload-${u}`,
        classes,
        zips: { [`${classes[0]}_positive_examples`]: await zipOfKind(u), [`${classes[1]}_positive_examples`]: await zipOfKind(u + 2) },
      });
    }
    const queryJpeg = (await classImages('red-circles', 1, 7))[0];
    const classifyForm = (ids: string[]) =>
      prebuildForm(multipartForm({ images_file: { bytes: queryJpeg, filename: 'query.jpg' } }, { classifier_ids: ids.join(','), threshold: '0' }));

    // ---- The retrained classifier: version v has BASE_CLASSES plus r1..rv. ----
    const created = await client.createClassifier('retrained', {
      [`${BASE_CLASSES[0]}_positive_examples`]: await zipOfKind(0),
      [`${BASE_CLASSES[1]}_positive_examples`]: await zipOfKind(1),
    });
    const retrainedId = created.classifier_id;
    await client.waitUntilReady(retrainedId, 180_000, 100);
    const designatedForm = await classifyForm([retrainedId]);

    const loops: RetrainLoop[] = [];
    /** Versions of the retrained classifier that may have served a request in flight over [sent, answered]. */
    const servedVersions = (sent: number, answered: number): [number, number] => [
      loops.reduce((n, l) => n + l.rounds.filter(([, ready]) => ready <= sent).length, 0),
      loops.reduce((n, l) => n + l.updatesSent.filter((at) => at <= answered).length, 0),
    ];
    const uploads = new Map<string, Upload>();
    const counts = { classify: 0, classify_previous_version: 0, uploads: 0, deletes: 0, deleted_while_training: 0, deleted_ids_asked: 0 };
    const statusCounts: Record<string, number> = {};
    const connectionErrors: string[] = [];
    const wrongAnswers: string[] = [];
    const activityErrors: unknown[] = [];
    const wrong = (what: string) => {
      if (wrongAnswers.length < 20) wrongAnswers.push(what);
      else wrongAnswers[19] = `… and more (last: ${what})`;
    };

    /** One classify as client `who`; checks the answer against what was asked and when. Returns its latency. */
    const classifyAndCheck = async (who: { agent: http.Agent; lastVersion: number }, ids: string[], form: PrebuiltForm) => {
      const sent = performance.now();
      const outcome = await post(who.agent, classifyUrl, client.authorization, form);
      const answered = performance.now();
      counts.classify++;
      if ('error' in outcome) {
        connectionErrors.push(outcome.error);
        return outcome.ms;
      }
      statusCounts[outcome.status] = (statusCounts[outcome.status] ?? 0) + 1;
      if (outcome.status !== 200) {
        wrong(`${ids.join(',')}: status ${outcome.status}: ${outcome.text.slice(0, 300)}`);
        return outcome.ms;
      }
      const answer = JSON.parse(outcome.text) as ClassifyAnswer;
      const results = answer.images?.[0]?.classifiers ?? [];
      const notFound = new Set((answer.warnings ?? []).filter((w) => w.warning_id === 'classifier_not_found').map((w) => /'([^']+)'/.exec(w.description)?.[1]));
      for (const r of results) if (!ids.includes(r.classifier_id)) wrong(`${r.classifier_id} answered though not asked for (asked ${ids.join(',')})`);
      for (const id of ids) {
        const result = results.find((r) => r.classifier_id === id);
        const classes = result?.classes.map((c) => c.class).sort() ?? [];
        if (id === retrainedId) {
          if (!result) {
            wrong(`the retrained classifier did not answer: ${outcome.text.slice(0, 300)}`);
            continue;
          }
          const version = classes.length - BASE_CLASSES.length;
          const expected = [...BASE_CLASSES, ...Array.from({ length: Math.max(0, version) }, (_, k) => retrainClass(k + 1))].sort();
          const [oldest, newest] = servedVersions(sent, answered);
          if (JSON.stringify(classes) !== JSON.stringify(expected)) wrong(`retrained classifier answered classes ${classes.join(',')}: no version has them`);
          else if (version < oldest || version > newest) wrong(`retrained classifier answered version ${version}; versions ${oldest}..${newest} served while the request was in flight`);
          else if (version < who.lastVersion) wrong(`retrained classifier answered version ${version} after this client had seen version ${who.lastVersion}`);
          if (version < newest) counts.classify_previous_version++;
          who.lastVersion = Math.max(who.lastVersion, version);
          continue;
        }
        const upload = uploads.get(id)!;
        const goneBefore = upload.deleteAnswered !== undefined && upload.deleteAnswered < sent;
        const mayBeGone = upload.deleteSent !== undefined && upload.deleteSent < answered;
        if (result) {
          if (goneBefore) wrong(`deleted classifier ${upload.name} answered: ${JSON.stringify(result).slice(0, 200)}`);
          if (result.name !== upload.name || JSON.stringify(classes) !== JSON.stringify([...upload.classes].sort())) {
            wrong(`${upload.name} answered as ${result.name} with classes ${classes.join(',')}, not ${upload.classes.join(',')}`);
          }
        } else if (!mayBeGone || !notFound.has(id)) {
          wrong(`${upload.name} (${mayBeGone ? 'being deleted' : 'not deleted'}) did not answer: ${outcome.text.slice(0, 300)}`);
        }
      }
      return outcome.ms;
    };

    const newClient = () => ({ agent: new http.Agent({ keepAlive: true, maxSockets: 1 }), lastVersion: 0 });
    const designated = newClient();

    /** The designated client alone: back-to-back classifies of the retrained classifier. */
    const runAlone = async (seconds: number, latencies: number[]) => {
      const until = performance.now() + seconds * 1000;
      while (performance.now() < until) latencies.push(await classifyAndCheck(designated, [retrainedId], designatedForm));
    };

    // ---- Warm-up, then the designated client alone. ----
    await runAlone(3, []);
    const idleLatencies: number[] = [];
    const loadStart = round1(os.loadavg()[0]);
    await runAlone(IDLE_S, idleLatencies);
    idleLatencies.sort((a, b) => a - b);
    const idleMedianMs = percentile(idleLatencies, 50);
    // Each paced client's cycle: BACKGROUND_CLIENTS idle requests' worth of time per BACKGROUND_SHARE.
    const thinkMs = Math.max(20, (BACKGROUND_CLIENTS / BACKGROUND_SHARE - 1) * idleMedianMs);

    const background = Array.from({ length: BACKGROUND_CLIENTS }, newClient);
    const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)];

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

      const loop = new RetrainLoop(client, retrainedId, retrainZips, designatedForm);
      loops.push(loop);
      await loop.start();

      const designatedClient = async () => {
        while (running()) designatedLatencies.push(await classifyAndCheck(designated, [retrainedId], designatedForm));
      };
      const pacedClient = async (who: ReturnType<typeof newClient>) => {
        while (running()) {
          await pause(thinkMs * (0.5 + Math.random()));
          if (!running()) break;
          const live = [...uploads.values()].filter((u) => u.readyAt !== undefined && u.deleteSent === undefined);
          const deleted = [...uploads.values()].filter((u) => u.deleteAnswered !== undefined);
          const ids = new Set([retrainedId]);
          for (let n = Math.floor(Math.random() * 3); n > 0 && live.length > 0; n--) ids.add(pick(live).id);
          if (deleted.length > 0 && Math.random() < 0.25) {
            ids.add(pick(deleted).id);
            counts.deleted_ids_asked++;
          }
          await classifyAndCheck(who, [...ids], await classifyForm([...ids]));
        }
      };
      const uploader = async () => {
        while (running() && uploadZips.length > 0) {
          const next = uploadZips.shift()!;
          const view = await client.createClassifier(next.name, next.zips);
          const upload: Upload = { id: view.classifier_id, name: next.name, classes: next.classes };
          uploads.set(upload.id, upload);
          counts.uploads++;
          if (counts.uploads % DELETE_WHILE_TRAINING_EVERY === 0) {
            upload.deleteSent = performance.now();
            await client.deleteClassifier(upload.id);
            upload.deleteAnswered = performance.now();
            counts.deleted_while_training++;
            continue;
          }
          await client.waitUntilReady(upload.id, 180_000, 100);
          upload.readyAt = performance.now();
        }
      };
      const deleter = async () => {
        for (;;) {
          await pause(DELETE_EVERY_MS);
          if (!running()) break;
          const live = [...uploads.values()].filter((u) => u.readyAt !== undefined && u.deleteSent === undefined);
          if (live.length < 2) continue; // keep one for the clients to ask for
          const victim = live[0];
          victim.deleteSent = performance.now();
          await client.deleteClassifier(victim.id);
          victim.deleteAnswered = performance.now();
          counts.deletes++;
          const after = await client.getClassifier(victim.id).then(
            (view) => `status ${view.status}`,
            (error: unknown) => (error instanceof ServiceCallError ? error.status : error),
          );
          if (after !== 404) wrong(`GET of deleted ${victim.name}: ${String(after)}`);
        }
      };

      await Promise.all([
        guard(designatedClient()),
        ...background.map((who) => guard(pacedClient(who))),
        guard(uploader()),
        guard(deleter()),
      ]);
      await guard(loop.stop());
    };

    // ---- Warm-up under the full load, a quiet point, the soak, a quiet point. ----
    await runPhase(WARMUP_S, []);
    const quiet = async () => ({ api: await quietSnapshot(svc.pid, apiPort), worker: await quietSnapshot(workerPid) });
    const before = await quiet();
    const cpuBefore = { api: cpuSeconds(svc.pid), worker: cpuSeconds(workerPid) };
    const retrainsBefore = loops.reduce((n, l) => n + l.rounds.length, 0);
    const countsBefore = { ...counts };
    const loadLatencies: number[] = [];
    const soakStarted = performance.now();
    await runPhase(SOAK_S, loadLatencies);
    const soakSecondsRun = (performance.now() - soakStarted) / 1000;
    const cpuAfter = { api: cpuSeconds(svc.pid), worker: cpuSeconds(workerPid) };
    const after = await quiet();
    loadLatencies.sort((a, b) => a - b);

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
    const idleP99 = percentile(idleLatencies, 99);
    const loadP99 = percentile(loadLatencies, 99);
    const figures = {
      soak: {
        soak_s: round1(soakSecondsRun),
        warmup_s: WARMUP_S,
        cores: os.cpus().length,
        loadavg_1m: { idle_start: loadStart, end: round1(os.loadavg()[0]) },
        designated_client: {
          idle: { requests: idleLatencies.length, p50_ms: round1(idleMedianMs), p99_ms: round1(idleP99) },
          load: { requests: loadLatencies.length, p50_ms: round1(percentile(loadLatencies, 50)), p99_ms: round1(loadP99) },
          p99_ratio: Math.round((loadP99 / idleP99) * 100) / 100,
        },
        paced_clients: { clients: BACKGROUND_CLIENTS, think_ms: Math.round(thinkMs), share_of_idle_capacity: BACKGROUND_SHARE },
        soak_counts: {
          classify: counts.classify - countsBefore.classify,
          retrains: loops.reduce((n, l) => n + l.rounds.length, 0) - retrainsBefore,
          uploads: counts.uploads - countsBefore.uploads,
          deletes: counts.deletes - countsBefore.deletes + counts.deleted_while_training - countsBefore.deleted_while_training,
        },
        total_counts: { ...counts, retrains: loops.reduce((n, l) => n + l.rounds.length, 0) },
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
    expect(wrongAnswers).toEqual([]);
    expect(Object.keys(statusCounts)).toEqual(['200']);
    // The load phases did what they claim: classifies, retrains, uploads and deletes all ran.
    expect(figures.soak.soak_counts).toEqual({
      classify: expect.any(Number),
      retrains: expect.any(Number),
      uploads: expect.any(Number),
      deletes: expect.any(Number),
    });
    for (const n of Object.values(figures.soak.soak_counts)) expect(n).toBeGreaterThan(0);
    // The worker never died (a restart would have a new pid).
    expect(parentPid(workerPid)).toBe(svc.pid);
    expect(loadP99 / idleP99).toBeLessThanOrEqual(MAX_P99_RATIO);
    expect(figures.soak.rss_growth.api).toBeLessThan(MAX_RSS_GROWTH);
    expect(figures.soak.rss_growth.worker).toBeLessThan(MAX_RSS_GROWTH);
    expect(after.api.fds).toBeLessThanOrEqual(before.api.fds + FD_SLACK);
    expect(after.worker.fds).toBeLessThanOrEqual(before.worker.fds + FD_SLACK);
    expect(leftOnDisk).toEqual([]);
  }, 900_000);
});
