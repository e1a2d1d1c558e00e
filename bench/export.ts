/**
 * bench:export: size and time of a classifier version's export, ONNX and Core ML, for heads of 2
 * and 10 classes on the packs installed (the bundled one always; ImageNet after models:fetch).
 * Time is the whole export as the API runs it: read the pack, build the graph, map, encode.
 * Median of several runs after a warm-up.
 */
import os from 'node:os';
import { ensureBundledPack } from '../src/ml/bundled-pack';
import { exportVersion, type ExportFormat } from '../src/ml/export';
import type { TrainedHead } from '../src/ml/heads';
import { listPacks } from '../src/ml/model-pack';
import { packKey } from '../src/ml/types';
import { modelsDir } from './lib/repo';
import { median } from './lib/load-generator';

const RUNS = 5;
const FORMATS: ExportFormat[] = ['onnx', 'coreml'];

function syntheticHead(key: string, dim: number, classes: number): TrainedHead {
  let state = 1;
  const next = () => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5;
  return {
    formatVersion: 1,
    packKey: key,
    dim,
    classes: Array.from({ length: classes }, (_, i) => `class${i}`),
    center: Float32Array.from({ length: dim }, next),
    weights: Float32Array.from({ length: dim * classes }, next),
    bias: Float32Array.from({ length: classes }, next),
    platt: Array.from({ length: classes }, () => ({ a: 1, b: 0 })),
    evaluation: { method: 'k-fold', folds: 5, examples: 0, classes: [] },
    trainedAt: new Date().toISOString(),
  };
}

async function main(): Promise<void> {
  await ensureBundledPack(modelsDir());
  const figures: Record<string, { bytes: number; ms: number }> = {};
  for (const manifest of await listPacks(modelsDir())) {
    for (const classes of [2, 10]) {
      const head = syntheticHead(packKey(manifest), manifest.embedding.dim, classes);
      for (const format of FORMATS) {
        const info = { classifierId: 'bench_1', name: 'bench', versionId: 1, created: head.trainedAt };
        let bytes = (await exportVersion(modelsDir(), head, info, format)).length; // warm-up
        const times: number[] = [];
        for (let run = 0; run < RUNS; run++) {
          const started = process.hrtime.bigint();
          bytes = (await exportVersion(modelsDir(), head, info, format)).length;
          times.push(Number(process.hrtime.bigint() - started) / 1e6);
        }
        const key = `${manifest.id}_${classes}classes_${format}`;
        figures[key] = { bytes, ms: Math.round(median(times)) };
        console.log(
          `${key}: ${(bytes / 1e6).toFixed(2)} MB in ${median(times).toFixed(0)} ms (median of ${RUNS}: ${times.map((t) => t.toFixed(0)).join(', ')})`,
        );
      }
    }
  }
  const ratio = (id: string) => figures[`${id}_2classes_coreml`].bytes / figures[`${id}_2classes_onnx`].bytes;
  console.log(
    JSON.stringify({
      bench: 'export',
      cores: os.cpus().length,
      figures,
      coreml_to_onnx_size_2classes_bundled: Number(ratio('bundled').toFixed(4)),
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
