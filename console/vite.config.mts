import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/** Builds the web console into dist/console, which the API serves at `/` (src/entry-points/http/console-routes.ts). */
const here = path.dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  root: here,
  base: '/',
  // Preact's JSX runtime: no Babel preset needed.
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: path.resolve(here, '..', 'dist', 'console'),
    emptyOutDir: true,
    target: 'es2022',
    // Small enough to inline nothing: every asset is a file served from the API's own origin.
    assetsInlineLimit: 0,
    reportCompressedSize: true,
  },
});
