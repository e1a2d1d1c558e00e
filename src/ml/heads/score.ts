import { applyGate } from './knn-gate';
import { sigmoid } from './platt';
import type { TrainedHead } from './types';

/** Linear decision value of each class (before calibration), in head.classes order. */
function headDecisions(head: TrainedHead, embedding: Float32Array): number[] {
  if (embedding.length !== head.dim) {
    throw new RangeError(
      `embedding has ${embedding.length} values but head for pack ${head.packKey} expects ${head.dim}`,
    );
  }
  const centred = new Float64Array(head.dim);
  for (let k = 0; k < head.dim; k++) centred[k] = embedding[k] - head.center[k];
  return head.classes.map((_, c) => {
    const offset = c * head.dim;
    let z = head.bias[c];
    for (let k = 0; k < head.dim; k++) z += head.weights[offset + k] * centred[k];
    return z;
  });
}

/**
 * Calibrated scores in [0,1], in head.classes order; 0.5 is the balanced decision threshold. With a
 * k-NN gate (format-2 heads), a class scores below 0.5 for an image unlike its positives (see applyGate).
 */
export function scoreHead(head: TrainedHead, embedding: Float32Array): number[] {
  const scores = headDecisions(head, embedding).map((z, c) => sigmoid(head.platt[c].a * z + head.platt[c].b));
  return head.gate ? applyGate(head.gate, embedding, scores) : scores;
}
