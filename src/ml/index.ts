/**
 * The one door into the ML library: everything src/ outside src/ml uses, and nothing more. Tests,
 * bench/ and scripts/ may reach the modules behind it; the service goes through here.
 */
export { openEmbedder } from './open-embedder';
export type { AnalysisPart, Embedder, ImageAnalysis } from './embedder';
export { ImageDecodeError, isImageFile, sniffImageType } from './decode-image';
export type { BuiltinClass } from './types';
export { defaultClasses, DEFAULT_MISSING_OBJECTS_WARNING } from './default-classifier';
export { explicitClasses } from './explicit-classifier';
export { deserializeHead, HeadTrainingError, scoreHead, serializeHead, trainHead, type TrainedHead } from './heads';
export { exportVersion, ModelExportError, PackUnavailableError, type ExportFormat } from './export';
export { loadNegativeBank, trainingBank, type NegativeBank } from './open-set/negative-bank';
export { centredOn, nearDuplicatePairs, NEAR_DUPLICATE_DISTANCE, NEAR_DUPLICATE_MAX_IMAGES } from './near-duplicates';
export { makeThumbnail, THUMBNAIL_SIZE } from './decode-image';
