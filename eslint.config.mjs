// @ts-check
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

/**
 * The floors of src/, top to bottom (ARCHITECTURE.md). A file may import its own floor and any floor below it,
 * never one above. The shared basics (config, errors, logger, lib/) are the bottom floor: anyone may import them.
 */
const layers = [
  { name: 'processes', paths: ['src/processes', 'src/main.ts'] },
  { name: 'entry-points', paths: ['src/entry-points'] },
  { name: 'domain', paths: ['src/domain'] },
  { name: 'data-access', paths: ['src/data-access'] },
  { name: 'ml', paths: ['src/ml'] },
  { name: 'lib', paths: ['src/lib', 'src/config.ts', 'src/errors.ts', 'src/logger.ts'] },
];

const order = layers.map((layer) => layer.name).join(' → ');

// One zone per (floor, floor above it), so the message names both ends of the arrow that points up.
const upwardImports = layers.flatMap((lower, index) =>
  layers.slice(0, index).map((upper) => ({
    target: lower.paths,
    from: upper.paths,
    message: `${lower.name} may not import ${upper.name}: imports point down the floors (${order}).`,
  })),
);

const mlFloor = layers.findIndex((layer) => layer.name === 'ml');

const zones = [
  ...upwardImports,
  {
    // The browser bundle shares types with the server only through its generated file (ignored below).
    target: 'console',
    from: 'src',
    message: 'The console may not import the server: take API types from its generated types file.',
  },
  {
    // src/ml/index.ts is the library's one door: the rest of src/ sees only what it exports.
    target: layers.slice(0, mlFloor).flatMap((layer) => layer.paths),
    from: 'src/ml',
    except: ['./index.ts'],
    message: 'Import the ML library through src/ml/index.ts, its one door.',
  },
  {
    // workers/ only starts a process, so the floors stay the one map of src/.
    target: 'workers',
    from: 'src',
    except: ['./processes'],
    message: 'workers/ holds thin executables: import the process from src/processes.',
  },
];

export default defineConfig(
  {
    ignores: [
      'dist/',
      'coverage/',
      'data/',
      'models/',
      'demo/',
      // Generated: the console's API types, written from the server's OpenAPI document.
      'console/src/**/api-types*',
      'console/src/**/generated*',
    ],
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.tsx', '.mts', '.js', '.mjs', '.json'] })],
    },
    rules: {
      'import-x/no-restricted-paths': ['error', { basePath: import.meta.dirname, zones }],
      // The layer rule sees only the imports it can resolve: an unresolved one fails here instead of passing unseen
      // (type-only imports are left to tsc, so the console's generated types need not exist before a lint).
      'import-x/no-unresolved': 'error',
      // An Express error handler needs its fourth parameter (`_next`); a rest copy omits a key (`{ KEY: _, ...rest }`).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', ignoreRestSiblings: true }],
    },
  },
  {
    // Tests and benchmarks read arbitrary JSON answers (`body: any`) and load modules afresh (jest.isolateModules).
    files: ['test/**', 'bench/**'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // Migrations and the instance copy run against past or foreign schemas, not the typed current one: Kysely<any>.
    files: ['src/data-access/**/migrations.ts', 'src/data-access/**/instance-copy.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // nsfwjs ships its model as JavaScript files found by path at run time.
    files: ['src/ml/convert/nsfwjs-model.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
