/* global require, exports, process */
'use strict';
/**
 * ts-node's transpile-only compile with a disk cache, for the processes the tests start from source (the training
 * worker each service forks, the fault tests' API processes). Plain ts-node transpiles the ~100 files a worker loads
 * on every start: 5.6 s of CPU against 0.8 s from dist/ (measured on this repo, load ≈ 20), paid dozens of times per
 * suite. The output is TypeScript's own transpileModule, cached by the source's bytes, its path, the compiler
 * options and TypeScript's version, so an edited file is transpiled afresh. Wired in by test/tsconfig.ts-node.json
 * (TS_NODE_PROJECT, set by test/global-setup.ts); JavaScript because ts-node loads it before its own hook exists.
 */
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const CACHE_DIR = path.join(os.tmpdir(), `ts-node-transpile-cache-${process.getuid ? process.getuid() : 'user'}`);

/**
 * ts-node's transpiler factory: `createOptions.service.config.options` are the compiler options it emits with;
 * `createOptions.cacheDir` (a transpiler option in the tsconfig, or a test's) replaces the default CACHE_DIR.
 */
exports.create = function create(createOptions) {
  const { config, projectLocalResolveHelper } = createOptions.service;
  const cacheDir = createOptions.cacheDir || CACHE_DIR;
  const ts = require(projectLocalResolveHelper('typescript', true));
  const compilerOptions = config.options;
  const salt = crypto.createHash('sha256').update(ts.version).update(JSON.stringify(compilerOptions)).digest();
  return {
    transpile(input, { fileName }) {
      const key = crypto.createHash('sha256').update(salt).update(fileName).update('\0').update(input).digest('hex');
      const file = path.join(cacheDir, `${key}.json`);
      try {
        return JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch {
        // not cached yet (or a half-written entry from a killed process): transpile
      }
      const { outputText, sourceMapText, diagnostics } = ts.transpileModule(input, {
        fileName,
        compilerOptions,
        reportDiagnostics: true,
      });
      // Syntax errors go back to ts-node, which reports them; they are never cached.
      if (diagnostics && diagnostics.length > 0) return { outputText, sourceMapText, diagnostics };
      fs.mkdirSync(cacheDir, { recursive: true });
      // Written aside and renamed: a process reading concurrently sees the whole entry or none.
      const partial = `${file}.${process.pid}.tmp`;
      fs.writeFileSync(partial, JSON.stringify({ outputText, sourceMapText }));
      fs.renameSync(partial, file);
      return { outputText, sourceMapText };
    },
  };
};
