/**
 * `npm run models:fetch`: downloads, verifies and installs the optional ImageNet pack.
 *
 * Environment:
 *   MODELS_DIR          where packs live, as the service reads it (default $DATA_DIR/models, ./data/models);
 *                       the pack goes to $MODELS_DIR/imagenet
 *   IMAGENET_PACK_URL   another copy of the same tarball (a mirror); its size and SHA-256 must still match
 */
import { join } from 'node:path';
import { loadConfig } from '../src/config';
import { fetchImagenetPack, IMAGENET_PACK_SOURCE } from '../src/ml/imagenet/imagenet-pack';

async function main(): Promise<void> {
  // The service's own rule for MODELS_DIR, so the pack lands where the service looks for it.
  const { modelsDir } = loadConfig(process.env);
  const url = process.env.IMAGENET_PACK_URL || IMAGENET_PACK_SOURCE.url;
  console.log(
    `Fetching the ImageNet pack from ${url} (${IMAGENET_PACK_SOURCE.size} bytes, sha256 ${IMAGENET_PACK_SOURCE.sha256})`,
  );
  const started = Date.now();
  const manifest = await fetchImagenetPack({
    modelsDir,
    url,
    size: IMAGENET_PACK_SOURCE.size,
    sha256: IMAGENET_PACK_SOURCE.sha256,
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`Installed ${manifest.id} pack v${manifest.version} in ${join(modelsDir, manifest.id)} (${seconds} s)`);
  console.log(`  input '${manifest.input.name}' ${manifest.input.size}×${manifest.input.size}`);
  console.log(`  embedding '${manifest.embedding.outputs.join(', ')}' (${manifest.embedding.dim}-d)`);
  console.log(
    `  ImageNet logits '${manifest.heads.imagenet?.output}', classes in ${manifest.heads.imagenet?.labelsFile}`,
  );
  console.log('Restart the service to use it.');
}

main().catch((error: unknown) => {
  console.error(`models:fetch failed: ${(error as Error).message}`);
  process.exit(1);
});
