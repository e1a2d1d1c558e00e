/**
 * @jest-config-loader ts-node
 * @jest-config-loader-options {"transpileOnly": true}
 */
// Loaded without type-checking, as jest.config.ts is.
import base from './jest.config';

/**
 * The fault tests that must have the machine to themselves: the soak compares its latency under load with its idle
 * latency, and the cluster test freezes a worker for a bounded number of lock periods and needs the other worker to
 * take the run up within them.
 */
export const RUN_ALONE = ['cluster', 'soak'];

/**
 * Fault-injection tests (killed processes, lost Redis data, full disk): slower, one file at a time. `npm run test:faults`
 * runs them in two passes: jest.faults-paired.config.ts, then jest.faults-alone.config.ts.
 */
export default {
  ...base,
  roots: ['<rootDir>/test/faults'],
  testPathIgnorePatterns: [],
  maxWorkers: 1,
  testTimeout: 300_000,
};
