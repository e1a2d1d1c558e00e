import express, { Router } from 'express';
import { ApiError } from '../../../errors';
import type { ApiKeyRepository } from '../../../data-access/api-key-repository';

const TOKEN_LIFETIME_S = 3600;

/**
 * IBM IAM's token exchange, so SDK clients with an IamAuthenticator work unchanged.
 * The token is the API key itself: Bearer <key> is accepted on /v3, and revoking the key revokes the token.
 */
export function identityRoutes(apiKeys: ApiKeyRepository) {
  const router = Router();
  router.post('/token', express.urlencoded({ extended: false, limit: '16kb' }), (req, res) => {
    const grantType = req.body?.grant_type;
    const apikey = req.body?.apikey;
    if (grantType !== 'urn:ibm:params:oauth:grant-type:apikey' || typeof apikey !== 'string' || apikey === '') {
      throw new ApiError(
        400,
        "Send grant_type=urn:ibm:params:oauth:grant-type:apikey and apikey=<your key> as an application/x-www-form-urlencoded body.",
      );
    }
    if (!apiKeys.ownerOfKey(apikey)) throw new ApiError(401, 'The API key is not valid.');
    const now = Math.floor(Date.now() / 1000);
    res.json({
      access_token: apikey,
      refresh_token: 'not_supported',
      token_type: 'Bearer',
      expires_in: TOKEN_LIFETIME_S,
      expiration: now + TOKEN_LIFETIME_S,
    });
  });
  return router;
}
