/**
 * The soak's load on the real service (test/faults/soak.test.ts and bench:soak): 8 classify clients,
 * a continuous retrain loop, uploads of new classifiers and deletes, every answer checked.
 *
 * - One retrained classifier at a time: version 0 has g<g>c0 and g<g>c1, retrain k adds g<g>r<k>, so
 *   with threshold=0 an answer's class set names its version. After RETRAINS_PER_CLASSIFIER retrains
 *   it is replaced by a fresh one and deleted, so the data in play stays bounded however long the run.
 * - An answer must come from a version served while the request was in flight (the current one or,
 *   during a retrain, the previous one; never older than one this client already saw); an uploaded
 *   classifier answers with exactly its own classes, and never once its DELETE answered.
 * - Zips are made when an activity needs them (each with images no other zip has), so the set-up does
 *   not grow with the length of the run.
 *
 * Latency, made fair on a small shared machine: classify inference runs one request at a time (one
 * ONNX session in one thread), so with 8 closed-loop clients every request would wait for the 7
 * others and p99 grow about 8× by queueing alone. So one designated client sends the same request
 * back to back, alone (idle) and amid the load, and the 7 other clients pace themselves to use
 * about BACKGROUND_SHARE of what the lane serves when idle (calibrate() sets the pace).
 */
import http from 'node:http';
import { classImages, type ClassImageKind } from '../../fixtures/images';
import { classZip } from '../../test/support/example-zips';
import { RetrainLoop } from './retrain-loop';
import { multipartForm, prebuildForm, ServiceCallError, WatsonClient, type PrebuiltForm } from './watson-client';

const BACKGROUND_CLIENTS = 7;
/** Share of the idle capacity of the single inference lane the 7 paced clients use together. */
const BACKGROUND_SHARE = 0.25;
const RETRAINS_PER_CLASSIFIER = 5;
/**
 * Uploads start at most every UPLOAD_EVERY_MS, and less often when embedding their images (in the
 * API, on the lane classify uses) would take more than UPLOAD_SHARE of its idle capacity. Each
 * waits for the previous one to be ready.
 */
const UPLOAD_EVERY_MS = 3_000;
const UPLOAD_SHARE = 0.2;
const IMAGES_PER_ZIP = 10;
const DELETE_EVERY_MS = 3_000;
/** Every 4th upload is deleted while it trains. */
const DELETE_WHILE_TRAINING_EVERY = 4;
const REQUEST_TIMEOUT_MS = 30_000;
const READY_TIMEOUT_MS = 180_000;
const KINDS: ClassImageKind[] = ['red-circles', 'blue-squares', 'green-stripes', 'yellow-triangles', 'noise'];

/**
 * The longest one step of an activity can take (a classifier becoming ready, the longest wait there
 * is): a phase ends at most this long after its time is up, since each activity finishes its step.
 */
export const SOAK_STEP_LIMIT_MS = READY_TIMEOUT_MS + REQUEST_TIMEOUT_MS;

interface ClassifyAnswer {
  images?: Array<{
    classifiers?: Array<{ classifier_id: string; name: string; classes: Array<{ class: string; score: number }> }>;
  }>;
  warnings?: Array<{ warning_id: string; description: string }>;
}

type Outcome = { status: number; text: string; ms: number } | { error: string; ms: number };

/** A classifier as the load knows it; times in performance.now() ms. */
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
  /** When this client's connection last finished a request (performance.now() ms): how long it then sat idle. */
  idleSince?: number;
  /** The newest version of each classifier this client has had an answer from. */
  versionSeen: Map<string, number>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class SoakLoad {
  readonly counts = {
    classify: 0,
    classify_previous_version: 0,
    uploads: 0,
    deletes: 0,
    deleted_while_training: 0,
    retrained_replaced: 0,
    deleted_ids_asked: 0,
  };
  readonly statusCounts: Record<string, number> = {};
  /** Requests that got no HTTP answer: the error code, and whether it came on a reused keep-alive connection idle for how long. */
  readonly connectionErrors: string[] = [];
  /** What was wrong, each kind once, with how often. */
  readonly wrongAnswers = new Map<string, number>();
  readonly activityErrors: unknown[] = [];
  readonly backgroundClients = BACKGROUND_CLIENTS;
  readonly backgroundShare = BACKGROUND_SHARE;
  /** Set by calibrate(): each paced client's mean pause between requests, and the upload period. */
  thinkMs = 1000;
  uploadEveryMs = UPLOAD_EVERY_MS;
  /** Zips made so far (each IMAGES_PER_ZIP new images). */
  zipsMade = 0;

  private readonly tracked = new Map<string, Tracked>();
  private readonly classifyUrl: string;
  private readonly designated = this.newClient();
  private readonly background = Array.from({ length: BACKGROUND_CLIENTS }, () => this.newClient());
  private seed = 1000;
  private retrainedMade = 0;
  private uploadsMade = 0;
  private current!: Tracked;
  private queryJpeg!: Buffer;

  private constructor(private readonly client: WatsonClient) {
    this.classifyUrl = `${client.baseUrl}${client.classifyPath()}`;
  }

  /** Creates the first retrained classifier and waits until it is ready. */
  static async start(baseUrl: string, apiKey: string): Promise<SoakLoad> {
    const load = new SoakLoad(new WatsonClient(baseUrl, apiKey));
    load.queryJpeg = (await classImages('red-circles', 1, 7))[0];
    load.current = await load.createRetrained();
    return load;
  }

  /** Retrains run so far, over every classifier. */
  retrains(): number {
    return [...this.tracked.values()].reduce((n, t) => n + t.loops.reduce((m, l) => m + l.rounds.length, 0), 0);
  }

  /** The designated client alone: back-to-back classifies of the retrained classifier, latencies appended. */
  async runAlone(seconds: number, latencies: number[]): Promise<void> {
    const until = performance.now() + seconds * 1000;
    while (performance.now() < until) latencies.push(await this.designatedClassify());
  }

  /** Paces the background clients and uploads from the designated client's idle median latency. */
  calibrate(idleMedianMs: number): void {
    // Each paced client's cycle: BACKGROUND_CLIENTS idle requests' worth of time per BACKGROUND_SHARE.
    this.thinkMs = Math.max(20, (BACKGROUND_CLIENTS / BACKGROUND_SHARE - 1) * idleMedianMs);
    this.uploadEveryMs = Math.max(UPLOAD_EVERY_MS, (2 * IMAGES_PER_ZIP * idleMedianMs) / UPLOAD_SHARE);
  }

  /**
   * Everything at once for `seconds` (the designated client's latencies appended to
   * `designatedLatencies`); resolves once every activity has finished its step and stopped.
   */
  async runPhase(seconds: number, designatedLatencies: number[]): Promise<void> {
    const until = performance.now() + seconds * 1000;
    let failed = false;
    const running = () => !failed && performance.now() < until;
    const guard = (activity: Promise<unknown>) =>
      activity.catch((error) => {
        this.activityErrors.push(error);
        failed = true;
      });
    const pause = async (ms: number) => {
      const end = performance.now() + ms;
      while (running() && performance.now() < end) await sleep(Math.min(100, end - performance.now()));
    };
    const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)];
    const isUpload = (t: Tracked) => t.retrains === undefined;
    const liveUploads = () =>
      [...this.tracked.values()].filter((t) => isUpload(t) && t.readyAt !== undefined && t.deleteSent === undefined);

    const designatedClient = async () => {
      while (running()) designatedLatencies.push(await this.designatedClassify());
    };
    const pacedClient = async (who: Client) => {
      while (running()) {
        await pause(this.thinkMs * (0.5 + Math.random()));
        if (!running()) break;
        const live = liveUploads();
        const deleted = [...this.tracked.values()].filter((t) => t.deleteAnswered !== undefined);
        const ids = new Set([this.current.id]);
        for (let n = Math.floor(Math.random() * 3); n > 0 && live.length > 0; n--) ids.add(pick(live).id);
        if (deleted.length > 0 && Math.random() < 0.25) {
          ids.add(pick(deleted).id);
          this.counts.deleted_ids_asked++;
        }
        await this.classifyAndCheck(who, [...ids], await this.classifyForm([...ids]));
      }
    };
    const retrainer = async () => {
      while (running()) {
        if (this.current.retrains!.length === 0) {
          const old = this.current;
          this.current = await this.createRetrained();
          await this.deleteTracked(old);
          this.counts.retrained_replaced++;
          continue;
        }
        const loop = new RetrainLoop(this.client, this.current.id, this.current.retrains!, this.current.form!);
        this.current.loops.push(loop);
        await loop.start();
        while (running() && loop.roundsLeft > 0) await pause(100);
        await loop.stop();
      }
    };
    const uploader = async () => {
      while (running()) {
        const started = performance.now();
        const plan = await this.nextUploadPlan();
        const view = await this.client.createClassifier(plan.name, plan.zips);
        const upload: Tracked = { id: view.classifier_id, name: plan.name, versions: [plan.classes], loops: [] };
        this.tracked.set(upload.id, upload);
        this.counts.uploads++;
        if (this.counts.uploads % DELETE_WHILE_TRAINING_EVERY === 0) {
          await this.deleteTracked(upload);
          this.counts.deleted_while_training++;
        } else {
          await this.client.waitUntilReady(upload.id, READY_TIMEOUT_MS, 100);
          upload.readyAt = performance.now();
        }
        await pause(started + this.uploadEveryMs - performance.now());
      }
    };
    const deleter = async () => {
      for (;;) {
        await pause(DELETE_EVERY_MS);
        if (!running()) break;
        const live = liveUploads();
        if (live.length < 2) continue; // keep one for the clients to ask for
        // Alternately the oldest and the newest: the newest often holds the highest version id.
        await this.deleteTracked(this.counts.deletes % 2 === 0 ? live[0] : live[live.length - 1]);
        this.counts.deletes++;
      }
    };

    await Promise.all([
      guard(designatedClient()),
      ...this.background.map((who) => guard(pacedClient(who))),
      guard(retrainer()),
      guard(uploader()),
      guard(deleter()),
    ]);
  }

  private newClient(): Client {
    return { agent: new http.Agent({ keepAlive: true, maxSockets: 1 }), versionSeen: new Map() };
  }

  private zipOfKind(k: number): Promise<Buffer> {
    this.zipsMade++;
    return classZip(KINDS[k % KINDS.length], IMAGES_PER_ZIP, this.seed++);
  }

  private classifyForm(ids: string[]): Promise<PrebuiltForm> {
    return prebuildForm(
      multipartForm(
        { images_file: { bytes: this.queryJpeg, filename: 'query.jpg' } },
        { classifier_ids: ids.join(','), threshold: '0' },
      ),
    );
  }

  /** Makes the next retrained classifier's zips, creates it and waits until it is ready. */
  private async createRetrained(): Promise<Tracked> {
    const g = this.retrainedMade++;
    const versions = [[`g${g}c0`, `g${g}c1`]];
    const rounds: Array<Record<string, Buffer>> = [];
    for (let k = 1; k <= RETRAINS_PER_CLASSIFIER; k++) {
      versions.push([...versions[k - 1], `g${g}r${k}`]);
      rounds.push({ [`g${g}r${k}_positive_examples`]: await this.zipOfKind(k) });
    }
    const base = {
      [`g${g}c0_positive_examples`]: await this.zipOfKind(g),
      [`g${g}c1_positive_examples`]: await this.zipOfKind(g + 1),
    };
    const name = `retrained-${g}`;
    const view = await this.client.createClassifier(name, base);
    const t: Tracked = { id: view.classifier_id, name, versions, loops: [], retrains: rounds };
    this.tracked.set(t.id, t);
    await this.client.waitUntilReady(t.id, READY_TIMEOUT_MS, 100);
    t.readyAt = performance.now();
    t.form = await this.classifyForm([t.id]);
    return t;
  }

  private async nextUploadPlan(): Promise<{ name: string; classes: string[]; zips: Record<string, Buffer> }> {
    const u = this.uploadsMade++;
    const classes = [`u${u}a`, `u${u}b`];
    const zips = {
      [`${classes[0]}_positive_examples`]: await this.zipOfKind(u),
      [`${classes[1]}_positive_examples`]: await this.zipOfKind(u + 2),
    };
    return { name: `upload-${u}`, classes, zips };
  }

  private designatedClassify(): Promise<number> {
    const t = this.current;
    return this.classifyAndCheck(this.designated, [t.id], t.form!);
  }

  private async deleteTracked(t: Tracked): Promise<void> {
    t.deleteSent = performance.now();
    await this.client.deleteClassifier(t.id);
    t.deleteAnswered = performance.now();
    const after = await this.client.getClassifier(t.id).then(
      (view) => `status ${view.status}`,
      (error: unknown) => (error instanceof ServiceCallError ? error.status : error),
    );
    if (after !== 404) this.wrong(`GET of deleted ${t.name}: ${String(after)}`);
  }

  private wrong(what: string): void {
    this.wrongAnswers.set(what, (this.wrongAnswers.get(what) ?? 0) + 1);
  }

  /** POST of a prebuilt form on the client's own keep-alive connection; latency in ms, measured here. */
  private post(who: Client, form: PrebuiltForm): Promise<Outcome> {
    const started = performance.now();
    return new Promise((resolve) => {
      const req = http.request(this.classifyUrl, {
        method: 'POST',
        agent: who.agent,
        timeout: REQUEST_TIMEOUT_MS,
        headers: {
          Authorization: this.client.authorization,
          'Content-Type': form.contentType,
          'Content-Length': String(form.body.length),
        },
      });
      const failed = (error: NodeJS.ErrnoException) => {
        const idle = who.idleSince === undefined ? '' : ` idle ${Math.round(started - who.idleSince)} ms`;
        resolve({
          error: `${error.code ?? error.message}${req.reusedSocket ? ` on a reused keep-alive connection${idle}` : ''}`,
          ms: performance.now() - started,
        });
      };
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          who.idleSince = performance.now();
          resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString(), ms: performance.now() - started });
        });
        res.on('error', failed);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
      req.on('error', failed);
      req.end(form.body);
    });
  }

  /** One classify as client `who`; checks the answer against what was asked and when. Returns its latency. */
  private async classifyAndCheck(who: Client, ids: string[], form: PrebuiltForm): Promise<number> {
    const sent = performance.now();
    const outcome = await this.post(who, form);
    const answered = performance.now();
    this.counts.classify++;
    if ('error' in outcome) {
      this.connectionErrors.push(outcome.error);
      return outcome.ms;
    }
    this.statusCounts[outcome.status] = (this.statusCounts[outcome.status] ?? 0) + 1;
    const asked = ids.map((id) => this.tracked.get(id)!);
    const mayBeGone = (t: Tracked) => t.deleteSent !== undefined && t.deleteSent < answered;
    // 400 "no valid classifier_ids" is right only when everything asked for was deleted.
    if (outcome.status !== 200 && !(outcome.status === 400 && asked.every(mayBeGone))) {
      this.wrong(`${asked.map((t) => t.name).join(',')}: status ${outcome.status}: ${outcome.text.slice(0, 300)}`);
      return outcome.ms;
    }
    const answer = JSON.parse(outcome.text) as ClassifyAnswer;
    const results = answer.images?.[0]?.classifiers ?? [];
    const notFound = new Set(
      (answer.warnings ?? [])
        .filter((w) => w.warning_id === 'classifier_not_found')
        .map((w) => /'([^']+)'/.exec(w.description)?.[1]),
    );
    for (const r of results)
      if (!ids.includes(r.classifier_id))
        this.wrong(`${r.classifier_id} answered though not asked for (asked ${ids.join(',')})`);
    for (const t of asked) {
      const result = results.find((r) => r.classifier_id === t.id);
      if (!result) {
        if (!mayBeGone(t) || !notFound.has(t.id))
          this.wrong(
            `${t.name} (${mayBeGone(t) ? 'being deleted' : 'not deleted'}) did not answer: ${outcome.text.slice(0, 300)}`,
          );
        continue;
      }
      if (t.deleteAnswered !== undefined && t.deleteAnswered < sent)
        this.wrong(`deleted classifier ${t.name} answered: ${JSON.stringify(result).slice(0, 200)}`);
      const classes = JSON.stringify(result.classes.map((c) => c.class).sort());
      const version = t.versions.findIndex((v) => JSON.stringify([...v].sort()) === classes);
      // Versions that may have served it while it was in flight: the current one, and the next once its retrain was sent.
      const oldest = t.loops.reduce((n, l) => n + l.rounds.filter(([, ready]) => ready <= sent).length, 0);
      const newest = t.loops.reduce((n, l) => n + l.updatesSent.filter((at) => at <= answered).length, 0);
      const seen = who.versionSeen.get(t.id) ?? 0;
      if (result.name !== t.name || version < 0)
        this.wrong(`${t.name} answered as ${result.name} with classes ${classes}: no version of ${t.name} has them`);
      else if (version < oldest || version > newest)
        this.wrong(
          `${t.name} answered version ${version}; versions ${oldest}..${newest} served while the request was in flight`,
        );
      else if (version < seen)
        this.wrong(`${t.name} answered version ${version} after this client had seen version ${seen}`);
      if (version >= 0 && version < newest) this.counts.classify_previous_version++;
      who.versionSeen.set(t.id, Math.max(seen, version));
    }
    return outcome.ms;
  }
}
