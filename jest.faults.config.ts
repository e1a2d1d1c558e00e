import base from './jest.config';

/** Fault-injection tests (killed processes, lost Redis data, full disk): slower, run by `npm run test:faults`. */
export default {
  ...base,
  roots: ['<rootDir>/test/faults'],
  testPathIgnorePatterns: [],
  maxWorkers: 1,
  testTimeout: 300_000,
};
