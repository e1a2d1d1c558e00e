/** Custom-classifier heads: train, score, store. */
export type { ClassEvaluation, HeadEvaluation, TrainedHead, TrainHeadOptions, TrainingSet } from './types';
export { HeadFileError, HeadTrainingError } from './errors';
export { trainHead, DEFAULT_L2 } from './train';
export { scoreHead } from './score';
export { serializeHead, deserializeHead, HEAD_FORMAT_VERSION } from './head-file';
