import type { ClassifierRepository, StoredUploadReport } from '../data-access/db/classifier-repository';
import { MAX_LISTED, type UnusedEntry, type ZipUploadReport } from './ingest-examples';

/**
 * The `upload` extension of the create/update answer and of GET /v3/classifiers/{id}: what became
 * of each zip of the classifier's latest upload, and how many images its next version trains on.
 */
export interface UploadSummary {
  /** Distinct images the classifier's next version trains on: its `examples` count once trained. */
  training_examples: number;
  /**
   * false: the counts are those of the checks at upload (format, header, structure), and training has
   * yet to decode the images; true: training decoded them, and the images that failed are taken off
   * the counts and listed first in `not_used` (issue 22).
   */
  decoded: boolean;
  files: ZipUploadReport[];
}

/** The report as the create/update answered it, kept with each zip's class (null: negative_examples). */
interface CheckedUpload {
  files: ZipUploadReport[];
  classNames: Array<string | null>;
}

/** The report as training left it, once every image of the upload was decoded. */
interface DecodedUpload {
  files: ZipUploadReport[];
  training_examples: number;
}

/** What the repository keeps of an upload: its reports, and the class each zip's examples went to. */
export function checkedUploadRecord(files: ZipUploadReport[], classNames: Array<string | null>): CheckedUpload {
  return { files, classNames };
}

/**
 * The latest upload's summary for GET /v3/classifiers/{id}: as training left it once decoded, else as
 * answered (with `training_examples` counted now). Undefined for a classifier no upload reported on
 * (created before issue 22).
 */
export async function latestUploadSummary(
  classifiers: ClassifierRepository,
  classifierId: string,
): Promise<UploadSummary | undefined> {
  const stored = await classifiers.latestUploadReport(classifierId);
  if (!stored) return undefined;
  if (stored.decoded !== null) {
    const decoded = stored.decoded as DecodedUpload;
    return { training_examples: decoded.training_examples, decoded: true, files: decoded.files };
  }
  return {
    training_examples: await classifiers.distinctImageCount(classifierId),
    decoded: false,
    files: (stored.checked as CheckedUpload).files,
  };
}

/** An accepted image of the upload that training could not decode. */
export interface DecodeFailure {
  className: string | null;
  entryName: string;
  reason: string;
}

/**
 * The upload's report once its images are decoded: each zip loses the accepted images that failed
 * (from `decodable`, `distinct` and `accepted`), which come first in its `not_used` list. Pure; applied
 * to the report as answered, so a retried run computes the same result.
 */
export function decodedUpload(
  stored: StoredUploadReport,
  failures: DecodeFailure[],
  trainingExamples: number,
): DecodedUpload {
  const checked = stored.checked as CheckedUpload;
  const files = checked.files.map((file, i) => {
    const failed: UnusedEntry[] = failures
      .filter((f) => f.className === checked.classNames[i])
      .map((f) => ({ entry: f.entryName, reason: f.reason }));
    if (failed.length === 0) return file;
    return {
      ...file,
      decodable: file.decodable - failed.length,
      distinct: file.distinct - failed.length,
      accepted: file.accepted - failed.length,
      not_used: [...failed, ...file.not_used].slice(0, MAX_LISTED),
      not_used_count: file.not_used_count + failed.length,
    };
  });
  return { files, training_examples: trainingExamples };
}

/** The class each zip of the stored upload trained, by the zip's form field. */
export function uploadClassNames(stored: StoredUploadReport): Map<string, string | null> {
  const checked = stored.checked as CheckedUpload;
  return new Map(checked.files.map((f, i) => [f.file, checked.classNames[i]]));
}
