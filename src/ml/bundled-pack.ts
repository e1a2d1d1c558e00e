import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { BUNDLED_INPUT_NAME, BUNDLED_INPUT_SIZE, convertBundledBackbone, EMBEDDING_TAPS, EXPLICIT_OUTPUT } from './convert/bundled-backbone';
import { loadPack, packDir, PackError } from './model-pack';
import type { PackManifest } from './types';

/** Bump whenever the conversion's output changes: cached embeddings are keyed by `bundled@<version>`. */
export const BUNDLED_PACK_VERSION = 1;
const MODEL_FILE = 'model.onnx';
const STAGING_PREFIX = '.bundled-staging-';

/**
 * Makes sure `<modelsDir>/bundled` holds the converted nsfwjs backbone of the current version.
 * Converts into a temporary directory beside it and renames that into place, so a crash never
 * leaves a half-written pack; concurrent callers each convert and the first rename wins.
 */
export async function ensureBundledPack(modelsDir: string): Promise<PackManifest> {
  const current = await currentPack(modelsDir);
  if (current) return current;

  await fs.mkdir(modelsDir, { recursive: true });
  await removeAbandonedStaging(modelsDir);
  const staging = path.join(modelsDir, `${STAGING_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await fs.mkdir(staging);
    const { model, explicitLabels } = await convertBundledBackbone();
    const manifest = bundledManifest(explicitLabels);
    await fs.writeFile(path.join(staging, MODEL_FILE), model);
    await fs.writeFile(path.join(staging, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    await moveIntoPlace(staging, packDir(modelsDir, 'bundled'));
    return (await currentPack(modelsDir)) ?? manifest;
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
}

async function currentPack(modelsDir: string): Promise<PackManifest | undefined> {
  try {
    const { manifest } = await loadPack(modelsDir, 'bundled');
    return manifest.version === BUNDLED_PACK_VERSION ? manifest : undefined;
  } catch (error) {
    if (error instanceof PackError) return undefined;
    throw error;
  }
}

/** Replaces `target` with `staging`; an outdated or broken `target` is moved aside first and removed after. */
async function moveIntoPlace(staging: string, target: string): Promise<void> {
  const modelsDir = path.dirname(target);
  if (await currentPack(modelsDir)) return; // another process finished first
  const retired = `${staging}-retired`;
  try {
    await fs.rename(target, retired);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  try {
    await fs.rename(staging, target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Another process renamed its own pack into place between our two renames.
    if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !(await currentPack(modelsDir))) throw error;
  } finally {
    await fs.rm(retired, { recursive: true, force: true });
  }
}

/** Staging directories of processes that died mid-conversion (their pid is gone). */
async function removeAbandonedStaging(modelsDir: string): Promise<void> {
  for (const entry of await fs.readdir(modelsDir)) {
    const pid = entry.startsWith(STAGING_PREFIX) ? Number.parseInt(entry.slice(STAGING_PREFIX.length), 10) : NaN;
    if (pid && !isRunning(pid)) await fs.rm(path.join(modelsDir, entry), { recursive: true, force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function bundledManifest(explicitLabels: string[]): PackManifest {
  return {
    id: 'bundled',
    version: BUNDLED_PACK_VERSION,
    model: MODEL_FILE,
    input: { name: BUNDLED_INPUT_NAME, size: BUNDLED_INPUT_SIZE, mean: [0, 0, 0], std: [1, 1, 1] },
    embedding: { outputs: EMBEDDING_TAPS.map((tap) => tap.output), dim: EMBEDDING_TAPS.reduce((sum, tap) => sum + tap.dim, 0) },
    heads: { explicit: { output: EXPLICIT_OUTPUT, labels: explicitLabels } },
  };
}
