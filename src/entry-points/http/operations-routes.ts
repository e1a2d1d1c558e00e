import { Router, type NextFunction, type Request, type Response } from 'express';
import type { Readiness } from '../../domain/api-schemas';
import type { MetricsExchange } from '../../data-access/redis/metrics-exchange';
import type { TrainingQueue } from '../../data-access/redis/training-queue';
import { mergeSnapshots, snapshotRole, type ApiMetrics } from '../../lib/metrics';
import { withTimeout } from '../../lib/timeout';
import type { Logger } from '../../logger';
import { secondsSince } from '../../lib/elapsed';

const REDIS_TIMEOUT_MS = 1000;

/** What /readyz checks. Each throws (or returns a reason) when its part is not ready. */
export interface ReadinessProbes {
  database(): void;
  redis(): Promise<void>;
  /** A reason when a model is not loaded or its thread has stopped; undefined when all are serving. */
  models(): string | undefined;
}

export interface OperationsDependencies {
  /** Undefined when METRICS_ENABLED=false. */
  metrics?: ApiMetrics;
  health: boolean;
  probes: ReadinessProbes;
  exchange: MetricsExchange;
  queue: TrainingQueue;
  logger: Logger;
}

/** An error's code (ECONNREFUSED, SQLITE_…) or message, never a path or a URL with credentials. */
function shortReason(error: unknown): string {
  const code = (error as { code?: unknown })?.code;
  if (typeof code === 'string') return code;
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\S*[/\\]\S*/g, '…');
}

/** Runs the probes: every failed part names its reason. */
export async function checkReadiness(probes: ReadinessProbes): Promise<Readiness> {
  let database: Readiness['checks']['database'] = { ok: true };
  try {
    await probes.database();
  } catch (error) {
    database = { ok: false, reason: `The database does not answer (${shortReason(error)}).` };
  }
  let redis: Readiness['checks']['redis'] = { ok: true };
  try {
    await probes.redis();
  } catch (error) {
    redis = { ok: false, reason: `Redis does not answer (${shortReason(error)}): training cannot be queued.` };
  }
  const modelProblem = probes.models();
  const models = modelProblem ? { ok: false, reason: modelProblem } : { ok: true };
  const ready = database.ok && redis.ok && models.ok;
  return { status: ready ? 'ready' : 'not ready', checks: { database, redis, models } };
}

/**
 * /healthz, /readyz and /metrics: no key needed, so they show only aggregate figures by route
 * template, never a key, a path or a classifier id.
 */
export function operationsRoutes(deps: OperationsDependencies): Router {
  const router = Router();
  if (deps.health) {
    router.get('/healthz', (_req, res) => {
      res.json({ status: 'ok' });
    });
    router.get('/readyz', async (_req, res) => {
      const readiness = await checkReadiness(deps.probes);
      res.status(readiness.status === 'ready' ? 200 : 503).json(readiness);
    });
  }
  const { metrics } = deps;
  if (metrics) {
    router.get('/metrics', async (_req, res) => {
      try {
        const counts = await withTimeout(deps.queue.counts(), REDIS_TIMEOUT_MS, 'Redis');
        for (const [state, n] of Object.entries(counts)) metrics.queueJobs.set({ state }, n);
      } catch (err) {
        metrics.queueJobs.reset(); // unknown rather than stale
        deps.logger.debug({ err }, 'metrics: could not read the queue counts');
      }
      const published = await withTimeout(deps.exchange.collect(), REDIS_TIMEOUT_MS, 'Redis').catch((err: unknown) => {
        deps.logger.debug({ err }, 'metrics: could not read the other processes’ metrics');
        return [];
      });
      // This process's own published copy is older than what it reads now.
      const others = published.filter((p) => p.instance !== metrics.instance).map((p) => p.snapshot);
      metrics.workerReports.set(others.filter((s) => snapshotRole(s) === 'worker').length);
      metrics.apiReports.set(1 + others.filter((s) => snapshotRole(s) === 'api').length);
      const merged = mergeSnapshots([await metrics.snapshot(), ...others]);
      res.setHeader('Content-Type', merged.contentType);
      res.send(await merged.metrics());
    });
  }
  return router;
}

/**
 * Counts and times every answer by method, route template and status. The template comes from
 * `routeOf` (the OpenAPI document's paths), so a classifier id never becomes a label value.
 */
export function requestMetrics(metrics: ApiMetrics, routeOf: (path: string) => string) {
  return (req: Request, res: Response, next: NextFunction) => {
    const start = process.hrtime.bigint();
    // Now: routers mounted on a prefix rewrite req.url while they run.
    const route = routeOf(req.path);
    res.once('finish', () => {
      const labels = { method: req.method, route, status: String(res.statusCode) };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, secondsSince(start));
    });
    next();
  };
}
