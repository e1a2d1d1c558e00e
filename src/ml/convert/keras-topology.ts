import { LayerConversionError, ModelConversionError } from './errors';

/** The Keras 2 functional-model JSON that TF.js layers models carry in `modelTopology`. */
export interface KerasModelTopology {
  model_config?: KerasModelConfig;
  class_name?: string;
  config?: KerasModelConfig['config'];
}

export interface KerasModelConfig {
  class_name: string;
  config: {
    name?: string;
    layers: KerasLayerJson[];
    input_layers: Array<[string, number, number]>;
    output_layers: Array<[string, number, number]>;
  };
}

export interface KerasLayerJson {
  name: string;
  class_name: string;
  config: Record<string, unknown>;
  /** One entry per call of the layer; each lists `[layerName, nodeIndex, tensorIndex, kwargs]`. */
  inbound_nodes: unknown[];
}

/** A layer with its inputs resolved to layer names, in the model's (topological) order. */
export interface KerasLayer {
  name: string;
  className: string;
  config: Record<string, unknown>;
  inputs: string[];
  /** Names of the layers that take this layer's output. */
  consumers: string[];
}

export interface KerasGraph {
  layers: KerasLayer[];
  byName: Map<string, KerasLayer>;
  inputLayer: string;
  outputLayers: string[];
}

/** Resolves `inbound_nodes` into plain edges; only single-call layers with one output each are supported. */
export function parseKerasGraph(topology: KerasModelTopology, file: string): KerasGraph {
  const modelConfig: KerasModelConfig | undefined =
    topology.model_config ??
    (topology.class_name && topology.config ? { class_name: topology.class_name, config: topology.config } : undefined);
  if (!modelConfig || !Array.isArray(modelConfig.config?.layers)) {
    throw new ModelConversionError(file, 'modelTopology has no model_config.config.layers');
  }
  if (modelConfig.class_name !== 'Model' && modelConfig.class_name !== 'Functional') {
    throw new ModelConversionError(file, `only functional models are supported, not ${modelConfig.class_name}`);
  }
  const layers: KerasLayer[] = modelConfig.config.layers.map((json) => ({
    name: json.name,
    className: json.class_name,
    config: json.config,
    inputs: inboundLayerNames(json),
    consumers: [],
  }));
  const byName = new Map(layers.map((layer) => [layer.name, layer]));
  for (const layer of layers) {
    for (const input of layer.inputs) {
      const producer = byName.get(input);
      if (!producer)
        throw new LayerConversionError(layer.name, layer.className, `input ${input} is not a layer of the model`);
      producer.consumers.push(layer.name);
    }
  }
  const { input_layers: inputs, output_layers: outputs } = modelConfig.config;
  if (inputs.length !== 1) throw new ModelConversionError(file, `expected one input layer, found ${inputs.length}`);
  return { layers, byName, inputLayer: inputs[0][0], outputLayers: outputs.map((output) => output[0]) };
}

function inboundLayerNames(json: KerasLayerJson): string[] {
  if (json.inbound_nodes.length === 0) return [];
  if (json.inbound_nodes.length > 1) {
    throw new LayerConversionError(
      json.name,
      json.class_name,
      'shared layers (called more than once) are not supported',
    );
  }
  const call = json.inbound_nodes[0];
  if (!Array.isArray(call)) {
    throw new LayerConversionError(
      json.name,
      json.class_name,
      'unsupported inbound_nodes format (expected Keras 2 lists)',
    );
  }
  return call.map((edge) => {
    if (!Array.isArray(edge) || typeof edge[0] !== 'string' || edge[1] !== 0 || edge[2] !== 0) {
      throw new LayerConversionError(json.name, json.class_name, `unsupported inbound edge ${JSON.stringify(edge)}`);
    }
    return edge[0];
  });
}
