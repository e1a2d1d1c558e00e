import path from 'node:path';

/** Where everything lives under DATA_DIR (documented in README.md). */
export function dataLayout(dataDir: string) {
  return {
    database: path.join(dataDir, 'service.sqlite'),
    images: path.join(dataDir, 'images'),
    heads: path.join(dataDir, 'heads'),
    tmp: path.join(dataDir, 'tmp'),
    redis: path.join(dataDir, 'redis'),
  };
}
