/**
 * @jest-config-loader ts-node
 * @jest-config-loader-options {"transpileOnly": true}
 */
// Loaded without type-checking: ts-node's default builds a whole type-checked program, ~2 s of CPU at every jest start.
import base from './jest.config';

// The component suite again, each test file's service on a PostgreSQL database of its own
// (test/support/postgres.ts) on TEST_POSTGRES_URL's server (by default the local one).
process.env.TEST_DATABASE = 'postgres';

/**
 * `npm run test:postgres`: the HTTP component tests against PostgreSQL. Not repeated: the data-access
 * tests (each runs its cases on both databases already, under `npm test`), and the component tests
 * whose subject never touches the database (the console's static files, the OpenAPI document, client
 * aborts, process priority, the standalone worker's start-up, and the SQLite → PostgreSQL move, which
 * starts on SQLite by definition).
 */
export default {
  ...base,
  roots: ['<rootDir>/test/service', '<rootDir>/test/sdk'],
  testPathIgnorePatterns: [
    '/node_modules/',
    '/test/service/(console-routes|openapi|client-abort|worker-priority|standalone-worker|migrate)\\.test\\.ts$',
  ],
};
