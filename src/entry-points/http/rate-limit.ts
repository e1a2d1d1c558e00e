import type { Request, RequestHandler } from 'express';
import { rateLimit, type Store } from 'express-rate-limit';
import type { Logger } from '../../logger';

/** Training uploads and classify calls cost seconds of CPU; reading classifiers costs nothing. */
function isExpensive(req: Request): boolean {
  return req.method === 'POST' || req.path === '/classify';
}

/**
 * A per-owner limit on expensive requests, answered with 429 in Watson's error body. `store`
 * holds the counts (the instance's Redis, shared by all its API processes: see
 * openRateLimitStore). When the store fails (Redis down) the request is let through and a warning
 * logged: classify keeps answering without Redis, and the limit is a guard against overload, not
 * an entitlement.
 */
export function expensiveRequestLimit(perMinute: number, store: Store | undefined, logger: Logger): RequestHandler {
  if (perMinute === 0) return (_req, _res, next) => next();
  return rateLimit({
    windowMs: 60_000,
    limit: perMinute,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    store,
    passOnStoreError: true,
    logger: {
      error: (err, message) => logger.warn({ err }, message ?? 'rate limiter'),
      warn: (err, message) => logger.warn({ err }, message ?? 'rate limiter'),
    },
    skip: (req) => !isExpensive(req),
    keyGenerator: (req) => req.ownerId!,
    handler: (_req, res) => {
      res.status(429).json({
        code: 429,
        error: `Too many requests: at most ${perMinute} uploads and classify calls per minute are allowed for each account. Wait a minute and try again.`,
      });
    },
  });
}
