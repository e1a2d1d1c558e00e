import { badRequest } from '../errors';
import type { Warning } from './api-schemas';

/** One uploaded zip of examples: a class's positives, or the negatives (className null). */
export interface ExampleUpload {
  fieldName: string;
  className: string | null;
  path: string;
}

export interface UploadedFile {
  fieldname: string;
  path: string;
}

const POSITIVE_SUFFIX = '_positive_examples';
const NEGATIVE_FIELD = 'negative_examples';
// Watson's rule for class names.
const FORBIDDEN_CLASS_CHARACTERS = ['$', '*', '-', '{', '}', '\\', '|', '/', "'", '"', '`', '[', ']'];
const MAX_CLASS_NAME_LENGTH = 256;

export function validateClassName(className: string, fieldName: string): void {
  if (className.trim() === '') {
    throw badRequest(
      `The field '${fieldName}' has an empty class name. Name the field '<class>_positive_examples', for example 'beagle_positive_examples'.`,
    );
  }
  // The first one as it appears in the name, so the message points where the user will look.
  const bad = [...className].find((c) => FORBIDDEN_CLASS_CHARACTERS.includes(c));
  if (bad) {
    throw badRequest(
      `The class name '${className}' contains the character '${bad}', which is not allowed. ` +
        `Class names cannot contain any of: ${FORBIDDEN_CLASS_CHARACTERS.join(' ')}. Rename the field '${fieldName}'.`,
    );
  }
  if ([...className].length > MAX_CLASS_NAME_LENGTH) {
    throw badRequest(
      `The class name in the field '${fieldName}' is ${[...className].length} characters long; at most ${MAX_CLASS_NAME_LENGTH} are allowed.`,
    );
  }
}

/**
 * Reads the example zips of a create or update request from the multipart file fields:
 * `{class}_positive_examples` (one per class) and at most one `negative_examples`.
 */
export function parseExampleUploads(files: UploadedFile[]): ExampleUpload[] {
  const uploads: ExampleUpload[] = [];
  const seenFields = new Set<string>();
  for (const file of files) {
    const field = file.fieldname;
    if (seenFields.has(field)) {
      throw badRequest(
        field === NEGATIVE_FIELD
          ? `More than one 'negative_examples' file was sent. Send at most one zip of negative examples per request.`
          : `The field '${field}' was sent more than once. Put all images of a class into one zip per request.`,
      );
    }
    seenFields.add(field);
    if (field === NEGATIVE_FIELD) {
      uploads.push({ fieldName: field, className: null, path: file.path });
    } else if (field.endsWith(POSITIVE_SUFFIX)) {
      const className = field.slice(0, -POSITIVE_SUFFIX.length);
      validateClassName(className, field);
      uploads.push({ fieldName: field, className, path: file.path });
    } else {
      throw badRequest(
        `Unexpected file field '${field}'. Send example zips as '<class>_positive_examples' or 'negative_examples'.`,
      );
    }
  }
  return uploads;
}

/** Equal when only case differs (accents still count): how a person would read two class names. */
const sameIgnoringCase = new Intl.Collator('und', { sensitivity: 'accent' });

/**
 * A warning for each pair of classes whose names differ only in case, one of them sent in this
 * request (`sent`): Watson's class names are case-sensitive, so `Circles` and `circles` are two
 * classes. Whether that was meant cannot be known, so it is said rather than guessed.
 */
export function caseOnlyClassWarnings(classes: string[], sent: string[]): Warning[] {
  const warnings: Warning[] = [];
  const said = new Set<string>();
  for (const name of new Set(sent)) {
    for (const other of classes) {
      if (other === name || sameIgnoringCase.compare(other, name) !== 0) continue;
      const pair = JSON.stringify([name, other].sort());
      if (said.has(pair)) continue;
      said.add(pair);
      warnings.push({
        warning_id: 'class_names_differ_only_in_case',
        description:
          `The classes '${name}' and '${other}' differ only in case. Class names are case-sensitive, so they are two classes. ` +
          'If you meant one, spell it the same way in every <class>_positive_examples field.',
      });
    }
  }
  return warnings;
}
