/**
 * bench:upload — what a user waits for between sending 1,000 new training images and a `ready`
 * classifier: the create call (since issue 22 it reads every zip and checks each image without
 * decoding its pixels, keeps each zip whole as one durable file and answers; target ≤ 1 s plus transfer,
 * here over loopback) and then upload end → ready (the worker extracts the images into the image store,
 * decodes and embeds them, then trains the head). The training embed rate is the images over the
 * worker's share of that wait.
 *
 * Runs RUNS creates of 2 classes × 400 + 200 negatives, every image new to the service (distinct
 * bytes); polls every 50 ms. Last line: one JSON object with `create_answer_s` (mean of the create
 * calls) and `upload_end_to_ready_s` (mean), beside each run's figures and the load average.
 */
import os from 'node:os';
import { zipOf, type BenchImages, type ExampleRole } from './lib/bench-images';
import { benchMain } from './lib/bench-main';
import { cpuSeconds, type BenchService } from './lib/bench-service';
import { WatsonClient } from './lib/watson-client';

const RUNS = 2;
const POLL_MS = 50;
const READY_TIMEOUT_MS = 900_000;
/** Issue 22's target for the create call of 1,000 images, transfer aside. */
const CREATE_TARGET_S = 1;
/** The training progress (percent) at which its embedding phase ends (EMBEDDING_SHARE_OF_PROGRESS). */
const EMBEDDING_PROGRESS = 80;
const PLAN: Array<{ field: string; role: ExampleRole; count: number }> = [
  { field: 'a_positive_examples', role: 'class-a', count: 400 },
  { field: 'b_positive_examples', role: 'class-b', count: 400 },
  { field: 'negative_examples', role: 'negative', count: 200 },
];

const seconds = (fromMs: number, toMs: number) => Math.round(toMs - fromMs) / 1000;

async function runUpload(service: BenchService, images: BenchImages) {
  const client = new WatsonClient(service.url, service.apiKey);
  const serviceCpu = () => (cpuSeconds(service.pid) ?? NaN) + (cpuSeconds(service.workerPid) ?? NaN);
  const runs: Array<{
    upload_s: number;
    to_ready_s: number;
    /** Upload end → training past its embedding phase (progress ≥ 80 %): the worker decoding and embedding. */
    embed_phase_s: number;
    total_s: number;
    api_cpu_s: number;
    service_cpu_s: number;
  }> = [];
  for (let run = 0; run < RUNS; run++) {
    const zips: Record<string, Buffer> = {};
    for (const { field, role, count } of PLAN) zips[field] = zipOf(await images.take(count, role), field);
    const apiCpuBefore = cpuSeconds(service.pid) ?? NaN;
    const cpuBefore = serviceCpu();
    const sent = performance.now();
    const { classifier_id: id } = await client.createClassifier(`upload-${run}`, zips);
    const answered = performance.now();
    const apiCpuAnswered = cpuSeconds(service.pid) ?? NaN;
    // Training reports 0–80 % while it embeds (train-classifier.ts): the first poll at 80 % or more ends that phase.
    let embedded: number | undefined;
    await client.waitUntilReady(id, READY_TIMEOUT_MS, POLL_MS, (view) => {
      if (embedded === undefined && (view.training_progress ?? 0) >= EMBEDDING_PROGRESS) embedded = performance.now();
    });
    const ready = performance.now();
    embedded ??= ready;
    const figures = {
      upload_s: seconds(sent, answered),
      to_ready_s: seconds(answered, ready),
      embed_phase_s: seconds(answered, embedded),
      total_s: seconds(sent, ready),
      api_cpu_s: Math.round((apiCpuAnswered - apiCpuBefore) * 100) / 100,
      service_cpu_s: Math.round((serviceCpu() - cpuBefore) * 100) / 100,
    };
    console.log(
      `run ${run + 1}: 1,000 images: create answered in ${figures.upload_s.toFixed(2)} s + upload end → ready ${figures.to_ready_s.toFixed(2)} s = ${figures.total_s.toFixed(2)} s (service CPU ${figures.service_cpu_s} s)`,
    );
    runs.push(figures);
  }
  const mean = (key: keyof (typeof runs)[number]) =>
    Math.round((runs.reduce((sum, r) => sum + r[key], 0) / runs.length) * 1000) / 1000;
  return {
    bench: 'upload',
    cores: os.cpus().length,
    images: images.usesPhotos ? 'food-photos' : 'generated',
    training_images: PLAN.reduce((n, p) => n + p.count, 0),
    runs,
    mean_upload_s: mean('upload_s'),
    mean_to_ready_s: mean('to_ready_s'),
    mean_total_s: mean('total_s'),
    mean_service_cpu_s: mean('service_cpu_s'),
    create_answer_s: mean('upload_s'),
    create_target_s: CREATE_TARGET_S,
    upload_end_to_ready_s: mean('to_ready_s'),
    embed_phase_s: mean('embed_phase_s'),
    training_embed_images_per_s: Math.round((PLAN.reduce((n, p) => n + p.count, 0) / mean('embed_phase_s')) * 10) / 10,
    loadavg_1m: Math.round(os.loadavg()[0] * 100) / 100,
  };
}

benchMain(runUpload);
