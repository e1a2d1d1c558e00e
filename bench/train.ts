/**
 * bench:train: seconds for trainHead (training every cross-validation model
 * and the final one, calibration and evaluation, the open-set step: the shipped
 * bank as implicit negatives and the k-NN gate) on synthetic clustered,
 * L2-normalised embeddings of the service's width (3648) of 10 classes; plus a
 * tiny 30-example, 3-class set, which must stay interactive. Median of several
 * runs after a warm-up that creates the onnxruntime sessions; the gate's own
 * share is timed apart. Target: 10,000 examples ≤ 3 s on 2 cores.
 *
 *   --threads <n>  onnxruntime intra-op threads (default 2)
 */
import os from 'node:os';
import { trainHead } from '../src/ml/heads';
import { buildGate } from '../src/ml/heads/knn-gate';
import { loadNegativeBank } from '../src/ml/open-set/negative-bank';
import { syntheticTrainingSet } from './lib/synthetic-embeddings';
import { median } from './lib/load-generator';

const PACK_KEY = 'bundled@1+centernet@2';
const DIM = 3648;
const TARGET_N10000_S = 3;
const CASES = [
  { key: 'n30_3classes', examples: 30, classes: 3, runs: 7 },
  { key: 'n200', examples: 200, classes: 10, runs: 5 },
  { key: 'n1000', examples: 1000, classes: 10, runs: 3 },
  { key: 'n10000', examples: 10000, classes: 10, runs: 3 },
];

async function main(): Promise<void> {
  const threadsArg = process.argv.indexOf('--threads');
  const threads = threadsArg >= 0 ? Number(process.argv[threadsArg + 1]) : 2;
  const bank = loadNegativeBank(PACK_KEY);
  if (!bank || bank.dim !== DIM)
    throw new Error(`no open-set bank of ${DIM}-d embeddings for ${PACK_KEY}: run npm run build:negative-bank`);
  const implicitNegatives = bank.embeddings;
  await trainHead(
    { ...syntheticTrainingSet({ examples: 30, classes: 3, dim: DIM, seed: 99 }), implicitNegatives },
    { packKey: 'bench', threads },
  );

  const seconds: Record<string, number> = {};
  const gateSeconds: Record<string, number> = {};
  for (const { key, examples, classes, runs } of CASES) {
    const set = { ...syntheticTrainingSet({ examples, classes, dim: DIM, seed: 1 }), implicitNegatives };
    const labels = set.classes.map((_, c) => Uint8Array.from(set.positives, (list) => (list.includes(c) ? 1 : 0)));
    const gateStarted = process.hrtime.bigint();
    await buildGate(set.embeddings, labels, DIM, { seed: 1, threads });
    gateSeconds[key] = Number(process.hrtime.bigint() - gateStarted) / 1e9;
    const times: number[] = [];
    let summary = '';
    for (let run = 0; run < runs; run++) {
      const started = process.hrtime.bigint();
      const head = await trainHead(set, { packKey: 'bench', threads });
      times.push(Number(process.hrtime.bigint() - started) / 1e9);
      const { method, folds, accuracy } = head.evaluation;
      summary = `${method}${method === 'k-fold' ? ` k=${folds}` : ''}, top-1 ${accuracy?.toFixed(3)}`;
    }
    seconds[key] = median(times);
    console.log(
      `${examples} × ${classes} classes × ${DIM}-d + ${implicitNegatives.length} bank photos: ${seconds[key].toFixed(3)} s median of ${runs} ` +
        `(${times.map((t) => t.toFixed(3)).join(', ')}), of which the k-NN gate ${gateSeconds[key].toFixed(3)} s; ${summary}`,
    );
  }
  console.log(
    JSON.stringify({
      bench: 'train',
      cores: os.cpus().length,
      threads,
      dim: DIM,
      bank_photos: implicitNegatives.length,
      seconds,
      gate_seconds: gateSeconds,
      target_n10000_s: TARGET_N10000_S,
      met: seconds.n10000 <= TARGET_N10000_S,
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
