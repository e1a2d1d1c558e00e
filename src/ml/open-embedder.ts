import { ensureBundledPack } from './bundled-pack';
import { ensureDetectorPack } from './detector/detector-pack';
import { Embedder } from './embedder';
import { loadBestPack } from './model-pack';
import type { Logger } from '../logger';

/**
 * Makes sure the bundled pack and the CenterNet detector pack exist (converting them on first start),
 * then opens the best pack present with the detector: the embedding concatenates both networks' taps.
 */
export async function openEmbedder(modelsDir: string, threads: number, logger: Logger): Promise<Embedder> {
  await ensureBundledPack(modelsDir);
  const detector = await ensureDetectorPack(modelsDir);
  const pack = await loadBestPack(modelsDir);
  const embedder = await Embedder.create(pack, { threads, detector });
  logger.info({ pack: embedder.packKey, dim: embedder.dim, threads }, 'model pack loaded');
  return embedder;
}
