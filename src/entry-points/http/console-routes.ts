import fs from 'node:fs';
import path from 'node:path';
import compression from 'compression';
import express, { Router } from 'express';
import helmet from 'helmet';
import type { Config } from '../../config';
import type { ConsoleLimits } from '../../domain/api-schemas';
import { ApiError } from '../../errors';

/**
 * Where `vite build` writes the console: `<project>/dist/console`. Under ts-jest or ts-node this file
 * is src/entry-points/http/*.ts; compiled it is dist/src/entry-points/http/*.js.
 */
export const CONSOLE_DIR = __filename.endsWith('.ts')
  ? path.resolve(__dirname, '..', '..', '..', 'dist', 'console')
  : path.resolve(__dirname, '..', '..', '..', 'console');

/**
 * The console's own policy: everything from this origin, images also from data: and blob: (previews of
 * the picked files), nothing remote. Unlike helmet's default it allows no https: styles or fonts, no
 * inline styles, and does not ask to upgrade requests to https (operators reach the console over plain
 * http on their own network, where that upgrade would break every script).
 */
const consolePolicy = helmet.contentSecurityPolicy({
  useDefaults: false,
  directives: {
    defaultSrc: ["'self'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'"],
    imgSrc: ["'self'", 'data:', 'blob:'],
    fontSrc: ["'self'"],
    connectSrc: ["'self'"],
    objectSrc: ["'none'"],
    baseUri: ["'self'"],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
  },
});

const escapeAttribute = (text: string) => text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');

/**
 * Serves the web console built into `consoleDir`: `GET /` is its page (with the configured upload
 * limits in a meta tag, so it checks what this server enforces), `/assets/*` its content-hashed
 * scripts and styles, gzip-compressed and cached for good. When the console was not built, `GET /` answers 503 saying how.
 */
export function consoleRoutes(config: Config, consoleDir = CONSOLE_DIR): Router {
  const router = Router();
  // What the console checks before an upload; the server checks again and has the last word.
  const limits: ConsoleLimits = {
    maxZipBytes: config.limits.maxZipBytes,
    maxRequestBytes: config.limits.maxRequestBytes,
    minImagesPerZip: config.limits.minImagesPerZip,
    maxImagesPerZip: config.limits.maxImagesPerZip,
    maxClassifyImageBytes: config.limits.maxClassifyImageBytes,
  };
  let page: string | undefined;

  router.get('/', consolePolicy, (_req, res) => {
    if (page === undefined) {
      let built: string;
      try {
        built = fs.readFileSync(path.join(consoleDir, 'index.html'), 'utf8');
      } catch {
        throw new ApiError(
          503,
          'The web console has not been built. Run `npm run build` (npm start does it), then reload this page.',
        );
      }
      page = built.replace('__CONSOLE_LIMITS__', escapeAttribute(JSON.stringify(limits)));
    }
    res.type('html').send(page);
  });
  router.use(
    '/assets',
    consolePolicy,
    // Only the console's files are compressed (a third of their size); API answers are left as they were.
    compression(),
    (_req, res, next) => {
      // The global no-store does not suit files whose names change with their content.
      res.removeHeader('Cache-Control');
      next();
    },
    express.static(path.join(consoleDir, 'assets'), {
      index: false,
      immutable: true,
      maxAge: '365d',
      fallthrough: true,
    }),
  );
  return router;
}
