import fs from 'node:fs/promises';
import { CENTERNET_INPUT_NAME } from '../detector/centernet-converter';
import { installedDetectorPack, type DetectorPack } from '../detector/detector-pack';
import type { TrainedHead } from '../heads';
import { loadPack, PackError, type LoadedPack } from '../model-pack';
import { packKey, splitEmbeddingKey, type PackId } from '../types';
import {
  buildClassifierOnnx,
  encodeOnnx,
  exportMetadata,
  packEmbeddingSource,
  type ExportInfo,
} from './classifier-onnx';
import { PackUnavailableError } from './errors';
import { onnxToCoreMlClassifier } from './onnx-to-coreml';

export { ModelExportError, PackUnavailableError } from './errors';
export { EXPORT_INPUT, EXPORT_SCORES, type ExportInfo, type ExportedInput } from './classifier-onnx';
export { COREML_INPUT, COREML_LABEL, COREML_PROBABILITIES } from './onnx-to-coreml';

export type ExportFormat = 'onnx' | 'coreml';

/**
 * One trained head as a self-contained model file, built with the packs its embedding key names (the
 * model pack, and the detector when its taps are part of the embedding) as installed under modelsDir.
 * Only reads what is installed, never converts or installs a pack: throws PackUnavailableError when one
 * is missing or of another version, and ModelExportError when something cannot be expressed.
 */
export async function exportVersion(
  modelsDir: string,
  head: TrainedHead,
  info: ExportInfo,
  format: ExportFormat,
): Promise<Uint8Array> {
  const key = splitEmbeddingKey(head.packKey);
  const pack = await loadPack(modelsDir, key.packId as PackId).catch((error: unknown) => {
    if (error instanceof PackError) return undefined;
    throw error;
  });
  const detector = key.detector === undefined ? undefined : await installedDetectorPack(modelsDir);
  if (!pack || packKey(pack.manifest) !== key.pack || detector?.key !== key.detector)
    throw new PackUnavailableError(head.packKey);
  return exportClassifier(pack, head, info, format, detector);
}

/**
 * One classifier version as a self-contained model file: `onnx` (input `image` [N,3,S,S] float,
 * output `scores` [N,classes]) or `coreml` (an .mlmodel NeuralNetworkClassifier with an RGB image
 * input). Reads the pack's ONNX model, and the detector's for heads whose embedding includes its taps
 * (the export's input is then the detector's size); throws ModelExportError when something cannot be expressed.
 */
async function exportClassifier(
  pack: LoadedPack,
  head: TrainedHead,
  info: ExportInfo,
  format: ExportFormat,
  detector?: DetectorPack,
): Promise<Uint8Array> {
  const sources = [packEmbeddingSource(await fs.readFile(pack.modelPath), pack.manifest)];
  if (detector) {
    sources.push({
      model: await fs.readFile(detector.modelPath),
      // CenterNet takes RGB 0–255: value = (pixel / 255 − 0) / (1 / 255).
      input: {
        name: CENTERNET_INPUT_NAME,
        size: detector.inputSize,
        mean: [0, 0, 0],
        std: [1 / 255, 1 / 255, 1 / 255],
      },
      outputs: detector.taps.map((tap) => tap.output),
      dim: detector.taps.reduce((sum, tap) => sum + tap.dim, 0),
    });
  }
  const built = buildClassifierOnnx(sources, head, info);
  if (format === 'onnx') return encodeOnnx(built.model);
  return onnxToCoreMlClassifier(built.model, {
    classes: built.classes,
    input: built.input,
    shortDescription: `Custom classifier '${info.name}' (${info.classifierId}), version ${info.versionId}: calibrated one-vs-rest scores per class.`,
    versionString: String(info.versionId),
    metadata: exportMetadata(built.input, head, info),
  }).bytes;
}
