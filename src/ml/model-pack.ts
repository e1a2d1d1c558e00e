import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { PackId, PackManifest } from './types';

/** A pack on disk whose manifest validated and whose files exist. */
export interface LoadedPack {
  manifest: PackManifest;
  dir: string;
  modelPath: string;
}

/** A pack directory is missing, or its manifest or files are broken. */
export class PackError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`model pack ${file}: ${reason}`);
    this.name = 'PackError';
  }
}

const PACK_IDS = ['bundled', 'imagenet'] as const satisfies readonly PackId[];
const MANIFEST_FILE = 'manifest.json';

const positive = z.number().positive();
const manifestSchema = z.object({
  id: z.enum(PACK_IDS),
  version: z.number().int().nonnegative(),
  model: z.string().min(1),
  input: z.object({
    name: z.string().min(1),
    size: z.number().int().positive(),
    mean: z.tuple([z.number(), z.number(), z.number()]),
    std: z.tuple([positive, positive, positive]),
  }),
  embedding: z.object({
    outputs: z.array(z.string().min(1)).min(1),
    dim: z.number().int().positive(),
  }),
  heads: z.object({
    explicit: z.object({ output: z.string().min(1), labels: z.array(z.string()).min(1) }).optional(),
    imagenet: z.object({ output: z.string().min(1), labelsFile: z.string().min(1) }).optional(),
  }),
}) satisfies z.ZodType<PackManifest>;

export function packDir(modelsDir: string, id: PackId): string {
  return path.join(modelsDir, id);
}

/** Reads and validates `<modelsDir>/<id>/manifest.json` and checks the files it names exist. */
export async function loadPack(modelsDir: string, id: PackId): Promise<LoadedPack> {
  const dir = packDir(modelsDir, id);
  const manifestPath = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await fs.readFile(manifestPath, 'utf8');
  } catch (error) {
    throw new PackError(
      manifestPath,
      isNotFound(error) ? 'not installed (no manifest.json)' : `unreadable: ${String(error)}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new PackError(manifestPath, `not valid JSON: ${(error as Error).message}`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new PackError(manifestPath, `invalid manifest: ${issues.join('; ')}`);
  }
  const manifest: PackManifest = parsed.data;
  if (manifest.id !== id) throw new PackError(manifestPath, `manifest id is ${manifest.id}, expected ${id}`);
  const modelPath = path.join(dir, manifest.model);
  await requireFile(manifestPath, modelPath);
  if (manifest.heads.imagenet) await requireFile(manifestPath, path.join(dir, manifest.heads.imagenet.labelsFile));
  return { manifest, dir, modelPath };
}

/** Manifests of the valid packs present; broken or absent ones are left out. */
export async function listPacks(modelsDir: string): Promise<PackManifest[]> {
  const packs: PackManifest[] = [];
  for (const id of PACK_IDS) {
    try {
      packs.push((await loadPack(modelsDir, id)).manifest);
    } catch (error) {
      if (!(error instanceof PackError)) throw error;
    }
  }
  return packs;
}

/** The ImageNet pack when a valid one is installed (its embedding is far better), else the bundled one. */
export async function loadBestPack(modelsDir: string): Promise<LoadedPack> {
  try {
    return await loadPack(modelsDir, 'imagenet');
  } catch (error) {
    if (!(error instanceof PackError)) throw error;
    return loadPack(modelsDir, 'bundled');
  }
}

async function requireFile(manifestPath: string, file: string): Promise<void> {
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile() || stat.size === 0)
      throw new PackError(manifestPath, `${path.basename(file)} is empty or not a file`);
  } catch (error) {
    if (error instanceof PackError) throw error;
    throw new PackError(manifestPath, `${path.basename(file)} is missing`);
  }
}

function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === 'ENOENT';
}
