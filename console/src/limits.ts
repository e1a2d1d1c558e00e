import type { components } from './api-types';

/** Upload limits the API enforces, written into the page by the server (console-routes.ts, shaped by consoleLimitsSchema). */
export type Limits = components['schemas']['ConsoleLimits'];

const MB = 1024 * 1024;
/** The contract's limits, used when the page was opened without the server's (e.g. vite dev). */
const CONTRACT: Limits = {
  maxZipBytes: 100 * MB,
  maxRequestBytes: 256 * MB,
  minImagesPerZip: 10,
  maxImagesPerZip: 10_000,
  maxClassifyImageBytes: 10 * MB,
};

export function readLimits(): Limits {
  const content = document.querySelector('meta[name="console-limits"]')?.getAttribute('content');
  try {
    return { ...CONTRACT, ...(JSON.parse(content ?? '') as Partial<Limits>) };
  } catch {
    return CONTRACT;
  }
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MB) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${Number((bytes / MB).toFixed(1))} MB`;
}
