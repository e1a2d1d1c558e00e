/** Seconds since `start` (a `process.hrtime.bigint()` reading), as a float: the unit Prometheus histograms use. */
export function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}
