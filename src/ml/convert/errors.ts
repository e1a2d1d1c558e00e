/** A model could not be read or converted; `file` names the model file (or layer), `reason` says why. */
export class ModelConversionError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'ModelConversionError';
  }
}

/** One layer of a Keras model cannot be expressed in ONNX by this converter. */
export class LayerConversionError extends Error {
  constructor(
    readonly layerName: string,
    readonly className: string,
    readonly reason: string,
  ) {
    super(`layer ${layerName} (${className}): ${reason}`);
    this.name = 'LayerConversionError';
  }
}
