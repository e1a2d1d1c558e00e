import path from 'node:path';
import { ensureBundledPack } from '../src/ml/bundled-pack';
import { ensureDetectorPack } from '../src/ml/detector/detector-pack';

/**
 * Converts the bundled backbone and the CenterNet detector once before any test file runs. The pack lives in
 * MODELS_DIR (default `<repo>/models`, git-ignored) and is reused by later runs. Sets TS_NODE_PROJECT for the test
 * processes (jest's workers inherit it, and the services they start).
 */
export default async function globalSetup(): Promise<void> {
  const modelsDir = process.env.MODELS_DIR ?? path.resolve(__dirname, '..', 'models');
  process.env.MODELS_DIR = modelsDir;
  // The processes tests start from source (each service's training worker, the fault tests' API processes) run
  // through ts-node: this project file gives it a transpile cache (test/support/ts-node-cached-transpiler.js).
  process.env.TS_NODE_PROJECT ??= path.join(__dirname, 'tsconfig.ts-node.json');
  await ensureBundledPack(modelsDir);
  await ensureDetectorPack(modelsDir);
}
