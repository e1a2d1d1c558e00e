/**
 * @jest-config-loader ts-node
 * @jest-config-loader-options {"transpileOnly": true}
 */
import faults, { RUN_ALONE } from './jest.faults.config';

/**
 * `npm run test:faults`, first pass: the fault tests but RUN_ALONE's, two files at a time. They spend most of their
 * time waiting (on a process's start or exit, a lock period, a training) and compare no timings, so a second file
 * fits beside each, and each asserts what it does when run alone. Measured back to back on a shared 2-core machine
 * (load ≈ 6): these seven files took 296 s one at a time, 154 s two at a time, with the same CPU time (204 s, 194 s).
 */
export default {
  ...faults,
  testPathIgnorePatterns: [`/test/faults/(${RUN_ALONE.join('|')})\\.test\\.ts$`],
  maxWorkers: 2,
};
