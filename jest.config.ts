/**
 * @jest-config-loader ts-node
 * @jest-config-loader-options {"transpileOnly": true}
 */
// Loaded without type-checking: ts-node's default builds a whole type-checked program, ~2 s of CPU at every jest start.
import type { Config } from 'jest';

const config: Config = {
  // Shares typed arrays with Node's main realm, as onnxruntime-node's instanceof checks need.
  testEnvironment: '<rootDir>/test/ml/typed-array-environment.ts',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // test/faults and test/container run on their own: npm run test:faults, npm run test:container.
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/faults/', '<rootDir>/test/container/'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  globalSetup: '<rootDir>/test/global-setup.ts',
  testTimeout: 120_000,
  // Model inference and training saturate both cores; more workers only thrash.
  maxWorkers: 2,
  // A failed test can leave a child process (a worker it froze or killed half-way) that would keep
  // Jest running after the last test: end the run anyway; .ci/run kills what is left.
  forceExit: true,
};

export default config;
