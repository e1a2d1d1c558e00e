import type { EnvironmentContext, JestEnvironmentConfig } from '@jest/environment';
import NodeEnvironment from 'jest-environment-node';

/**
 * Typed arrays that native addons create (onnxruntime-node's outputs, better-sqlite3's blobs)
 * belong to Node's main realm, while test code runs in a vm context with its own constructors,
 * so onnxruntime-common's `instanceof Float32Array` check rejects every output tensor. Jest already
 * shares `Uint8Array` and `ArrayBuffer` with the main realm for the same reason; this shares the rest.
 */
const TYPED_ARRAYS = [
  'Int8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float32Array',
  'Float64Array',
  'BigInt64Array',
  'BigUint64Array',
] as const;

export default class TypedArrayEnvironment extends NodeEnvironment {
  constructor(config: JestEnvironmentConfig, context: EnvironmentContext) {
    super(config, context);
    for (const name of TYPED_ARRAYS) this.global[name] = globalThis[name] as never;
  }
}
