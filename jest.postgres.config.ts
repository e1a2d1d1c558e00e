import base from './jest.config';

// The component suite again, each test file's service on a PostgreSQL database of its own
// (test/support/postgres.ts) on TEST_POSTGRES_URL's server (by default the local one).
process.env.TEST_DATABASE = 'postgres';

/**
 * `npm run test:postgres`: the HTTP component tests against PostgreSQL. The data-access tests are
 * not repeated: each runs its cases on both databases already, under `npm test`.
 */
export default {
  ...base,
  roots: ['<rootDir>/test/service', '<rootDir>/test/sdk'],
};
