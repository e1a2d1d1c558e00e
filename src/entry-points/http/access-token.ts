import crypto from 'node:crypto';
import { ApiError } from '../../errors';

/**
 * Access tokens handed out by POST /identity/token. IBM's SDKs decode the token as a JWT to learn
 * when to refresh it (and refuse anything else), so it is one: HS256, signed with the API key it
 * stands for, which it carries (its holder already has that key). Revoking the key revokes its
 * tokens, and no server secret or token store is needed.
 */
export const ACCESS_TOKEN_LIFETIME_S = 3600;

interface AccessTokenClaims {
  sub: string;
  apikey: string;
  iat: number;
  exp: number;
}

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');

const sign = (apiKey: string, signingInput: string) => crypto.createHmac('sha256', apiKey).update(signingInput).digest();

const nowSeconds = () => Math.floor(Date.now() / 1000);

export function issueAccessToken(apiKey: string, ownerId: string, now = nowSeconds()): { token: string; expiration: number } {
  const claims: AccessTokenClaims = { sub: ownerId, apikey: apiKey, iat: now, exp: now + ACCESS_TOKEN_LIFETIME_S };
  const signingInput = `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return { token: `${signingInput}.${sign(apiKey, signingInput).toString('base64url')}`, expiration: claims.exp };
}

/**
 * The API key an access token stands for; undefined when the value is not one of these tokens
 * (then it is a plain key sent as Bearer). A tampered or expired token is a 401.
 */
export function apiKeyOfAccessToken(value: string, now = nowSeconds()): string | undefined {
  const [header, payload, signature, ...rest] = value.split('.');
  if (header !== HEADER || payload === undefined || signature === undefined || rest.length > 0) return undefined;
  const signingInput = `${header}.${payload}`;
  let claims: Partial<AccessTokenClaims>;
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    throw new ApiError(401, 'The access token is not valid. Request a new one at POST /identity/token.');
  }
  const given = Buffer.from(signature, 'base64url');
  const expected = typeof claims.apikey === 'string' ? sign(claims.apikey, signingInput) : undefined;
  if (!expected || given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
    throw new ApiError(401, 'The access token is not valid. Request a new one at POST /identity/token.');
  }
  if (typeof claims.exp !== 'number' || claims.exp <= now) {
    throw new ApiError(401, 'The access token has expired. Request a new one at POST /identity/token.');
  }
  return claims.apikey;
}
