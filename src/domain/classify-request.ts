import { badRequest } from '../errors';
import { classifyFieldsSchema, DEFAULT_THRESHOLD, parseRequest } from './api-schemas';
import { versionIdFrom } from './lookups';

export { DEFAULT_THRESHOLD };

export interface ClassifyParameters {
  url?: string;
  /** Explicit classifier ids (deduplicated, in request order); overrides owners. */
  classifierIds?: string[];
  owners?: Array<'IBM' | 'me'>;
  threshold: number;
}

function legacyParameters(value: unknown): Record<string, unknown> {
  if (value === undefined || value === '') return {};
  if (typeof value !== 'string') throw badRequest("The 'parameters' field must be a JSON object.");
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw badRequest(
      'The \'parameters\' field is not valid JSON. Send an object such as {"classifier_ids": ["default"], "threshold": 0.6}.',
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw badRequest("The 'parameters' field must be a JSON object.");
  }
  return parsed as Record<string, unknown>;
}

/**
 * Reads classify inputs from form fields or the query string, validated by classifyFieldsSchema
 * (the schema the OpenAPI document shows). The legacy `parameters` JSON field supplies whatever
 * the plain fields leave out. Throws a 400 ApiError naming the bad value.
 */
export function parseClassifyParameters(fields: Record<string, unknown>): ClassifyParameters {
  const legacy = legacyParameters(fields.parameters);
  const pick = (name: string) => {
    const value = fields[name] !== undefined && fields[name] !== '' ? fields[name] : legacy[name];
    return value === null || value === '' ? undefined : value;
  };
  // The legacy JSON may hold lists of non-strings (numbers as ids).
  const list = (name: string) => {
    const value = pick(name);
    return Array.isArray(value) ? value.map(String) : value;
  };
  const parsed = parseRequest(classifyFieldsSchema, {
    url: pick('url'),
    classifier_ids: list('classifier_ids'),
    owners: list('owners'),
    threshold: pick('threshold'),
  });
  return {
    url: parsed.url?.trim() || undefined,
    classifierIds: parsed.classifier_ids,
    owners: parsed.owners,
    threshold: parsed.threshold ?? DEFAULT_THRESHOLD,
  };
}

/** A `classifier_ids` entry: `<classifier_id>` (its current version) or `<classifier_id>@<version_id>` (a pinned one). */
export interface ClassifierRef {
  id: string;
  versionId?: number;
}

/**
 * Splits a `classifier_ids` entry. Generated ids use only [A-Za-z0-9_-], so `@` cannot be part of one.
 * @throws ApiError 400 for a malformed pin (`a@`, `@3`, `a@x`, `a@1@2`, or a pinned built-in).
 */
export function parseClassifierRef(token: string): ClassifierRef {
  const at = token.indexOf('@');
  if (at < 0) return { id: token };
  const id = token.slice(0, at);
  const versionId = versionIdFrom(token.slice(at + 1));
  if (id === '' || versionId === undefined) {
    throw badRequest(
      `The classifier_ids entry '${token.slice(0, 80)}' is not valid. Name a classifier, or pin one of its versions as <classifier_id>@<version_id>, e.g. shapes_1706174669@3 (GET /v3/classifiers/{classifier_id}/versions lists them).`,
    );
  }
  if (id === 'default' || id === 'explicit') {
    throw badRequest(`The built-in classifier '${id}' has no versions to pin. Send '${id}' without '@'.`);
  }
  return { id, versionId };
}
