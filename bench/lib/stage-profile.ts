import { openEmbedder } from '../../src/ml/open-embedder';
import { createLogger } from '../../src/logger';
import { colorClasses } from '../../src/ml/color-classes';
import { decodeImageViews } from '../../src/ml/decode-image';
import { CENTERNET_INPUT_NAME, CENTERNET_OUTPUT_NAME } from '../../src/ml/detector/centernet-converter';
import { ensureDetectorPack } from '../../src/ml/detector/detector-pack';
import { bestRawScores, objectClasses } from '../../src/ml/detector/object-detector';
import { scoreHead, trainHead } from '../../src/ml/heads';
import { InferenceWorker } from '../../src/ml/inference-worker';
import { loadBestPack } from '../../src/ml/model-pack';
import { loadNegativeBank } from '../../src/ml/open-set/negative-bank';
import { modelsDir } from './repo';

/** CPU milliseconds (all threads of this process) per call of each stage of one classify request. */
export interface StageCpu {
  decode_ms: number;
  mobilenet_ms: number;
  centernet_ms: number;
  /** Colours, objects, a custom head and its k-NN gate, `default`'s classes. */
  scoring_ms: number;
}

const cpuMs = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
};

/**
 * What one classify request costs per stage, with a custom classifier and `default` (`withDefault`)
 * and with the custom classifier alone (`customOnly`: each network cut to its embedding taps, no
 * colours or objects), measured in this process stage by stage (one ONNX Runtime thread, calls one
 * after another, so the process's CPU time is the stage's): the decode (one square for both networks,
 * and the pack's block means), each network, and the scoring. The service adds the HTTP, multipart
 * and JSON work on top; the bench reports that as the rest of its measured API CPU.
 */
export async function profileStages(
  query: Buffer,
  examples: Buffer[][],
  repeats: number,
): Promise<{ withDefault: StageCpu; customOnly: StageCpu }> {
  const dir = modelsDir();
  const pack = await loadBestPack(dir);
  const detector = await ensureDetectorPack(dir);
  const embedder = await openEmbedder(dir, 1, createLogger('warn', 'bench'));
  const analyses = await embedder.analyze(examples.flat().map((bytes, i) => ({ name: `${i}.jpg`, bytes })));
  const embeddings = analyses.map((a) => {
    if (a instanceof Error) throw a;
    return a.embedding;
  });
  const positives = examples.flatMap((group, c) => group.map(() => [c]));
  const head = await trainHead(
    {
      classes: examples.map((_, c) => `class${c}`),
      embeddings,
      positives,
      implicitNegatives: loadNegativeBank(embedder.packKey)?.embeddings,
    },
    { packKey: embedder.packKey, threads: 1 },
  );
  await embedder.close();

  const packTaps = pack.manifest.embedding.outputs;
  const detectorTaps = detector.taps.map((tap) => tap.output);
  const [mobilenet, centernet] = await Promise.all([
    InferenceWorker.create(pack.modelPath, { intraOpNumThreads: 1, cuts: [packTaps] }),
    InferenceWorker.create(detector.modelPath, { intraOpNumThreads: 1, cuts: [detectorTaps] }),
  ]);
  // As the Embedder does: one stretched square for CenterNet; MobileNetV2 takes its k×k block means.
  const views = [{ size: detector.inputSize, fit: 'fill' as const }];
  const k = detector.inputSize / pack.manifest.input.size;
  const totals = {
    withDefault: { decode_ms: 0, mobilenet_ms: 0, centernet_ms: 0, scoring_ms: 0 },
    customOnly: { decode_ms: 0, mobilenet_ms: 0, centernet_ms: 0, scoring_ms: 0 },
  };
  try {
    // The two kinds of request in turn, so drift of a shared machine hits both alike.
    for (let r = -2; r < 2 * repeats; r++) {
      const kind = r % 2 === 0 ? 'withDefault' : 'customOnly';
      const withDefault = kind === 'withDefault';
      let t = cpuMs();
      const lap = (stage: keyof StageCpu) => {
        const now = cpuMs();
        if (r >= 0) totals[kind][stage] += now - t;
        t = now;
      };
      const [large] = await decodeImageViews(query, 'query.jpg', views);
      lap('decode_ms');
      const size = pack.manifest.input.size;
      const nchw = new Float32Array(3 * size * size);
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < size; y++) {
          for (let x = 0; x < size; x++) {
            let sum = 0;
            for (let dy = 0; dy < k; dy++)
              for (let dx = 0; dx < k; dx++) sum += large.rgb[((y * k + dy) * large.size + x * k + dx) * 3 + c];
            nchw[(c * size + y) * size + x] = sum / (k * k * 255);
          }
        }
      }
      // The service's classify with `default` asks for no explicit score; the whole pack runs for its ImageNet head when it has one.
      const packOutputs =
        withDefault && pack.manifest.heads.imagenet ? [...packTaps, pack.manifest.heads.imagenet.output] : packTaps;
      await mobilenet.run(pack.manifest.input.name, { data: nchw, dims: [1, 3, size, size] }, packOutputs);
      lap('mobilenet_ms');
      const outputs = await centernet.run(
        CENTERNET_INPUT_NAME,
        { data: Float32Array.from(large.rgb), dims: [1, large.size, large.size, 3] },
        withDefault ? [CENTERNET_OUTPUT_NAME, ...detectorTaps] : detectorTaps,
      );
      lap('centernet_ms');
      if (withDefault) {
        colorClasses(large);
        objectClasses(bestRawScores(outputs[CENTERNET_OUTPUT_NAME].data));
      }
      scoreHead(head, embeddings[0]);
      lap('scoring_ms');
    }
  } finally {
    await Promise.all([mobilenet.close(), centernet.close()]);
  }
  const per = (stage: StageCpu): StageCpu => {
    const round = (ms: number) => Math.round((ms / repeats) * 100) / 100;
    return {
      decode_ms: round(stage.decode_ms),
      mobilenet_ms: round(stage.mobilenet_ms),
      centernet_ms: round(stage.centernet_ms),
      scoring_ms: round(stage.scoring_ms),
    };
  };
  return { withDefault: per(totals.withDefault), customOnly: per(totals.customOnly) };
}
