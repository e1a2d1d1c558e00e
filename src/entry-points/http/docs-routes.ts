import path from 'node:path';
import { Router } from 'express';
import helmet from 'helmet';

const SWAGGER_UI_DIR = path.dirname(require.resolve('swagger-ui-dist/package.json'));
/** The files of swagger-ui-dist the page loads; nothing else of the package is served. */
const ASSETS = new Set(['swagger-ui.css', 'swagger-ui-bundle.js', 'favicon-32x32.png', 'favicon-16x16.png']);

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Watson Visual Recognition v3 API (self-hosted)</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
`;

// An external script, not an inline one, so the page runs under script-src 'self'.
const INIT = `window.ui = SwaggerUIBundle({
  url: '/v3/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  validatorUrl: null,
  tryItOutEnabled: false,
  persistAuthorization: false,
});
`;

/**
 * The interactive API docs at /docs: Swagger UI from the swagger-ui-dist package, offline. Its CSP
 * allows this origin only (no remote script, style, font or image); Swagger UI needs inline
 * styles and data: images.
 */
export function docsRoutes(): Router {
  const router = Router();
  router.use(
    '/docs',
    helmet.contentSecurityPolicy({
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        scriptSrcAttr: ["'none'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        fontSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'self'"],
      },
    }),
  );
  router.get('/docs', (_req, res) => {
    res.type('html').send(PAGE);
  });
  router.get('/docs/init.js', (_req, res) => {
    res.type('application/javascript').send(INIT);
  });
  router.get('/docs/:asset', (req, res, next) => {
    const asset = String(req.params.asset);
    if (!ASSETS.has(asset)) return next();
    res.setHeader('Cache-Control', 'public, max-age=86400');
    res.sendFile(path.join(SWAGGER_UI_DIR, asset));
  });
  return router;
}
