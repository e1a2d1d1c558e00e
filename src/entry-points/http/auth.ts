import type { NextFunction, Request, Response } from 'express';
import { ApiError } from '../../errors';
import { parseRequest, versionQuerySchema } from '../../domain/api-schemas';
import type { ApiKeyRepository } from '../../data-access/db/api-key-repository';
import { keyIdOfAccessToken, looksLikeAccessToken } from './access-token';

declare module 'express-serve-static-core' {
  interface Request {
    ownerId?: string;
  }
}

/** What a request presents: Basic `apikey:<key>`, `Bearer <key>`, or `Bearer <token from /identity/token>`. */
export function credentialFromAuthorization(
  header: string | undefined,
): { key: string } | { token: string } | undefined {
  if (!header) return undefined;
  const [scheme, value] = header.trim().split(/\s+/, 2);
  if (!value) return undefined;
  if (scheme.toLowerCase() === 'bearer') return looksLikeAccessToken(value) ? { token: value } : { key: value };
  if (scheme.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0 || decoded.slice(0, colon) !== 'apikey') return undefined;
    return { key: decoded.slice(colon + 1) };
  }
  return undefined;
}

export function authenticate(apiKeys: ApiKeyRepository) {
  const secret = apiKeys.tokenSigningSecret();
  secret.catch(() => undefined); // a failure reaches the requests that await it, not the process
  // Express 5 passes a rejected promise on to the error handler.
  return async (req: Request, _res: Response, next: NextFunction) => {
    const credential = credentialFromAuthorization(req.headers.authorization);
    let owner: string | undefined;
    if (credential && 'token' in credential)
      owner = await apiKeys.ownerOfKeyId(keyIdOfAccessToken(await secret, credential.token));
    else if (credential) owner = await apiKeys.ownerOfKey(credential.key);
    if (!owner) {
      throw new ApiError(
        401,
        credential
          ? 'The API key is not valid. Check the key, or ask the operator for one.'
          : "Unauthorized: send the API key as HTTP Basic auth with user 'apikey' (curl -u \"apikey:{key}\") or as 'Authorization: Bearer {key}'.",
      );
    }
    req.ownerId = owner;
    next();
  };
}

/** Every /v3 request carries ?version=YYYY-MM-DD (versionQuerySchema); a repeated one counts by its first value. */
export function requireVersion(req: Request, _res: Response, next: NextFunction) {
  const version = req.query.version;
  parseRequest(versionQuerySchema, { version: Array.isArray(version) ? version[0] : version });
  next();
}
