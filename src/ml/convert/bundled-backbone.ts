import { ModelConversionError } from './errors';
import { parseKerasGraph } from './keras-topology';
import { convertKerasToOnnx } from './layers-to-onnx';
import { readNsfwjsMobilenetV2 } from './nsfwjs-model';
import { decodeTfjsWeights, loadTfjsCpu } from './tfjs';

export const BUNDLED_INPUT_NAME = 'input';
export const BUNDLED_INPUT_SIZE = 224;
export const EXPLICIT_OUTPUT = 'explicit_probs';

/**
 * Expansion activations of three late MobileNetV2 blocks, globally average-pooled. Block 10 still
 * holds ImageNet weights; 12 and 14 add the fine-tuned layers' larger receptive fields.
 */
export const EMBEDDING_TAPS = [
  { layer: 'block_10_expand_relu', output: 'block_10_expand_pool', dim: 384 },
  { layer: 'block_12_expand_relu', output: 'block_12_expand_pool', dim: 576 },
  { layer: 'block_14_expand_relu', output: 'block_14_expand_pool', dim: 960 },
] as const;

export interface BundledBackbone {
  /** The serialised ONNX model. */
  model: Uint8Array;
  /** Labels of the `explicit_probs` softmax, in output order. */
  explicitLabels: string[];
}

/** Converts nsfwjs's MobileNetV2 (TF.js layers) to ONNX with the embedding taps and the 5-class head as outputs. */
export async function convertBundledBackbone(): Promise<BundledBackbone> {
  const artifacts = readNsfwjsMobilenetV2();
  const tf = await loadTfjsCpu();
  const weights = decodeTfjsWeights(tf, artifacts.weightData, artifacts.weightSpecs);
  const graph = parseKerasGraph(artifacts.modelTopology, `${artifacts.dir}/model.min.js`);
  if (graph.outputLayers.length !== 1) {
    throw new ModelConversionError(
      `${artifacts.dir}/model.min.js`,
      `expected one output layer, found ${graph.outputLayers.length}`,
    );
  }
  const model = convertKerasToOnnx(graph, weights, {
    graphName: 'nsfwjs_mobilenet_v2',
    inputName: BUNDLED_INPUT_NAME,
    outputs: [
      ...EMBEDDING_TAPS.map((tap) => ({ layer: tap.layer, name: tap.output, globalAveragePool: true })),
      { layer: graph.outputLayers[0], name: EXPLICIT_OUTPUT },
    ],
  });
  return { model, explicitLabels: artifacts.labels };
}
