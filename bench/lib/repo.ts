import fs from 'node:fs';
import path from 'node:path';

/**
 * The repository root, whether this runs from bench/ (ts-node) or dist/bench/ (compiled): the folder of
 * package-lock.json, since tsc copies package.json into dist/ (a script imports it) but not the lock file.
 */
export function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package-lock.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package-lock.json above ${__dirname}`);
    dir = parent;
  }
  return dir;
}

export function modelsDir(): string {
  return process.env.MODELS_DIR ?? path.join(repoRoot(), 'models');
}
