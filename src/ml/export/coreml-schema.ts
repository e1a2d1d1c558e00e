/**
 * The subset of Apple's Core ML model specification (coremltools `mlmodel/format`, BSD-3) this
 * exporter writes, declared for protobufjs with the spec's own field numbers. Only the messages and
 * fields the exporter emits are here; the wire format is protobuf's, so a reader with the full
 * schema decodes these files unchanged (test/ml/coreml-export.test.ts checks that against Apple's
 * .proto files).
 */
import protobuf from 'protobufjs';

type Fields = Record<string, { type: string; id: number; rule?: 'repeated'; keyType?: string }>;

const f = (type: string, id: number, repeated = false) =>
  repeated ? { type, id, rule: 'repeated' as const } : { type, id };
const msg = (fields: Fields, nested?: Record<string, unknown>) => ({ fields, ...(nested ? { nested } : {}) });
const empty = { fields: {} };

const schema = {
  nested: {
    CoreML: {
      nested: {
        Specification: {
          nested: {
            // Model.proto
            Model: msg({
              specificationVersion: f('int32', 1),
              description: f('ModelDescription', 2),
              neuralNetworkClassifier: f('NeuralNetworkClassifier', 403),
            }),
            ModelDescription: msg({
              input: f('FeatureDescription', 1, true),
              output: f('FeatureDescription', 10, true),
              predictedFeatureName: f('string', 11),
              predictedProbabilitiesName: f('string', 12),
              metadata: f('Metadata', 100),
            }),
            Metadata: msg({
              shortDescription: f('string', 1),
              versionString: f('string', 2),
              author: f('string', 3),
              license: f('string', 4),
              userDefined: { type: 'string', keyType: 'string', id: 100 },
            }),
            FeatureDescription: msg({
              name: f('string', 1),
              shortDescription: f('string', 2),
              type: f('FeatureType', 3),
            }),
            // FeatureTypes.proto
            FeatureType: msg({
              stringType: f('StringFeatureType', 3),
              imageType: f('ImageFeatureType', 4),
              dictionaryType: f('DictionaryFeatureType', 6),
            }),
            StringFeatureType: empty,
            ImageFeatureType: msg({ width: f('int64', 1), height: f('int64', 2), colorSpace: f('int32', 3) }),
            DictionaryFeatureType: msg({ stringKeyType: f('StringFeatureType', 2) }),
            // DataStructures.proto
            StringVector: msg({ vector: f('string', 1, true) }),
            // NeuralNetwork.proto
            NeuralNetworkClassifier: msg({
              layers: f('NeuralNetworkLayer', 1, true),
              preprocessing: f('NeuralNetworkPreprocessing', 2, true),
              stringClassLabels: f('StringVector', 100),
              labelProbabilityLayerName: f('string', 200),
            }),
            NeuralNetworkPreprocessing: msg({ featureName: f('string', 1), scaler: f('NeuralNetworkImageScaler', 10) }),
            NeuralNetworkImageScaler: msg({
              channelScale: f('float', 10),
              blueBias: f('float', 20),
              greenBias: f('float', 21),
              redBias: f('float', 22),
            }),
            NeuralNetworkLayer: msg({
              name: f('string', 1),
              input: f('string', 2, true),
              output: f('string', 3, true),
              convolution: f('ConvolutionLayerParams', 100),
              pooling: f('PoolingLayerParams', 120),
              activation: f('ActivationParams', 130),
              innerProduct: f('InnerProductLayerParams', 140),
              l2normalize: f('L2NormalizeLayerParams', 170),
              softmax: f('SoftmaxLayerParams', 175),
              padding: f('PaddingLayerParams', 200),
              unary: f('UnaryFunctionLayerParams', 220),
              add: f('AddLayerParams', 230),
              multiply: f('MultiplyLayerParams', 231),
              scale: f('ScaleLayerParams', 245),
              bias: f('BiasLayerParams', 250),
              flatten: f('FlattenLayerParams', 301),
              permute: f('PermuteLayerParams', 310),
              concat: f('ConcatLayerParams', 320),
            }),
            ActivationParams: msg({
              linear: f('ActivationLinear', 5),
              ReLU: f('ActivationReLU', 10),
              sigmoid: f('ActivationSigmoid', 40),
              sigmoidHard: f('ActivationSigmoidHard', 41),
            }),
            ActivationLinear: msg({ alpha: f('float', 1), beta: f('float', 2) }),
            ActivationReLU: empty,
            ActivationSigmoid: empty,
            ActivationSigmoidHard: msg({ alpha: f('float', 1), beta: f('float', 2) }),
            // `repeated float floatValue = 1` in the spec. A packed repeated float is, on the wire, a
            // length-delimited run of little-endian float32s: exactly a `bytes` field with the same
            // number. Declaring it as bytes writes megabytes of weights in one copy instead of one
            // protobufjs operation per float; readers with Apple's schema see the repeated float.
            WeightParams: msg({ floatValue: f('bytes', 1) }),
            BorderAmounts: msg(
              { borderAmounts: f('EdgeSizes', 10, true) },
              { EdgeSizes: msg({ startEdgeSize: f('uint64', 1), endEdgeSize: f('uint64', 2) }) },
            ),
            ValidPadding: msg({ paddingAmounts: f('BorderAmounts', 1) }),
            ConvolutionLayerParams: msg({
              outputChannels: f('uint64', 1),
              kernelChannels: f('uint64', 2),
              nGroups: f('uint64', 10),
              kernelSize: f('uint64', 20, true),
              stride: f('uint64', 30, true),
              dilationFactor: f('uint64', 40, true),
              valid: f('ValidPadding', 50),
              hasBias: f('bool', 70),
              weights: f('WeightParams', 90),
              bias: f('WeightParams', 91),
            }),
            InnerProductLayerParams: msg({
              inputChannels: f('uint64', 1),
              outputChannels: f('uint64', 2),
              hasBias: f('bool', 10),
              weights: f('WeightParams', 20),
              bias: f('WeightParams', 21),
            }),
            PoolingLayerParams: msg({
              type: f('int32', 1),
              kernelSize: f('uint64', 10, true),
              stride: f('uint64', 20, true),
              valid: f('ValidPadding', 30),
              avgPoolExcludePadding: f('bool', 50),
              globalPooling: f('bool', 60),
            }),
            PaddingLayerParams: msg(
              { constant: f('PaddingConstant', 1), paddingAmounts: f('BorderAmounts', 10) },
              { PaddingConstant: msg({ value: f('float', 1) }) },
            ),
            UnaryFunctionLayerParams: msg({
              type: f('int32', 1),
              alpha: f('float', 2),
              epsilon: f('float', 3),
              shift: f('float', 4),
              scale: f('float', 5),
            }),
            AddLayerParams: msg({ alpha: f('float', 1) }),
            MultiplyLayerParams: msg({ alpha: f('float', 1) }),
            ScaleLayerParams: msg({
              shapeScale: f('uint64', 1, true),
              scale: f('WeightParams', 2),
              hasBias: f('bool', 3),
              shapeBias: f('uint64', 4, true),
              bias: f('WeightParams', 5),
            }),
            BiasLayerParams: msg({ shape: f('uint64', 1, true), bias: f('WeightParams', 2) }),
            L2NormalizeLayerParams: msg({ epsilon: f('float', 1) }),
            SoftmaxLayerParams: empty,
            FlattenLayerParams: msg({ mode: f('int32', 1) }),
            PermuteLayerParams: msg({ axis: f('uint64', 1, true) }),
            ConcatLayerParams: msg({ sequenceConcat: f('bool', 100) }),
          },
        },
      },
    },
  },
};

/** Enum values of the spec used by the exporter (enums are written as their int32 values). */
export const COREML = {
  /** ImageFeatureType.ColorSpace.RGB */
  colorSpaceRgb: 20,
  /** PoolingLayerParams.PoolingType */
  poolingMax: 0,
  poolingAverage: 1,
  /** UnaryFunctionLayerParams.Operation.THRESHOLD: max(alpha, x) */
  unaryThreshold: 7,
  /** FlattenLayerParams.FlattenOrder.CHANNEL_FIRST */
  flattenChannelFirst: 0,
} as const;

/** A WeightParams message holding `values` as float32 (see the note on WeightParams above). */
export function weightParams(values: ArrayLike<number>): { floatValue: Uint8Array } {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
  return { floatValue: bytes };
}

let modelType: protobuf.Type | undefined;

/**
 * Encodes a Core ML `Model` message given as a plain object shaped like the spec (camelCase field
 * names, enums as their numbers, weights from weightParams).
 */
export function encodeCoreMlModel(model: Record<string, unknown>): Uint8Array {
  modelType ??= protobuf.Root.fromJSON(schema as protobuf.INamespace).lookupType('CoreML.Specification.Model');
  return modelType.encode(model).finish();
}
