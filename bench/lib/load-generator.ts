import type { EventEmitter } from 'node:events';

/** The part of autocannon's programmatic API used here (the package ships no types). */
interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodeStats: Record<string, { count: number }>;
}
type AutocannonRun = EventEmitter & PromiseLike<AutocannonResult>;
type Autocannon = (options: {
  url: string;
  method: 'POST';
  connections: number;
  duration: number;
  timeout: number;
  headers: Record<string, string>;
  body: Buffer;
}) => AutocannonRun;
const autocannon = require('autocannon') as Autocannon;

export interface LoadOptions {
  url: string;
  connections: number;
  durationS: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface LoadFigures {
  connections: number;
  duration_s: number;
  requests: number;
  rps: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  non2xx: number;
  /** Socket errors and timeouts (no HTTP answer at all). */
  errors: number;
  status_codes: Record<string, number>;
}

const REQUEST_TIMEOUT_S = 10;

/** The median of `values` (any order; the mean of the middle two for an even count); NaN for none. */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The p-th percentile (nearest rank) of ascending `sorted` values; NaN for none. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * Replays one POST for `durationS` seconds on `connections` keep-alive connections
 * (closed loop: each sends its next request when the previous answer arrives).
 * Latencies are collected per response at sub-millisecond resolution, whatever the status.
 */
export async function runLoad(options: LoadOptions): Promise<LoadFigures> {
  const latencies: number[] = [];
  const run = autocannon({
    url: options.url,
    method: 'POST',
    connections: options.connections,
    duration: options.durationS,
    timeout: REQUEST_TIMEOUT_S,
    headers: options.headers,
    body: options.body,
  });
  run.on('response', (_client: unknown, _status: number, _bytes: number, responseTimeMs: number) =>
    latencies.push(responseTimeMs),
  );
  const result = await run;
  latencies.sort((a, b) => a - b);
  return {
    connections: options.connections,
    duration_s: result.duration,
    requests: latencies.length,
    rps: round(latencies.length / result.duration),
    p50_ms: round(percentile(latencies, 50)),
    p90_ms: round(percentile(latencies, 90)),
    p99_ms: round(percentile(latencies, 99)),
    max_ms: round(latencies[latencies.length - 1] ?? NaN),
    non2xx: result.non2xx,
    errors: result.errors,
    status_codes: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count])),
  };
}
