/**
 * bench:train: seconds for trainHead (training every cross-validation model and the final one,
 * calibration and evaluation, and every open-set step: the open-set bank as implicit negatives, the
 * "any of my classes" head, the k-NN gate with its pooled radius) on synthetic clustered,
 * L2-normalised embeddings of the service's width (3648): 10 classes at 200, 1,000 and 10,000
 * examples, and a tutorial-shaped set (4 classes × 10 photos + 10 negatives: what most tests and new
 * users train, where the bank is most of the rows). Each case runs "before" (the whole bank, the
 * preconditioner's former curvature 0.01) and "after" (the service: trainingBank's farthest-first
 * coreset, the current curvature), alternating, in one run, so the ratio holds on a shared machine. Median wall seconds
 * and the process's CPU seconds (onnxruntime's threads included), after a warm-up that creates the
 * onnxruntime sessions. Target: 10,000 examples ≤ 3 s on 2 cores.
 *
 *   --threads <n>  onnxruntime intra-op threads (default 2)
 *   --cases <a,b>  only these cases (n40_tutorial, n200, n1000, n10000)
 *   --baseline <dir>  also time another build's trainHead with the service's configuration, alternating
 *                     with the others ("baseline"): <dir> is that build's tsc output (e.g. main's commit
 *                     exported with git archive and compiled: its dist/), so a change's speed-up is one run's ratio
 */
import os from 'node:os';
import path from 'node:path';
import { trainHead, type TrainHeadOptions, type TrainingSet } from '../src/ml/heads';
import { loadNegativeBank, trainingBank } from '../src/ml/open-set/negative-bank';
import { syntheticTrainingSet } from './lib/synthetic-embeddings';
import { median } from './lib/load-generator';

const PACK_KEY = 'bundled@1+centernet@2';
const DIM = 3648;
const TARGET_N10000_S = 3;
const CASES = [
  { key: 'n40_tutorial', examples: 50, classes: 4, negativeShare: 0.2, runs: 3 },
  { key: 'n200', examples: 200, classes: 10, negativeShare: 0, runs: 3 },
  { key: 'n1000', examples: 1000, classes: 10, negativeShare: 0, runs: 3 },
  { key: 'n10000', examples: 10000, classes: 10, negativeShare: 0, runs: 2 },
];

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const threadsArg = args.indexOf('--threads');
  const threads = threadsArg >= 0 ? Number(args[threadsArg + 1]) : 2;
  const casesArg = args.indexOf('--cases');
  const only = casesArg >= 0 ? args[casesArg + 1].split(',') : undefined;
  const baselineArg = args.indexOf('--baseline');
  const baseline =
    baselineArg >= 0
      ? // Another build, chosen at run time.
        (require(path.resolve(args[baselineArg + 1], 'src/ml/heads')) as { trainHead: typeof trainHead }).trainHead
      : undefined;
  const variants = baseline ? (['before', 'after', 'baseline'] as const) : (['before', 'after'] as const);
  type Variant = (typeof variants)[number];
  const whole = loadNegativeBank(PACK_KEY);
  if (!whole || whole.dim !== DIM)
    throw new Error(`no open-set bank of ${DIM}-d embeddings for ${PACK_KEY}: run npm run build:negative-bank`);
  const configurations: Record<
    Variant,
    { bank: Float32Array[]; options: Partial<TrainHeadOptions>; train: typeof trainHead }
  > = {
    before: { bank: whole.embeddings, options: { assumedCurvature: 0.01 }, train: trainHead },
    after: { bank: trainingBank(whole).embeddings, options: {}, train: trainHead },
    baseline: { bank: trainingBank(whole).embeddings, options: {}, train: baseline ?? trainHead },
  };
  for (const train of new Set(variants.map((name) => configurations[name].train)))
    await train(
      {
        ...syntheticTrainingSet({ examples: 30, classes: 3, dim: DIM, seed: 99 }),
        implicitNegatives: whole.embeddings,
      },
      { packKey: 'bench', threads },
    );

  const seconds: Record<string, Record<string, number>> = Object.fromEntries(variants.map((name) => [name, {}]));
  const cpuSeconds: Record<string, Record<string, number>> = Object.fromEntries(variants.map((name) => [name, {}]));
  for (const { key, examples, classes, negativeShare, runs } of CASES.filter((c) => !only || only.includes(c.key))) {
    const set = syntheticTrainingSet({ examples, classes, dim: DIM, seed: 1, negativeShare });
    const times: Record<string, number[]> = Object.fromEntries(variants.map((name) => [name, []]));
    const cpu: Record<string, number[]> = Object.fromEntries(variants.map((name) => [name, []]));
    let summary = '';
    for (let run = 0; run < runs; run++) {
      for (const name of variants) {
        const { bank, options, train } = configurations[name];
        const training: TrainingSet = { ...set, implicitNegatives: bank };
        const cpuStarted = process.cpuUsage();
        const started = process.hrtime.bigint();
        const head = await train(training, { packKey: 'bench', threads, ...options });
        times[name].push(Number(process.hrtime.bigint() - started) / 1e9);
        const used = process.cpuUsage(cpuStarted);
        cpu[name].push((used.user + used.system) / 1e6);
        const { method, folds, accuracy, open_set } = head.evaluation;
        summary += `\n  ${name}: ${method}${method === 'k-fold' ? ` k=${folds}` : ''}, top-1 ${accuracy?.toFixed(3)}, bank false positives ${open_set?.false_positive_rate.toFixed(3)}, known head ${head.known ? 'yes' : 'no'}, gate ${head.gate ? 'yes' : 'no'}`;
      }
    }
    for (const name of variants) {
      seconds[name][key] = median(times[name]);
      cpuSeconds[name][key] = median(cpu[name]);
    }
    console.log(
      `${examples} × ${classes} classes × ${DIM}-d: before (${whole.embeddings.length} bank photos) ${seconds.before[key].toFixed(2)} s ` +
        `(CPU ${cpuSeconds.before[key].toFixed(2)} s), after (${configurations.after.bank.length}) ${seconds.after[key].toFixed(2)} s ` +
        `(CPU ${cpuSeconds.after[key].toFixed(2)} s)` +
        (baseline
          ? `, baseline ${seconds.baseline[key].toFixed(2)} s (CPU ${cpuSeconds.baseline[key].toFixed(2)} s)`
          : '') +
        `, medians of ${runs}; load average ${os
          .loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')}` +
        summary.split('\n').slice(-variants.length).join('\n'),
    );
  }
  console.log(
    JSON.stringify({
      bench: 'train',
      cores: os.cpus().length,
      threads,
      dim: DIM,
      load_average: os.loadavg().map((l) => Math.round(l * 10) / 10),
      bank_photos: { before: whole.embeddings.length, after: configurations.after.bank.length },
      seconds,
      cpu_seconds: cpuSeconds,
      target_n10000_s: TARGET_N10000_S,
      met: seconds.after.n10000 !== undefined ? seconds.after.n10000 <= TARGET_N10000_S : null,
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
