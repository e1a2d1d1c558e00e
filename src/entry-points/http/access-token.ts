import crypto from 'node:crypto';
import { ApiError } from '../../errors';

/**
 * Access tokens handed out by POST /identity/token. IBM's SDKs decode the token as a JWT to learn
 * when to refresh it (and refuse anything else), so it is one: HS256, signed with the server's
 * secret, naming the API key by id. The key itself never appears in it, and revoking the key
 * revokes its tokens because the key must still be active when a token is used.
 */
export const ACCESS_TOKEN_LIFETIME_S = 3600;

interface AccessTokenClaims {
  sub: string;
  kid: number;
  iat: number;
  exp: number;
}

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
const INVALID = 'The access token is not valid. Request a new one at POST /identity/token.';

const sign = (secret: Buffer, signingInput: string) =>
  crypto.createHmac('sha256', secret).update(signingInput).digest();

const nowSeconds = () => Math.floor(Date.now() / 1000);

export function issueAccessToken(
  secret: Buffer,
  key: { id: number; ownerId: string },
  now = nowSeconds(),
): { token: string; expiration: number } {
  const claims: AccessTokenClaims = { sub: key.ownerId, kid: key.id, iat: now, exp: now + ACCESS_TOKEN_LIFETIME_S };
  const signingInput = `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return { token: `${signingInput}.${sign(secret, signingInput).toString('base64url')}`, expiration: claims.exp };
}

export function looksLikeAccessToken(value: string): boolean {
  return value.startsWith(`${HEADER}.`);
}

/** The key id an access token stands for. A tampered or expired token is a 401. */
export function keyIdOfAccessToken(secret: Buffer, token: string, now = nowSeconds()): number {
  const [header, payload, signature, ...rest] = token.split('.');
  if (header !== HEADER || !payload || !signature || rest.length > 0) throw new ApiError(401, INVALID);
  const given = Buffer.from(signature, 'base64url');
  const expected = sign(secret, `${header}.${payload}`);
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) throw new ApiError(401, INVALID);
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Partial<AccessTokenClaims>;
  if (typeof claims.exp !== 'number' || claims.exp <= now) {
    throw new ApiError(401, 'The access token has expired. Request a new one at POST /identity/token.');
  }
  if (typeof claims.kid !== 'number') throw new ApiError(401, INVALID);
  return claims.kid;
}
