import type { Config } from 'jest';

/** The container checks (test/container/run.sh, `npm run test:container`): one file at a time, each with its own containers. */
const config: Config = {
  rootDir: '../..',
  roots: ['<rootDir>/test/container'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  testTimeout: 600_000,
  maxWorkers: 1,
};

export default config;
