/**
 * bench:upload — what a user waits for between sending 1,000 new training images and a `ready`
 * classifier: the create call (upload: read every zip, since issue 10 also decode and embed each
 * image) and then training (embedding whatever upload did not, and the head). Uploads that decode
 * must not make the whole wait longer: the decoded images' embeddings go to the cache that
 * training reads, so no image is decoded twice.
 *
 * Runs RUNS creates of 2 classes × 400 + 200 negatives, every image new to the service (distinct
 * bytes); polls every 50 ms. Last line: one JSON object.
 */
import os from 'node:os';
import { zipOf, type BenchImages, type ExampleRole } from './lib/bench-images';
import { benchMain } from './lib/bench-main';
import { cpuSeconds, type BenchService } from './lib/bench-service';
import { WatsonClient } from './lib/watson-client';

const RUNS = 2;
const POLL_MS = 50;
const READY_TIMEOUT_MS = 900_000;
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
    await client.waitUntilReady(id, READY_TIMEOUT_MS, POLL_MS);
    const ready = performance.now();
    const figures = {
      upload_s: seconds(sent, answered),
      to_ready_s: seconds(answered, ready),
      total_s: seconds(sent, ready),
      api_cpu_s: Math.round((apiCpuAnswered - apiCpuBefore) * 100) / 100,
      service_cpu_s: Math.round((serviceCpu() - cpuBefore) * 100) / 100,
    };
    console.log(
      `run ${run + 1}: 1,000 images: upload ${figures.upload_s.toFixed(2)} s + upload end → ready ${figures.to_ready_s.toFixed(2)} s = ${figures.total_s.toFixed(2)} s (service CPU ${figures.service_cpu_s} s)`,
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
    loadavg_1m: Math.round(os.loadavg()[0] * 100) / 100,
  };
}

benchMain(runUpload);
