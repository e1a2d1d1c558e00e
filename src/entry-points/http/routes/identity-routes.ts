import express, { Router } from 'express';
import type { z } from 'zod';
import { ApiError } from '../../../errors';
import { parseRequest, tokenRequestSchema, type tokenResponseSchema } from '../../../domain/api-schemas';
import type { ApiKeyRepository } from '../../../data-access/db/api-key-repository';
import { ACCESS_TOKEN_LIFETIME_S, issueAccessToken } from '../access-token';

/**
 * IBM IAM's token exchange, so SDK clients with an IamAuthenticator work unchanged.
 * The token is a JWT naming the API key by id (see access-token.ts): revoking the key revokes it.
 */
export function identityRoutes(apiKeys: ApiKeyRepository) {
  const router = Router();
  const secret = apiKeys.tokenSigningSecret();
  secret.catch(() => undefined); // a failure reaches the requests that await it, not the process
  router.post('/token', express.urlencoded({ extended: false, limit: '16kb' }), async (req, res) => {
    const { apikey } = parseRequest(tokenRequestSchema, req.body ?? {});
    const key = await apiKeys.findActiveKey(apikey);
    if (!key) throw new ApiError(401, 'The API key is not valid.');
    const { token, expiration } = issueAccessToken(await secret, key);
    const answer: z.infer<typeof tokenResponseSchema> = {
      access_token: token,
      refresh_token: 'not_supported',
      token_type: 'Bearer',
      expires_in: ACCESS_TOKEN_LIFETIME_S,
      expiration,
    };
    res.json(answer);
  });
  return router;
}
