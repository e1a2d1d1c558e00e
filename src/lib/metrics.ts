import os from 'node:os';
import {
  AggregatorRegistry,
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  type MetricObjectWithValues,
  type MetricValue,
} from 'prom-client';

/** A registry's metrics as prom-client's JSON: what each process publishes and the scraped API process merges. */
export type MetricsSnapshot = MetricObjectWithValues<MetricValue<string>>[];

export type ProcessRole = 'api' | 'worker';

const PREFIX = 'watson_vr_';

/** The stages of a classify call: sharp decodes and the embedding model (per batch), the object detector and custom heads (per call). */
export type ClassifyStage = 'decode' | 'backbone' | 'detector' | 'heads';

/**
 * One process's Prometheus registry: Node/process metrics plus this service's own, every series
 * labelled with the process's role (api, worker) and instance (host/pid), so the API can merge the
 * snapshots its workers publish (see data-access/metrics-exchange.ts) without series colliding.
 */
export class ProcessMetrics {
  readonly registry = new Registry();
  readonly instance: string;

  readonly cacheLookups = new Counter({
    name: `${PREFIX}embedding_cache_lookups_total`,
    help: 'Example images looked up in the embedding cache, by result (hit, miss), by training (worker)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  constructor(readonly role: ProcessRole) {
    this.instance = `${os.hostname()}/${process.pid}`;
    this.registry.setDefaultLabels({ process_role: role, process_instance: this.instance });
    collectDefaultMetrics({ register: this.registry });
  }

  async snapshot(): Promise<MetricsSnapshot> {
    return (await this.registry.getMetricsAsJSON()) as MetricsSnapshot;
  }

  /** What this process publishes for other processes' scrapes (see MetricsExchange). */
  async publishedSnapshot(): Promise<MetricsSnapshot> {
    return this.snapshot();
  }
}

/** The API process's metrics: requests, classify work, and the training queue (read at scrape time). */
export class ApiMetrics extends ProcessMetrics {
  readonly httpRequests = new Counter({
    name: `${PREFIX}http_requests_total`,
    help: 'HTTP requests answered, by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });

  readonly httpDuration = new Histogram({
    name: `${PREFIX}http_request_duration_seconds`,
    help: 'Time from request to the end of the answer, by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });

  readonly classifyImages = new Counter({
    name: `${PREFIX}classify_images_total`,
    help: 'Images given to /v3/classify, by outcome (classified, or failed: undecodable, unreachable url)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly classifyStage = new Histogram({
    name: `${PREFIX}classify_stage_seconds`,
    help: 'Time classify calls spent in each stage: decode (sharp) and backbone (embedding model) per batch of images, detector (object detector) and heads (custom classifiers) per call',
    labelNames: ['stage'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly queueJobs = new Gauge({
    name: `${PREFIX}training_queue_jobs`,
    help: 'Training runs in the queue by state (waiting, active, delayed, failed), read from Redis at scrape time',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });

  constructor() {
    super('api');
  }

  readonly workerReports = new Gauge({
    name: `${PREFIX}worker_reports`,
    help: 'Training worker processes whose metrics this scrape merged (each publishes to Redis every few seconds)',
    registers: [this.registry],
  });

  readonly apiReports = new Gauge({
    name: `${PREFIX}api_reports`,
    help: 'API processes whose metrics this scrape merged, the scraped one included (each publishes to Redis every few seconds)',
    registers: [this.registry],
  });

  /**
   * Without the figures a scrape reads for the whole instance (queue counts, reports): each
   * scraped process sets them itself, and another process's copy would count them twice.
   */
  override async publishedSnapshot(): Promise<MetricsSnapshot> {
    const instanceWide = new Set(
      ['training_queue_jobs', 'worker_reports', 'api_reports'].map((name) => `${PREFIX}${name}`),
    );
    return (await this.snapshot()).filter((metric) => !instanceWide.has(metric.name));
  }

  observeStage(stage: ClassifyStage, seconds: number): void {
    this.classifyStage.observe({ stage }, seconds);
  }
}

/** A training worker's metrics: runs by outcome with durations, and embedding-cache lookups. */
export class WorkerMetrics extends ProcessMetrics {
  readonly trainingRuns = new Counter({
    name: `${PREFIX}training_runs_total`,
    help: 'Training runs by outcome: trained, up-to-date (nothing new), gone (deleted meanwhile), retry (transient failure, tried again), failed',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly trainingDuration = new Histogram({
    name: `${PREFIX}training_run_duration_seconds`,
    help: 'Duration of training runs by outcome',
    labelNames: ['outcome'] as const,
    buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
    registers: [this.registry],
  });

  constructor() {
    super('worker');
  }
}

/**
 * Merges snapshots of several processes into one registry for a scrape. Every series carries its
 * process's labels, so summing leaves each as it is; prom-client's own aggregators would drop
 * some process metrics (start time), which a per-process view must keep.
 */
export function mergeSnapshots(snapshots: MetricsSnapshot[]): Registry {
  const labelled = snapshots.map((snapshot) => snapshot.map((metric) => ({ ...metric, aggregator: 'sum' as const })));
  return AggregatorRegistry.aggregate(labelled);
}

/** True for what looks like a registry snapshot (what a process published), so a stray Redis value cannot break a scrape. */
export function isSnapshot(value: unknown): value is MetricsSnapshot {
  return (
    Array.isArray(value) &&
    value.every(
      (m) =>
        typeof m?.name === 'string' &&
        typeof m.help === 'string' &&
        typeof m.type === 'string' &&
        Array.isArray(m.values),
    )
  );
}

/** The role (`api`, `worker`) a published snapshot's series carry; undefined when none says. */
export function snapshotRole(snapshot: MetricsSnapshot): string | undefined {
  for (const metric of snapshot) {
    const role = metric.values.find((v) => typeof v.labels?.process_role === 'string')?.labels.process_role;
    if (role !== undefined) return String(role);
  }
  return undefined;
}
