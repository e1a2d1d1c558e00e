import { ensureBundledPack } from '../ml/bundled-pack';
import { Embedder } from '../ml/embedder';
import { loadBestPack } from '../ml/model-pack';
import type { Logger } from '../logger';

/** Makes sure the bundled pack exists (converting it on first start), then opens the best pack present. */
export async function openEmbedder(modelsDir: string, threads: number, logger: Logger): Promise<Embedder> {
  await ensureBundledPack(modelsDir);
  const pack = await loadBestPack(modelsDir);
  logger.info({ pack: pack.manifest.id, threads }, 'model pack loaded');
  return Embedder.create(pack, { threads });
}
