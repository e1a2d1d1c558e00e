import type { Request, RequestHandler } from 'express';
import { rateLimit } from 'express-rate-limit';

/** Training uploads and classify calls cost seconds of CPU; reading classifiers costs nothing. */
function isExpensive(req: Request): boolean {
  return req.method === 'POST' || req.path === '/classify';
}

/** A per-owner limit on expensive requests, answered with 429 in Watson's error body. */
export function expensiveRequestLimit(perMinute: number): RequestHandler {
  if (perMinute === 0) return (_req, _res, next) => next();
  return rateLimit({
    windowMs: 60_000,
    limit: perMinute,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
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
