import { access, mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { PackManifest } from '../types';
import { downloadVerified } from './download';
import { BUNDLED_IMAGENET_CLASSES, IMAGENET_CLASSES_FILE, IMAGENET_CLASS_COUNT } from './imagenet-labels';
import { ModelPackError } from './model-pack-error';
import { prepareClassifierModel, type PreparedModel } from './prepare-model';
import { extractTarball, findFiles } from './tarball';

/** The ONNX model zoo's MobileNetV2-12 (Apache-2.0), served through Git LFS. */
export const IMAGENET_PACK_SOURCE = {
  url: 'https://github.com/onnx/models/raw/main/validated/vision/classification/mobilenet/model/mobilenetv2-12.tar.gz',
  size: 13_498_787,
  sha256: '5f83b422708a708b592a5fd56d84710038511789df3ae510b84123930c37762d',
} as const;

/** Bump when the preparation below changes, so embeddings cached from an older build are not reused. */
export const IMAGENET_PACK_VERSION = 1;
export const IMAGENET_PACK_DIR = 'imagenet';
const MODEL_FILE = 'model.onnx';
const MANIFEST_FILE = 'manifest.json';
/** Work directories live inside modelsDir so the final rename stays on one filesystem. */
const STAGING_PREFIX = '.imagenet-staging-';
/** Defence in depth against a decompression bomb; the real tarball unpacks to about 14 MB. */
const MAX_UNPACKED_BYTES = 512 * 1024 * 1024;
const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

export interface FetchImagenetPackOptions {
  modelsDir: string;
  url: string;
  sha256: string;
  /** Exact size of the tarball in bytes; also the download's cap. */
  size: number;
  fetchImpl?: typeof fetch;
}

/**
 * Downloads the ImageNet pack's tarball, verifies its size and SHA-256, unpacks it, adds the pooled
 * features as an output of its model, checks the result loads in onnxruntime, and installs it as
 * `<modelsDir>/imagenet` (model.onnx, manifest.json, imagenet-classes.json). An older pack is replaced
 * only once the new one is complete. On any failure it throws ModelPackError and leaves modelsDir as it
 * was. Run one fetch at a time per modelsDir: a fetch clears work directories left by a crashed one.
 */
export async function fetchImagenetPack(options: FetchImagenetPackOptions): Promise<PackManifest> {
  const { modelsDir, url, sha256, size } = options;
  const staging = await createStagingDir(modelsDir);
  try {
    const archive = join(staging, 'download.tar.gz');
    await downloadVerified({ url, size, sha256 }, archive, options.fetchImpl ?? fetch);

    const unpacked = join(staging, 'unpacked');
    await mkdir(unpacked);
    await extractTarball(archive, unpacked, MAX_UNPACKED_BYTES, url);
    const onnxFiles = await findFiles(unpacked, '.onnx');
    if (onnxFiles.length !== 1) {
      const found =
        onnxFiles.length === 0 ? 'no .onnx file' : `${onnxFiles.length} .onnx files (${onnxFiles.join(', ')})`;
      throw new ModelPackError(url, `the archive holds ${found}, expected exactly one model; check IMAGENET_PACK_URL`);
    }
    const modelSource = `${url} (${onnxFiles[0]})`;
    const prepared = prepareClassifierModel(await readFile(join(unpacked, onnxFiles[0])), modelSource);
    if (prepared.classCount !== IMAGENET_CLASS_COUNT) {
      throw new ModelPackError(
        modelSource,
        `the model has ${prepared.classCount} outputs, expected the ${IMAGENET_CLASS_COUNT} ImageNet-1k classes`,
      );
    }

    const pack = join(staging, 'pack');
    await mkdir(pack);
    await writeFile(join(pack, MODEL_FILE), prepared.model);
    await checkRuntimeLoads(join(pack, MODEL_FILE), prepared, modelSource);
    await writeFile(join(pack, IMAGENET_CLASSES_FILE), JSON.stringify(BUNDLED_IMAGENET_CLASSES));
    const manifest = buildManifest(prepared);
    await writeFile(join(pack, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);

    await installReplacing(pack, join(modelsDir, IMAGENET_PACK_DIR), join(staging, 'previous'));
    return manifest;
  } catch (error) {
    if (error instanceof ModelPackError) throw error;
    throw new ModelPackError(modelsDir, `installing the ImageNet pack failed (${(error as Error).message})`);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** Whether `<modelsDir>/imagenet` holds an installed pack (its manifest is written last). */
export async function isImagenetPackPresent(modelsDir: string): Promise<boolean> {
  const packDir = join(modelsDir, IMAGENET_PACK_DIR);
  try {
    await Promise.all([MANIFEST_FILE, MODEL_FILE, IMAGENET_CLASSES_FILE].map((file) => access(join(packDir, file))));
    return true;
  } catch {
    return false;
  }
}

function buildManifest(prepared: PreparedModel): PackManifest {
  return {
    id: 'imagenet',
    version: IMAGENET_PACK_VERSION,
    model: MODEL_FILE,
    input: { name: prepared.inputName, size: prepared.inputSize, mean: IMAGENET_MEAN, std: IMAGENET_STD },
    embedding: { outputs: [prepared.embeddingOutput], dim: prepared.embeddingDim },
    heads: { imagenet: { output: prepared.logitsOutput, labelsFile: IMAGENET_CLASSES_FILE } },
  };
}

async function createStagingDir(modelsDir: string): Promise<string> {
  try {
    await mkdir(modelsDir, { recursive: true });
    const leftovers = (await readdir(modelsDir)).filter((name) => name.startsWith(STAGING_PREFIX));
    await Promise.all(leftovers.map((name) => rm(join(modelsDir, name), { recursive: true, force: true })));
    return await mkdtemp(join(modelsDir, STAGING_PREFIX));
  } catch (error) {
    throw new ModelPackError(
      modelsDir,
      `cannot write the models directory (${(error as Error).message}); set MODELS_DIR to a writable directory`,
    );
  }
}

/** Runs the prepared model once on a blank image: both outputs must come back with the expected sizes. */
async function checkRuntimeLoads(modelPath: string, prepared: PreparedModel, source: string): Promise<void> {
  let session: ort.InferenceSession | undefined;
  try {
    session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1 });
    const side = prepared.inputSize;
    const image = new ort.Tensor('float32', new Float32Array(3 * side * side), [1, 3, side, side]);
    const outputs = await session.run({ [prepared.inputName]: image });
    const expected: Array<[string, number]> = [
      [prepared.logitsOutput, prepared.classCount],
      [prepared.embeddingOutput, prepared.embeddingDim],
    ];
    for (const [name, width] of expected) {
      const dims = outputs[name]?.dims;
      if (dims?.length !== 2 || dims[0] !== 1 || dims[1] !== width) {
        throw new Error(`output '${name}' has shape [${dims?.join(', ') ?? 'missing'}], expected [1, ${width}]`);
      }
    }
  } catch (error) {
    throw new ModelPackError(source, `onnxruntime cannot run the prepared model (${(error as Error).message})`);
  } finally {
    await session?.release();
  }
}

/**
 * Moves `pack` to `target`. An existing target is first moved to `previous` (inside the staging dir,
 * removed with it) and moved back if the second rename fails; readers see the old pack or the new one,
 * or nothing for the instant between the two renames.
 */
async function installReplacing(pack: string, target: string, previous: string): Promise<void> {
  const hadPrevious = await rename(target, previous).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return false;
      throw error;
    },
  );
  try {
    await rename(pack, target);
  } catch (error) {
    if (hadPrevious) await rename(previous, target);
    throw error;
  }
}
