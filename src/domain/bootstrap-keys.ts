import { generateKey, type ApiKeyRepository } from '../data-access/api-key-repository';

export const GENERATED_KEY_OWNER = 'admin';

/**
 * Keys from API_KEYS become the active environment keys. With no key at all, one is generated
 * for the owner 'admin'; only its hash is stored, so the returned key is shown once.
 */
export function bootstrapApiKeys(
  apiKeys: ApiKeyRepository,
  configured: Array<{ owner: string; key: string }>,
): { generatedKey?: string } {
  apiKeys.syncEnvironmentKeys(configured);
  if (apiKeys.countActive() > 0) return {};
  const key = generateKey();
  apiKeys.add(GENERATED_KEY_OWNER, key, 'generated');
  return { generatedKey: key };
}
