import path from 'node:path';

/** Where everything lives under DATA_DIR (documented in README.md). */
export function dataLayout(dataDir: string) {
  return {
    database: path.join(dataDir, 'service.sqlite'),
    images: path.join(dataDir, 'images'),
    heads: path.join(dataDir, 'heads'),
    tmp: path.join(dataDir, 'tmp'),
    /** Zips accepted by a create or update whose images the worker has not yet extracted (PendingZipStore). */
    pending: path.join(dataDir, 'pending'),
    redis: path.join(dataDir, 'redis'),
  };
}
