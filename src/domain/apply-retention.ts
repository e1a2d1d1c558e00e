import type { ImageClaims } from '../data-access/db/image-claims';
import type { VersionRepository } from '../data-access/db/version-repository';
import type { HeadStore } from '../data-access/files/head-store';
import type { ImageStore } from '../data-access/files/image-store';
import type { VersionLeaseReader } from '../data-access/redis/version-leases';
import type { Logger } from '../logger';

/** What retention needs, in an API process or the training worker. */
export interface RetentionContext {
  versions: VersionRepository;
  /** The versions classify requests of any process hold (VersionLeases in Redis). */
  leases: VersionLeaseReader;
  heads: HeadStore;
  imageClaims: ImageClaims;
  images: ImageStore;
  logger: Logger;
  now: () => string;
}

/**
 * Applies the retention setting to a classifier (KEEP_VERSIONS = `keep`): prunes all but the newest
 * versions, never the current one nor one a classify request in any process holds, deletes the
 * pruned versions' head files, and the image files of the examples it forgets (unless an upload in
 * flight claimed them). Returns the versions pruned.
 *
 * The leases are read before the pruning commits and again after: a request that resolved a
 * version just before the commit and leased it meanwhile keeps its head file, which the orphan
 * sweep (removeOrphanHeads) deletes once no request holds it. Leases that cannot be read (Redis
 * away) postpone retention to its next run: nothing a request might use is removed.
 * @throws what the database throws
 */
export async function applyRetention(ctx: RetentionContext, classifierId: string, keep: number): Promise<number> {
  let leased: Set<number>;
  try {
    leased = await ctx.leases.held();
  } catch (err) {
    ctx.logger.warn({ err, classifierId }, 'retention postponed: the version leases in Redis cannot be read');
    return 0;
  }
  const { pruned, imageHashes } = await ctx.versions.pruneVersions(classifierId, keep, ctx.now(), leased);
  const leasedNow = pruned.length > 0 ? await ctx.leases.held().catch(() => undefined) : leased;
  for (const v of pruned) {
    if (leasedNow && !leasedNow.has(v.versionId)) await ctx.heads.remove(v.headFile);
  }
  await ctx.imageClaims.removeUnreferenced(imageHashes, (doomed) => ctx.images.remove(doomed));
  return pruned.length;
}
