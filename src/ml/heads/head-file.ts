import { createHash } from 'crypto';
import { decodeFloat16, encodeFloat16 } from '../open-set/float16';
import { HeadFileError } from './errors';
import type { HeadEvaluation, TrainedHead } from './types';

/**
 * Head file layout (all little-endian):
 *   8 bytes  magic "WVRHEAD\0"
 *   u32      format version
 *   u32      header length H
 *   H bytes  UTF-8 JSON: packKey, dim, classes, platt, evaluation, trainedAt; from version 2 also
 *            gate: { k, counts, radius } (a radius of null stands for Infinity)
 *   0–3 zero bytes so the arrays start 4-byte aligned
 *   f32[dim] center, f32[classes·dim] weights, f32[classes] bias
 *   version 3, with a known head (header known: { bias, threshold }): f32[dim] its weights
 *   version 2 on: f16[Σcounts·dim] the gate's positives
 *   32 bytes SHA-256 of everything before it
 * Version 1 (no gate) and 2 (no known head) files are still read.
 */
export const HEAD_FORMAT_VERSION = 3;
const READABLE_VERSIONS = [1, 2, 3];
const MAGIC = Buffer.from('WVRHEAD\0', 'latin1');
const PREFIX_BYTES = MAGIC.length + 8;
const CHECKSUM_BYTES = 32;

interface HeadHeader {
  packKey: string;
  dim: number;
  classes: string[];
  platt: Array<{ a: number; b: number }>;
  evaluation: HeadEvaluation;
  trainedAt: string;
  gate?: { k: number; counts: number[]; radius: Array<number | null> };
  known?: { bias: number; threshold: number };
}

export function serializeHead(head: TrainedHead): Buffer {
  if (head.formatVersion !== HEAD_FORMAT_VERSION) {
    throw new RangeError(
      `cannot write head format version ${head.formatVersion}; this build writes version ${HEAD_FORMAT_VERSION}`,
    );
  }
  const classes = head.classes.length;
  if (
    head.center.length !== head.dim ||
    head.weights.length !== classes * head.dim ||
    head.bias.length !== classes ||
    head.platt.length !== classes
  ) {
    throw new RangeError(`head arrays do not match dim ${head.dim} and ${classes} classes`);
  }
  const header: HeadHeader = {
    packKey: head.packKey,
    dim: head.dim,
    classes: head.classes,
    platt: head.platt,
    evaluation: head.evaluation,
    trainedAt: head.trainedAt,
  };
  const { gate } = head;
  if (gate) {
    const stored = gate.counts.reduce((sum, n) => sum + n, 0);
    if (
      gate.counts.length !== classes ||
      gate.radius.length !== classes ||
      gate.positives.length !== stored * head.dim
    ) {
      throw new RangeError(`gate arrays do not match dim ${head.dim} and ${classes} classes`);
    }
    header.gate = { k: gate.k, counts: gate.counts, radius: gate.radius.map((r) => (Number.isFinite(r) ? r : null)) };
  }
  const { known } = head;
  if (known) {
    if (known.weights.length !== head.dim) throw new RangeError(`known head weights do not match dim ${head.dim}`);
    header.known = { bias: known.bias, threshold: known.threshold };
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const arraysStart = align4(PREFIX_BYTES + json.length);
  const floats = head.dim + classes * head.dim + classes + (known ? head.dim : 0);
  const halves = gate ? encodeFloat16(gate.positives) : Buffer.alloc(0);
  const bytes = Buffer.alloc(arraysStart + floats * 4 + halves.length + CHECKSUM_BYTES);
  MAGIC.copy(bytes, 0);
  bytes.writeUInt32LE(HEAD_FORMAT_VERSION, MAGIC.length);
  bytes.writeUInt32LE(json.length, MAGIC.length + 4);
  json.copy(bytes, PREFIX_BYTES);
  let offset = arraysStart;
  for (const array of [head.center, head.weights, head.bias, ...(known ? [known.weights] : [])]) {
    for (let k = 0; k < array.length; k++, offset += 4) bytes.writeFloatLE(array[k], offset);
  }
  offset += halves.copy(bytes, offset);
  checksum(bytes.subarray(0, offset)).copy(bytes, offset);
  return bytes;
}

/** Reads a head file; `source` names it in errors. */
export function deserializeHead(bytes: Buffer, source = 'head file'): TrainedHead {
  const fail = (reason: string): never => {
    throw new HeadFileError(source, reason);
  };
  if (bytes.length < MAGIC.length) fail(`too short to be a head file (${bytes.length} bytes)`);
  if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) fail('not a head file (wrong magic bytes)');
  if (bytes.length < PREFIX_BYTES)
    fail(`truncated: ${bytes.length} bytes, shorter than the ${PREFIX_BYTES}-byte prefix`);
  const version = bytes.readUInt32LE(MAGIC.length);
  if (!READABLE_VERSIONS.includes(version))
    fail(`head format version ${version} is not supported (this build reads versions ${READABLE_VERSIONS.join(', ')})`);
  const headerLength = bytes.readUInt32LE(MAGIC.length + 4);
  if (PREFIX_BYTES + headerLength > bytes.length)
    fail(`truncated: header needs ${headerLength} bytes, file has ${bytes.length - PREFIX_BYTES} left`);

  let header: HeadHeader;
  try {
    header = JSON.parse(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength).toString('utf8')) as HeadHeader;
  } catch {
    return fail('corrupt header (not valid JSON)');
  }
  const classes = Array.isArray(header.classes) ? header.classes.length : -1;
  if (
    !Number.isInteger(header.dim) ||
    header.dim <= 0 ||
    classes < 1 ||
    !Array.isArray(header.platt) ||
    header.platt.length !== classes
  ) {
    fail('corrupt header (dim, classes or calibration missing)');
  }
  const gate = version >= 2 ? header.gate : undefined;
  if (version >= 2) {
    const valid =
      gate &&
      Number.isInteger(gate.k) &&
      gate.k > 0 &&
      Array.isArray(gate.counts) &&
      gate.counts.length === classes &&
      gate.counts.every((n) => Number.isInteger(n) && n >= 0) &&
      Array.isArray(gate.radius) &&
      gate.radius.length === classes;
    if (!valid) fail('corrupt header (k-NN gate missing or malformed)');
  }
  const known = version >= 3 ? header.known : undefined;
  if (known && !(Number.isFinite(known.bias) && Number.isFinite(known.threshold)))
    fail('corrupt header (known head malformed)');
  const storedPositives = gate ? gate.counts.reduce((sum, n) => sum + n, 0) : 0;
  const arraysStart = align4(PREFIX_BYTES + headerLength);
  const floats = header.dim + classes * header.dim + classes + (known ? header.dim : 0);
  const expectedLength = arraysStart + floats * 4 + storedPositives * header.dim * 2 + CHECKSUM_BYTES;
  if (bytes.length < expectedLength) fail(`truncated: expected ${expectedLength} bytes, got ${bytes.length}`);
  if (bytes.length > expectedLength) fail(`corrupt: ${bytes.length - expectedLength} unexpected bytes after the data`);
  const checksumAt = expectedLength - CHECKSUM_BYTES;
  if (!checksum(bytes.subarray(0, checksumAt)).equals(bytes.subarray(checksumAt))) fail('corrupt: checksum mismatch');

  let offset = arraysStart;
  const readFloats = (count: number): Float32Array => {
    const array = new Float32Array(count);
    for (let k = 0; k < count; k++, offset += 4) array[k] = bytes.readFloatLE(offset);
    return array;
  };
  const center = readFloats(header.dim);
  const weights = readFloats(classes * header.dim);
  const bias = readFloats(classes);
  const knownWeights = known ? readFloats(header.dim) : undefined;
  const positives = gate ? decodeFloat16(bytes.subarray(offset, offset + storedPositives * header.dim * 2)) : undefined;
  return {
    formatVersion: version,
    packKey: header.packKey,
    dim: header.dim,
    classes: header.classes,
    center,
    weights,
    bias,
    platt: header.platt,
    ...(gate && positives
      ? { gate: { k: gate.k, counts: gate.counts, radius: gate.radius.map((r) => r ?? Infinity), positives } }
      : {}),
    ...(known && knownWeights
      ? { known: { weights: knownWeights, bias: known.bias, threshold: known.threshold } }
      : {}),
    evaluation: header.evaluation,
    trainedAt: header.trainedAt,
  };
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

function checksum(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest();
}
