import { createHash } from 'node:crypto';
import { syntheticTrainingSet } from '../../bench/lib/synthetic-embeddings';
import {
  deserializeHead,
  HeadFileError,
  scoreHead,
  serializeHead,
  trainHead,
  type TrainedHead,
} from '../../src/ml/heads';

const bytesOf = (array: Float32Array) => Buffer.from(array.buffer, array.byteOffset, array.byteLength);

describe('head files', () => {
  const set = syntheticTrainingSet({ examples: 90, classes: 3, dim: 48, seed: 2, negativeShare: 0.1 });
  let head: TrainedHead;
  let file: Buffer;

  beforeAll(async () => {
    head = await trainHead({ ...set, classes: ['cat', 'dog', 'crème brûlée'] }, { packKey: 'bundled@1', threads: 1 });
    file = serializeHead(head);
  });

  it('reads back bit-identically', () => {
    const back = deserializeHead(file);
    // The out-of-fold scores go to the version's review (issue 23), not into the head file.
    expect(head.outOfFoldScores).toBeDefined();
    expect(back.outOfFoldScores).toBeUndefined();
    expect(back).toEqual({ ...head, outOfFoldScores: undefined });
    for (const key of ['center', 'weights', 'bias'] as const) {
      expect(back[key]).toBeInstanceOf(Float32Array);
      expect(bytesOf(back[key]).equals(bytesOf(head[key]))).toBe(true);
    }
    back.platt.forEach((p, c) => {
      expect(Object.is(p.a, head.platt[c].a)).toBe(true);
      expect(Object.is(p.b, head.platt[c].b)).toBe(true);
    });
    expect(serializeHead(back).equals(file)).toBe(true);
  });

  it('scores the same after a round trip', () => {
    const back = deserializeHead(file);
    for (const embedding of set.embeddings.slice(0, 10))
      expect(scoreHead(back, embedding)).toEqual(scoreHead(head, embedding));
  });

  it('starts with a magic and a version', () => {
    expect(file.subarray(0, 8).toString('latin1')).toBe('WVRHEAD\0');
    expect(file.readUInt32LE(8)).toBe(3);
  });

  it('stores the k-NN gate and still reads version-1 files, which have none', () => {
    const back = deserializeHead(file);
    expect(back.gate!.counts).toEqual(head.gate!.counts);
    expect(back.gate!.positives).toEqual(head.gate!.positives);
    // A version-1 file: the same layout without the gate's header entry and positives.
    const v1 = Buffer.from(serializeHead({ ...head, gate: undefined }));
    v1.writeUInt32LE(1, 8);
    createHash('sha256')
      .update(v1.subarray(0, v1.length - 32))
      .digest()
      .copy(v1, v1.length - 32);
    const old = deserializeHead(v1);
    expect(old.gate).toBeUndefined();
    expect(old.formatVersion).toBe(1);
    expect(Array.from(old.weights)).toEqual(Array.from(head.weights));
  });

  it('rejects a truncated file, naming it', () => {
    for (const length of [file.length - 1, file.length - 40, 20, 10, 3]) {
      expect(() => deserializeHead(file.subarray(0, length), 'models/c1/v2.head')).toThrow(HeadFileError);
      expect(() => deserializeHead(file.subarray(0, length), 'models/c1/v2.head')).toThrow(
        /^models\/c1\/v2\.head: (truncated|too short)/,
      );
    }
  });

  it('rejects something that is not a head file', () => {
    expect(() => deserializeHead(Buffer.from('{"classes":["cat"]}'))).toThrow(/not a head file/);
    expect(() => deserializeHead(Buffer.alloc(0))).toThrow(/too short/);
  });

  it('rejects an unknown format version', () => {
    const future = Buffer.from(file);
    future.writeUInt32LE(4, 8);
    expect(() => deserializeHead(future)).toThrow(
      /head format version 4 is not supported \(this build reads versions 1, 2, 3\)/,
    );
  });

  it('detects a corrupted byte and trailing garbage', () => {
    const corrupt = Buffer.from(file);
    corrupt[file.length - 100] ^= 0x40;
    expect(() => deserializeHead(corrupt)).toThrow(/checksum mismatch/);
    expect(() => deserializeHead(Buffer.concat([file, Buffer.from([0])]))).toThrow(/unexpected bytes/);
  });

  it('refuses to write arrays that do not match the head', () => {
    expect(() => serializeHead({ ...head, bias: new Float32Array(2) })).toThrow(/do not match/);
    expect(() => serializeHead({ ...head, formatVersion: 7 })).toThrow(/cannot write head format version 7/);
  });
});
