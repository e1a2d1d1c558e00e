import crypto from 'node:crypto';

/**
 * Watson's id rule: the name with spaces removed and characters outside [A-Za-z0-9_-] dropped,
 * cut to 30 characters, then `_` and a random positive 32-bit integer ("Dog Breeds" → "DogBreeds_1539707331").
 */
export function newClassifierId(name: string): string {
  const stem =
    name
      .replace(/\s+/g, '')
      .replace(/[^A-Za-z0-9_-]/g, '')
      .slice(0, 30) || 'classifier';
  return `${stem}_${crypto.randomInt(1, 2 ** 31 - 1)}`;
}
