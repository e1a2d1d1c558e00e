/**
 * @jest-config-loader ts-node
 * @jest-config-loader-options {"transpileOnly": true}
 */
import faults, { RUN_ALONE } from './jest.faults.config';

/** `npm run test:faults`, second pass: RUN_ALONE's files, one at a time, with nothing else of the suite running. */
export default {
  ...faults,
  testMatch: [`**/test/faults/{${RUN_ALONE.join(',')}}.test.ts`],
  maxWorkers: 1,
};
