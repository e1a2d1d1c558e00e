import { generateKey, type ApiKeyRepository } from '../data-access/db/api-key-repository';

export const GENERATED_KEY_OWNER = 'admin';

/**
 * Keys from API_KEYS become the active environment keys. With no key at all, one is generated
 * for the owner 'admin'; only its hash is stored, so the returned key is shown once.
 */
export async function bootstrapApiKeys(
  apiKeys: ApiKeyRepository,
  configured: Array<{ owner: string; key: string }>,
): Promise<{ generatedKey?: string }> {
  await apiKeys.syncEnvironmentKeys(configured);
  // Checked and added in one transaction: of several processes starting at once, one generates it.
  const key = generateKey();
  return (await apiKeys.addIfNoneActive(GENERATED_KEY_OWNER, key, 'generated')) ? { generatedKey: key } : {};
}
