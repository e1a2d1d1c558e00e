import cors from 'cors';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Store } from 'express-rate-limit';
import helmet from 'helmet';
import { expensiveRequestLimit } from './rate-limit';
import { ApiError } from '../../errors';
import type { ApiKeyRepository } from '../../data-access/db/api-key-repository';
import type { ServiceContext } from '../../domain/service-context';
import { authenticate, requireVersion } from './auth';
import { multipartUpload } from './multipart';
import { classifierRoutes } from './routes/classifier-routes';
import { classifyRoutes } from './routes/classify-routes';
import { exampleRoutes } from './routes/example-routes';
import type { ClassifyContext } from '../../domain/classify-images';
import { identityRoutes } from './routes/identity-routes';
import { docsRoutes } from './docs-routes';
import { routeTemplateOf, type OpenApiDocument } from './openapi';
import { operationsRoutes, requestMetrics, type OperationsDependencies } from './operations-routes';
import { consoleRoutes } from './console-routes';

export interface AppDependencies {
  ctx: ServiceContext;
  classify: ClassifyContext;
  apiKeys: ApiKeyRepository;
  /** Served at /v3/openapi.json; its paths also name the routes in request metrics. */
  openApi: OpenApiDocument;
  ops: OperationsDependencies;
  /** This process's folder for uploads in flight (UploadTempDir). */
  uploadDir: string;
  /** Where the per-owner request counts live (the instance's Redis); undefined: this process's memory. */
  rateLimitStore?: Store;
}

/** The API. The operations endpoints are on it too unless OPS_PORT puts them on their own app (createOperationsApp). */
export function createApp({
  ctx,
  classify,
  apiKeys,
  openApi,
  ops,
  uploadDir,
  rateLimitStore,
}: AppDependencies): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'extended');
  if (ops.metrics)
    app.use(requestMetrics(ops.metrics, routeTemplateOf(openApi, ['/', '/assets/{asset}', '/docs', '/docs/{asset}'])));
  app.use(helmet());
  app.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  if (ctx.config.corsOrigins.length > 0) app.use(cors({ origin: ctx.config.corsOrigins }));

  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });
  if (ctx.config.ops.port === undefined) app.use(operationsRoutes(ops));
  app.get('/v3/openapi.json', (_req, res) => {
    res.json(openApi);
  });
  app.use(docsRoutes());
  app.use('/identity', identityRoutes(apiKeys));

  const upload = multipartUpload({
    tmpDir: uploadDir,
    maxFileBytes: ctx.config.limits.maxZipBytes,
    maxRequestBytes: ctx.config.limits.maxRequestBytes,
  });
  const v3 = express.Router();
  v3.use(
    authenticate(apiKeys),
    requireVersion,
    expensiveRequestLimit(ctx.config.rateLimitPerMinute, rateLimitStore, ctx.logger),
  );
  v3.use(classifierRoutes(ctx, upload));
  v3.use(exampleRoutes(ctx));
  v3.use(classifyRoutes(classify, upload));
  app.use('/v3', v3);
  // The web console: a static page that calls the public /v3 API like any other client.
  app.use(consoleRoutes(ctx.config));

  app.use((req: Request) => {
    throw new ApiError(
      404,
      `There is no ${req.method} ${req.path}. See the Watson Visual Recognition v3 API reference.`,
    );
  });
  app.use(errorHandler(ctx));
  return app;
}

/** The operations endpoints alone, for OPS_PORT. */
export function createOperationsApp(ctx: ServiceContext, ops: OperationsDependencies): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(helmet());
  app.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  app.use(operationsRoutes(ops));
  app.use((req: Request) => {
    throw new ApiError(
      404,
      `There is no ${req.method} ${req.path} on the operations port: /healthz, /readyz and /metrics are.`,
    );
  });
  app.use(errorHandler(ctx));
  return app;
}

/** Maps every error to Watson's body `{"code", "error"}`; a 5xx never carries internals. */
function errorHandler(ctx: ServiceContext) {
  return (error: unknown, req: Request, res: Response, _next: NextFunction) => {
    let status = 500;
    let message = 'Internal server error. The problem was logged; try again, and report it if it persists.';
    if (error instanceof ApiError) {
      status = error.status;
      message = error.message;
    } else if (isDiskFull(error)) {
      ctx.logger.error({ err: error, method: req.method, url: req.originalUrl }, 'disk full');
      status = 507;
      message =
        "The server's disk is full, so nothing from this request was stored. Ask the operator to free space, then send it again.";
    } else if (isBodyParserError(error)) {
      status = error.status;
      message =
        error.status === 413
          ? 'The request body is too large.'
          : `The request body could not be read: ${error.message}.`;
    } else {
      ctx.logger.error({ err: error, method: req.method, url: req.originalUrl }, 'request failed');
    }
    if (res.headersSent) return res.end();
    res.status(status).json({ code: status, error: message });
  };
}

function isDiskFull(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}

function isBodyParserError(error: unknown): error is { status: number; message: string; type: string } {
  const e = error as { status?: unknown; type?: unknown };
  return typeof e?.status === 'number' && typeof e.type === 'string' && e.status >= 400 && e.status < 500;
}
