/** Public shapes of custom-classifier heads: what is trained, stored and scored. */
import type { HeadGate } from './knn-gate';

export interface TrainingSet {
  classes: string[];
  embeddings: Float32Array[];
  /** positives[i] = indices into `classes` that example i is a positive of; [] = a negative example. */
  positives: number[][];
  /**
   * Generic photos (the open-set bank) every class learns as negatives: always in training, never held
   * out or counted in the evaluation.
   */
  implicitNegatives?: Float32Array[];
}

export interface ClassEvaluation {
  class: string;
  precision: number;
  recall: number;
  f1: number;
  roc_auc: number;
  /** Positives of the class among the evaluated examples. */
  support: number;
}

export interface HeadEvaluation {
  method: 'k-fold' | 'holdout';
  /** Cross-validation folds; 1 for a holdout split. */
  folds: number;
  /** Examples scored out of sample: the whole set for k-fold, the held-out part for holdout. */
  examples: number;
  classes: ClassEvaluation[];
  /** Top-1 accuracy over evaluated examples with exactly one positive class, when any. */
  accuracy?: number;
  /**
   * Out-of-sample predictions against the truth, for examples of at most one class. `labels` names
   * rows and columns: the classes in order, then null for "none" (a negative example as the actual
   * class; no score reaching 0.5 as the prediction). `counts[actual][predicted]`. Absent from
   * evaluations made before it was added.
   */
  confusion_matrix?: { labels: Array<string | null>; counts: number[][] };
  /**
   * How far 0.5 can be trusted for photos of none of the classes, out of fold (heads trained with the
   * open-set bank; absent otherwise and in older evaluations). `bank_photos`: bank photos scored by
   * models that did not train on them; `false_positive_rate`: the share of them for which some class
   * (that the photo does not look like: see insideGate) scores ≥ 0.5 after rejection; `recall`: the share
   * of (example, own class) pairs scoring ≥ 0.5 after the "any of my classes" rejection (the k-NN gate
   * passes its own stored positives by construction, so it is not applied here).
   */
  open_set?: { bank_photos: number; false_positive_rate: number; recall: number };
}

/**
 * One logistic "any of my classes vs the world" head, trained on all of the classifier's positives
 * against the open-set bank (and its negatives). decision = weights·(embedding − center) + bias; at or
 * above `threshold` the image is one of the classes' kind. `threshold` is the KNOWN_THRESHOLD_QUANTILE of
 * the classifier's own positives' out-of-fold decisions. Below it every class's log-odds move down by the
 * same amount (see scoreHead), so the ranking is kept and no class reaches 0.5.
 */
export interface KnownHead {
  weights: Float32Array;
  bias: number;
  threshold: number;
}

export interface TrainedHead {
  formatVersion: number;
  packKey: string;
  dim: number;
  classes: string[];
  /** Training mean, subtracted from an embedding before the linear map. */
  center: Float32Array;
  /** classes × dim, row-major. */
  weights: Float32Array;
  bias: Float32Array;
  /** score = sigmoid(a · decision + b) per class. */
  platt: Array<{ a: number; b: number }>;
  /** The k-NN gate (heads of format 2 on); absent in older heads. */
  gate?: HeadGate;
  /** The "any of my classes" head (format 3 heads trained with the open-set bank). */
  known?: KnownHead;
  evaluation: HeadEvaluation;
  /** ISO 8601. */
  trainedAt: string;
  /**
   * Only on a head just trained (not kept in the head file): per training example, in the order given,
   * the calibrated out-of-sample score of each class (from the cross-validation model that did not
   * train on it, Platt-scaled like the evaluation); null for one never held out (a holdout's training part).
   */
  outOfFoldScores?: Array<number[] | null>;
}

export interface TrainHeadOptions {
  packKey: string;
  /**
   * Seeds the fold assignment and the preconditioner's random start: the same
   * data, seed and thread count give a bit-identical head (trainedAt aside). Default 1.
   */
  seed?: number;
  /** onnxruntime intra-op threads. Default: 2, or 1 on a single-core machine. */
  threads?: number;
  /** Requested cross-validation folds (default 5); fewer are used when a class is too small. */
  folds?: number;
  /** Overrides the fixed L2 regularisation strength (DEFAULT_L2); for benchmarks that tune it. */
  l2?: number;
  /** Weight of an implicit negative relative to a user's negative (default IMPLICIT_NEGATIVE_WEIGHT). */
  implicitWeight?: number;
  /** Positives the k-NN gate keeps per class (default GATE_MAX_POSITIVES). */
  gateMaxPositives?: number;
  /**
   * Open-set mechanisms: knownHead and pooledRadius on by default, excludeLookalikes off (bench:accuracy's
   * tutorial scenarios with the 2,602-image bank: unrelated photos at 0.5, objects 23.8% without it, 47.4% with it).
   * `knownHead`: the "any of my classes" head (needs implicit negatives); `excludeLookalikes`: a bank
   * photo inside a class's gate is not a negative of that class; `pooledRadius`: the gate's pooled floor.
   */
  openSet?: { knownHead?: boolean; excludeLookalikes?: boolean; pooledRadius?: boolean; lookalikeMargin?: number };
  /** The preconditioner's assumed log-loss curvature (default ASSUMED_CURVATURE); benchmarks compare. */
  assumedCurvature?: number;
  onProgress?: (fraction: number) => void;
}
