/** Shared types of the ML library (src/ml); the rest of the service reaches the library through src/ml/index.ts. */

export type PackId = 'bundled' | 'imagenet';

/** Describes one model pack on disk: `<modelsDir>/<id>/manifest.json` next to its ONNX file. */
export interface PackManifest {
  id: PackId;
  /** Bumped whenever the pack's conversion changes, so cached embeddings of an older build are not reused. */
  version: number;
  /** ONNX file name inside the pack directory. */
  model: string;
  input: {
    name: string;
    size: number;
    /** Per-channel normalisation: value = (pixel / 255 - mean) / std. */
    mean: [number, number, number];
    std: [number, number, number];
  };
  embedding: {
    /** Output tensors whose pooled values are L2-normalised one by one, concatenated, then L2-normalised again. */
    outputs: string[];
    dim: number;
  };
  /** Built-in heads the model computes directly. */
  heads: {
    /** nsfwjs classes (drawing, hentai, neutral, porn, sexy), softmax probabilities. */
    explicit?: { output: string; labels: string[] };
    /** ImageNet logits; labels and hierarchy live in files of the pack. */
    imagenet?: { output: string; labelsFile: string };
  };
}

/** The pack id plus version, as recorded on cached embeddings and trained heads. */
export function packKey(manifest: Pick<PackManifest, 'id' | 'version'>): string {
  return `${manifest.id}@${manifest.version}`;
}

/**
 * The parts of an embedding's key as the Embedder writes it: `<pack>@<v>`, or `<pack>@<v>+centernet@<v>`
 * when the detector's taps joined the embedding.
 */
export function splitEmbeddingKey(key: string): { pack: string; packId: string; detector?: string } {
  const [pack, detector] = key.split('+');
  return { pack, packId: pack.split('@')[0], detector };
}

export interface ImageInput {
  /** File name for messages ("beagle.zip/3.jpg"). */
  name: string;
  bytes: Buffer;
}

export interface BuiltinClass {
  class: string;
  score: number;
  type_hierarchy?: string;
}
