import path from 'node:path';
import { ensureBundledPack } from '../src/ml/bundled-pack';
import { ensureDetectorPack } from '../src/ml/detector/detector-pack';

/**
 * Converts the bundled backbone and the CenterNet detector once before any test file runs. The pack lives in
 * MODELS_DIR (default `<repo>/models`, git-ignored) and is reused by later runs.
 */
export default async function globalSetup(): Promise<void> {
  const modelsDir = process.env.MODELS_DIR ?? path.resolve(__dirname, '..', 'models');
  process.env.MODELS_DIR = modelsDir;
  await ensureBundledPack(modelsDir);
  await ensureDetectorPack(modelsDir);
}
