import { badRequest } from '../errors';

export interface ClassifyParameters {
  url?: string;
  /** Explicit classifier ids (deduplicated, in request order); overrides owners. */
  classifierIds?: string[];
  owners?: Array<'IBM' | 'me'>;
  threshold: number;
}

export const DEFAULT_THRESHOLD = 0.5;

/** A comma-separated list, or the same field repeated (the Go SDK repeats it), or a JSON array. */
function listOf(value: unknown, field: string): string[] | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const parts = Array.isArray(value) ? value : [value];
  const items: string[] = [];
  for (const part of parts) {
    if (typeof part !== 'string') throw badRequest(`The parameter '${field}' must be a comma-separated list of strings.`);
    for (const item of part.split(',')) {
      const trimmed = item.trim();
      if (trimmed !== '' && !items.includes(trimmed)) items.push(trimmed);
    }
  }
  return items.length > 0 ? items : undefined;
}

function thresholdOf(value: unknown): number {
  if (value === undefined || value === null || value === '') return DEFAULT_THRESHOLD;
  const raw = Array.isArray(value) ? value[0] : value;
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  if (!Number.isFinite(n) || n < 0 || n > 1) {
    throw badRequest(`The threshold '${String(raw)}' is not valid. Send a number from 0.0 to 1.0 (the default is 0.5).`);
  }
  return n;
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
 * Reads classify inputs from form fields or the query string. The legacy `parameters` JSON
 * field supplies whatever the plain fields leave out.
 */
export function parseClassifyParameters(fields: Record<string, unknown>): ClassifyParameters {
  const legacy = legacyParameters(fields.parameters);
  const pick = (name: string) => (fields[name] !== undefined && fields[name] !== '' ? fields[name] : legacy[name]);
  const legacyList = (name: string) => {
    const v = pick(name);
    return Array.isArray(v) ? v.map(String) : v;
  };

  const urlValue = pick('url');
  const url = Array.isArray(urlValue) ? urlValue[0] : urlValue;
  if (url !== undefined && typeof url !== 'string') throw badRequest("The 'url' parameter must be a string.");

  const owners = listOf(legacyList('owners'), 'owners')?.map((o) => {
    if (o.toLowerCase() === 'ibm') return 'IBM' as const;
    if (o.toLowerCase() === 'me') return 'me' as const;
    throw badRequest(`The owner '${o}' is not valid. Use owners=IBM (built-in classifiers), owners=me (your classifiers), or both.`);
  });

  return {
    url: url?.trim() || undefined,
    classifierIds: listOf(legacyList('classifier_ids'), 'classifier_ids'),
    owners: owners ? [...new Set(owners)] : undefined,
    threshold: thresholdOf(pick('threshold')),
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
  const version = token.slice(at + 1);
  if (id === '' || !/^\d{1,15}$/.test(version) || Number(version) < 1) {
    throw badRequest(
      `The classifier_ids entry '${token.slice(0, 80)}' is not valid. Name a classifier, or pin one of its versions as <classifier_id>@<version_id>, e.g. shapes_1706174669@3 (GET /v3/classifiers/{classifier_id}/versions lists them).`,
    );
  }
  if (id === 'default' || id === 'explicit') {
    throw badRequest(`The built-in classifier '${id}' has no versions to pin. Send '${id}' without '@'.`);
  }
  return { id, versionId: Number(version) };
}
