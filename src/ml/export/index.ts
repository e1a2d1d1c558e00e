import fs from 'node:fs/promises';
import type { TrainedHead } from '../heads';
import type { LoadedPack } from '../model-pack';
import { buildClassifierOnnx, encodeOnnx, exportMetadata, packEmbeddingSource, type ExportInfo } from './classifier-onnx';
import { onnxToCoreMlClassifier } from './onnx-to-coreml';

export { ModelExportError } from './errors';
export { EXPORT_INPUT, EXPORT_SCORES, type ExportInfo, type ExportedInput } from './classifier-onnx';
export { COREML_INPUT, COREML_LABEL, COREML_PROBABILITIES } from './onnx-to-coreml';

export type ExportFormat = 'onnx' | 'coreml';

/**
 * One classifier version as a self-contained model file: `onnx` (input `image` [N,3,S,S] float,
 * output `scores` [N,classes]) or `coreml` (an .mlmodel NeuralNetworkClassifier with an RGB image
 * input). Reads the pack's ONNX model; throws ModelExportError when something cannot be expressed.
 */
export async function exportClassifier(pack: LoadedPack, head: TrainedHead, info: ExportInfo, format: ExportFormat): Promise<Uint8Array> {
  const built = buildClassifierOnnx([packEmbeddingSource(await fs.readFile(pack.modelPath), pack.manifest)], head, info);
  if (format === 'onnx') return encodeOnnx(built.model);
  return onnxToCoreMlClassifier(built.model, {
    classes: built.classes,
    input: built.input,
    shortDescription: `Custom classifier '${info.name}' (${info.classifierId}), version ${info.versionId}: calibrated one-vs-rest scores per class.`,
    versionString: String(info.versionId),
    metadata: exportMetadata(built.input, head, info),
  }).bytes;
}
