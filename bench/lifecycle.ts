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
 * new images find no cached embedding. Polls every 50 ms. Last line: one JSON object.
 */
import os from 'node:os';
import { BenchImages, zipOf, type ExampleRole } from './lib/bench-images';
import { benchMain } from './lib/bench-main';
import { cpuSeconds, residentMb, type BenchService } from './lib/bench-service';
import { WatsonClient } from './lib/watson-client';

const TARGETS = { create_s: 5, retrain_s: 3 };
const POLL_MS = 50;
const SMALL_READY_TIMEOUT_MS = 120_000;
const LARGE_READY_TIMEOUT_MS = 900_000;

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
    to_ready_cpu_s: cpuAnswered === undefined || cpuReady === undefined ? undefined : Math.round((cpuReady - cpuAnswered) * 100) / 100,
  };
}

function printStep(label: string, timing: TimedTraining) {
  const cpu = timing.to_ready_cpu_s === undefined ? '' : ` (service CPU meanwhile ${timing.to_ready_cpu_s} s: at least ${(timing.to_ready_cpu_s / os.cpus().length).toFixed(2)} s on ${os.cpus().length} idle cores)`;
  console.log(`${label}: upload ${timing.upload_mb} MB in ${timing.upload_s.toFixed(2)} s; upload end → ready ${timing.to_ready_s.toFixed(2)} s${cpu}`);
}

async function runLifecycle(service: BenchService, images: BenchImages) {
  const client = new WatsonClient(service.url, service.apiKey);

  const smallZips = await zipsFor(images, [
    { field: 'a_positive_examples', role: 'class-a', count: 100 },
    { field: 'b_positive_examples', role: 'class-b', count: 100 },
    { field: 'negative_examples', role: 'negative', count: 100 },
  ]);
  const loadBefore = loadAverage();
  const small = await timeUntilReady(service, client, smallZips, () => client.createClassifier('lifecycle-small', smallZips), SMALL_READY_TIMEOUT_MS);
  printStep(`create 2×100 + 100 negatives (target ≤${TARGETS.create_s} s to ready)`, small);

  const largeZips = await zipsFor(images, [
    { field: 'a_positive_examples', role: 'class-a', count: 700 },
    { field: 'b_positive_examples', role: 'class-b', count: 700 },
    { field: 'negative_examples', role: 'negative', count: 600 },
  ]);
  const large = await timeUntilReady(service, client, largeZips, () => client.createClassifier('lifecycle-2000', largeZips), LARGE_READY_TIMEOUT_MS);
  printStep('create 2×700 + 600 negatives (embeds and caches 2,000 examples)', large);

  const updateZips = await zipsFor(images, [
    { field: 'a_positive_examples', role: 'class-a', count: 50 },
    { field: 'b_positive_examples', role: 'class-b', count: 50 },
  ]);
  const retrain = await timeUntilReady(service, client, updateZips, () => client.updateClassifier(large.id, updateZips), SMALL_READY_TIMEOUT_MS);
  printStep(`retrain +100 images on 2,000 cached (target ≤${TARGETS.retrain_s} s to ready)`, retrain);
  const loadAfter = loadAverage();
  console.log(`load average (1 min) before ${loadBefore}, after ${loadAfter}; cores ${os.cpus().length}`);

  return {
    bench: 'lifecycle',
    cores: os.cpus().length,
    images: images.usesPhotos ? 'food-photos' : 'generated',
    create_2x100_100neg_upload_s: small.upload_s,
    create_2x100_100neg_to_ready_s: small.to_ready_s,
    create_2000_upload_s: large.upload_s,
    create_2000_to_ready_s: large.to_ready_s,
    retrain_100_on_2000_cached_upload_s: retrain.upload_s,
    retrain_100_on_2000_cached_s: retrain.to_ready_s,
    service_cpu_s: { create_2x100_100neg: small.to_ready_cpu_s, create_2000: large.to_ready_cpu_s, retrain_100_on_2000_cached: retrain.to_ready_cpu_s },
    targets: TARGETS,
    met: { create: small.to_ready_s <= TARGETS.create_s, retrain: retrain.to_ready_s <= TARGETS.retrain_s },
    api_rss_mb: residentMb(service.pid),
    worker_rss_mb: residentMb(service.workerPid),
    loadavg_1m: { before: loadBefore, after: loadAfter },
    poll_ms: POLL_MS,
  };
}

benchMain(runLifecycle);
