/**
 * Does the picture show a scene or object at all, or is it a generated picture (flat colour, a gradient,
 * noise, a drawn shape on a plain ground)? CenterNet answers "which COCO object, if any" with raw scores
 * that on drawn shapes reach those of real objects (a red disc: stop sign 0.48, frisbee 0.53; a blue
 * square: umbrella 0.55; a cup photographed on white: cup 0.32), so no threshold on its score alone
 * both names plain photos and stays silent on generated pictures.
 *
 * The gate is a logistic regression on the detector's own pooled backbone taps (the vector custom
 * classifiers embed with, so it costs one dot product): P(natural picture) = sigmoid(w · x + b), x the
 * taps each L2-normalised, concatenated, L2-normalised again. Below 0.5 it caps every object score
 * (object-detector.ts objectClasses), so a picture it calls generated names nothing; photos it lets
 * through keep their calibrated scores (it was fitted balanced, then its bias shifted so that 0.5 sits
 * just above the most photo-like generated picture it was fitted on: its probability is a guard, not a
 * calibrated factor). Fitted with the calibration by
 * `npm run fit:object-calibration` (real photos against seeded generated pictures; the pictures
 * bench:accuracy and the tests check are drawn from other seeds).
 */
export interface PhotoGate {
  weights: Float32Array;
  bias: number;
}

/** The detector taps (raw pooled outputs, in the pack's order) as the gate's input vector. */
export function gateInput(taps: Float32Array[]): Float32Array {
  const dim = taps.reduce((sum, tap) => sum + tap.length, 0);
  const out = new Float32Array(dim);
  let at = 0;
  for (const tap of taps) {
    let norm = 0;
    for (const v of tap) norm += v * v;
    norm = Math.sqrt(norm);
    for (let j = 0; j < tap.length; j++) out[at + j] = norm > 0 ? tap[j] / norm : 0;
    at += tap.length;
  }
  let norm = 0;
  for (const v of out) norm += v * v;
  norm = Math.sqrt(norm);
  if (norm > 0) for (let j = 0; j < out.length; j++) out[j] /= norm;
  return out;
}

/**
 * P(the picture is a natural photo or scene) from its gate input (gateInput).
 * @throws RangeError when the input's length is not the gate's
 */
export function photoProbability(gate: PhotoGate, input: Float32Array): number {
  if (input.length !== gate.weights.length) {
    throw new RangeError(`the photo gate takes ${gate.weights.length} values, got ${input.length}`);
  }
  let u = gate.bias;
  for (let j = 0; j < input.length; j++) u += gate.weights[j] * input[j];
  return u >= 0 ? 1 / (1 + Math.exp(-u)) : Math.exp(u) / (1 + Math.exp(u));
}

/** Float32 weights as little-endian base64, the form object-calibration.json stores them in. */
export function encodeWeights(weights: Float32Array): string {
  const bytes = Buffer.alloc(weights.length * 4);
  weights.forEach((w, i) => bytes.writeFloatLE(w, i * 4));
  return bytes.toString('base64');
}

export function decodeWeights(base64: string): Float32Array {
  const bytes = Buffer.from(base64, 'base64');
  return Float32Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
}
