/**
 * The `default` classifier's share of bench:accuracy: does it name the main object of a plain photo, and
 * does it keep quiet on pictures that show none?
 *
 * - Named: the share of coco-photos.ts's `report` photos (real photos with one main object of a COCO
 *   class; none of them fitted the calibration) whose main class `default` scores ≥ 0.5; the same on
 *   each photo's centre crop to 60 % of its width and height (the object fills the frame, the case the
 *   zoom-out exists for).
 * - Generated: every COCO class or supercategory scored ≥ 0.5 on generated pictures that show no object
 *   (fixtures/synthetic-scenes.ts from a fixed seed, the README demo's and the benchmarks' class images,
 *   and the bad inputs: smaller than the network, a 20:1 panorama, a greyscale scan, all black, PNG noise).
 *
 * - The photo gate (src/ml/detector/photo-gate.ts): the share of report photos it lets through, and
 *   both figures above without it.
 *
 * Each under the service's zoom-out policy ('when-needed') and, to show what the zoom-out buys and
 * costs, 'never' and 'always'; plus the figure before calibration was fitted (first pass only, raw ≥ 0.4,
 * the hand-picked point it replaced). Also: how often the zoom-out ran, and the wall and CPU time per image
 * (all threads of the process: decode, backbone, detector, both passes) over every picture analysed, which
 * with food photos installed (bench-images.ts) includes every third of them: real photos that mostly show
 * no COCO object, as most photos users send. On those: how many get an object named (food_named; some
 * truly show one: poultry and meat are often photographed as the live animal, fruit as apples), under
 * each policy, before, and with PREVIOUS_CALIBRATION, the fit without photos of no object.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { classImages, CLASS_IMAGE_KINDS, seededRandom } from '../../fixtures/images';
import { badInputs, drawScene, randomScene } from '../../fixtures/synthetic-scenes';
import { ensureBundledPack } from '../../src/ml/bundled-pack';
import { ImageDecodeError } from '../../src/ml/decode-image';
import { COCO_CLASSES } from '../../src/ml/detector/coco-labels';
import { ensureDetectorPack } from '../../src/ml/detector/detector-pack';
import { calibratedScore, rawScoreAt } from '../../src/ml/detector/object-detector';
import { Embedder, type ImageAnalysis, type ZoomOutPolicy } from '../../src/ml/embedder';
import { loadBestPack } from '../../src/ml/model-pack';
import type { ImageInput } from '../../src/ml/types';
import { cocoPhotos, type CocoPhoto } from './coco-photos';
import { FOOD_DIR } from './datasets';

export const DEFAULT_TARGETS = { named_at_half: 0.9, generated_objects: 0 };
const GENERATED_SCENES = 120;
const SCENE_SEED = 20;
const CROP = 0.6;
/** The calibration before it was fitted: raw 0.4 mapped to 0.5 (first pass only). */
const HAND_PICKED_RAW_AT_HALF = 0.4;
const POLICIES: ZoomOutPolicy[] = ['when-needed', 'never', 'always'];
/** 8898e4d's calibration, fitted on photos that each show a COCO object and no photo without one. */
const PREVIOUS_CALIBRATION = { slope: 2.101817, intercept: 1.044811 };

interface PolicyFigures {
  named: number;
  /** Named with the photo gate left out (calibration alone): what the gate costs on real photos. */
  named_without_gate: number;
  /** Share of report photos (plain and cropped) the photo gate lets through. */
  photo_gate_pass: number;
  /** Objects ≥ 0.5 on generated pictures with the gate left out: what the gate saves. */
  generated_objects_without_gate: number;
  named_cropped: number;
  generated_objects: number;
  zoomed_out_photos: number;
  zoomed_out_generated: number;
  /** Share of the food photos (every third; none when not installed) the zoom-out ran on. */
  zoomed_out_food: number;
  /** Food photos on which some COCO class (any, dishes and fruit included) scores ≥ 0.5. */
  food_named: number;
  ms_per_image: number;
  /** Process CPU (all threads) per picture analysed: photos, crops, generated and food photos. */
  cpu_ms_per_image: number;
}

export interface DefaultAccuracyFigures {
  report_photos: number;
  generated_images: number;
  food_photos: number;
  /** Named as main had it: first pass only, the hand-picked calibration. */
  before: { named: number; named_cropped: number; generated_objects: number; food_named: number };
  /**
   * Under the service's policy with PREVIOUS_CALIBRATION (fitted without photos of no object): named
   * report photos and food photos with an object, for comparison in the same run.
   */
  previous_calibration: { named: number; food_named: number; food_classes: Record<string, number> };
  /** Under the service's policy: how many food photos each COCO class was named on. */
  food_classes: Record<string, number>;
  /** Under the service's policy: "photo: class score" for every class named on a food photo. */
  food_named_list: string[];
  policies: Record<ZoomOutPolicy, PolicyFigures>;
  /** Under the service's policy: what was named on generated pictures, if anything. */
  generated_named: string[];
  missed: string[];
  raw_score_at_half: number;
  loadavg_1m: [number, number];
  targets: typeof DEFAULT_TARGETS;
}

/** Runs the `default` accuracy figures on the models in `modelsDir`, printing a line per figure. */
export async function defaultAccuracy(modelsDir: string): Promise<DefaultAccuracyFigures> {
  const loadBefore = os.loadavg()[0];
  const photos = cocoPhotos('report');
  const plain = await Promise.all(photos.map(async (p) => ({ name: p.source, bytes: await p.read() })));
  const cropped = await Promise.all(plain.map(async (image) => ({ ...image, bytes: await centreCrop(image.bytes) })));
  const generated = await generatedImages();
  const food = foodPhotos();

  await ensureBundledPack(modelsDir);
  const detector = await ensureDetectorPack(modelsDir);
  const pack = await loadBestPack(modelsDir);
  const figures = {} as Record<ZoomOutPolicy, PolicyFigures>;
  let before: DefaultAccuracyFigures['before'] | undefined;
  let generatedNamed: string[] = [];
  let missed: string[] = [];
  let foodClasses: Record<string, number> = {};
  let foodNamed: string[] = [];
  for (const policy of POLICIES) {
    const embedder = await Embedder.create(pack, { threads: 2, detector, zoomOut: policy });
    try {
      const started = Date.now();
      const cpuStart = process.cpuUsage();
      const [onPlain, onCropped, onGenerated, onFood] = [
        await analyse(embedder, plain),
        await analyse(embedder, cropped),
        await analyse(embedder, generated),
        await analyse(embedder, food),
      ];
      const cpu = process.cpuUsage(cpuStart);
      const images = plain.length + cropped.length + generated.length + food.length;
      const objectsOn = (analyses: ImageAnalysis[]) =>
        analyses.flatMap((a, i) =>
          a.objects!.filter((o) => o.score >= 0.5).map((o) => `${generated[i].name}: ${o.class} ${o.score.toFixed(3)}`),
        );
      const ungated = (a: ImageAnalysis, c: string) => calibratedScore(a.objectScores![classIndex(c)]) >= 0.5;
      figures[policy] = {
        named: round(namedShare(photos, onPlain, (a, c) => score(a, c) >= 0.5)),
        named_without_gate: round(namedShare(photos, onPlain, ungated)),
        photo_gate_pass: round(
          [...onPlain, ...onCropped].filter((a) => a.photoProbability! >= 0.5).length / (2 * plain.length),
        ),
        generated_objects_without_gate: onGenerated.reduce(
          (n, a) => n + a.objectScores!.filter((raw) => calibratedScore(raw) >= 0.5).length,
          0,
        ),
        named_cropped: round(namedShare(photos, onCropped, (a, c) => score(a, c) >= 0.5)),
        generated_objects: objectsOn(onGenerated).length,
        zoomed_out_photos: round([...onPlain, ...onCropped].filter((a) => a.zoomedOut).length / (2 * plain.length)),
        zoomed_out_generated: round(onGenerated.filter((a) => a.zoomedOut).length / generated.length),
        zoomed_out_food: round(onFood.filter((a) => a.zoomedOut).length / Math.max(1, food.length)),
        food_named: onFood.filter((a) => a.objects!.some((o) => o.score >= 0.5)).length,
        ms_per_image: round((Date.now() - started) / images),
        cpu_ms_per_image: round((cpu.user + cpu.system) / 1000 / images),
      };
      if (policy === 'when-needed') {
        foodClasses = classTally(onFood);
        foodNamed = onFood.flatMap((a, i) =>
          namedClasses(a).map((o) => `${food[i].name}: ${o.class} ${o.score.toFixed(3)}`),
        );
        generatedNamed = objectsOn(onGenerated);
        missed = photos.flatMap((p, i) =>
          score(onPlain[i], p.classes[0]) >= 0.5 ? [] : [`${p.source} (${p.classes[0]})`],
        );
      }
      if (policy === 'never') {
        const beforeNamed = (a: ImageAnalysis, c: string) => a.objectScores![classIndex(c)] >= HAND_PICKED_RAW_AT_HALF;
        before = {
          named: round(namedShare(photos, onPlain, beforeNamed)),
          named_cropped: round(namedShare(photos, onCropped, beforeNamed)),
          generated_objects: onGenerated.reduce(
            (n, a) => n + a.objectScores!.filter((raw) => raw >= HAND_PICKED_RAW_AT_HALF).length,
            0,
          ),
          food_named: onFood.filter((a) => a.objectScores!.some((raw) => raw >= HAND_PICKED_RAW_AT_HALF)).length,
        };
      }
    } finally {
      await embedder.close();
    }
    const f = figures[policy];
    console.log(
      `default, zoom-out ${policy}: named ${pct(f.named)} of ${photos.length} report photos, ${pct(f.named_cropped)} of their ` +
        `${CROP * 100}% centre crops; ${f.generated_objects} objects on ${generated.length} generated pictures; zoom-out ran on ` +
        `${pct(f.zoomed_out_photos)} of photos and crops, ${pct(f.zoomed_out_generated)} of generated, ${pct(f.zoomed_out_food)} of ` +
        `${food.length} food photos; ${f.ms_per_image} ms/image, ${f.cpu_ms_per_image} ms CPU/image; ` +
        `photo gate passes ${pct(f.photo_gate_pass)} of photos and crops; without the gate: named ${pct(f.named_without_gate)}, ` +
        `${f.generated_objects_without_gate} objects on generated pictures`,
    );
  }
  const previousEmbedder = await Embedder.create(pack, { threads: 2, detector, calibration: PREVIOUS_CALIBRATION });
  let previous: DefaultAccuracyFigures['previous_calibration'];
  try {
    const [onPlain, onFood] = [await analyse(previousEmbedder, plain), await analyse(previousEmbedder, food)];
    previous = {
      named: round(namedShare(photos, onPlain, (a, c) => score(a, c) >= 0.5)),
      food_named: onFood.filter((a) => a.objects!.some((o) => o.score >= 0.5)).length,
      food_classes: classTally(onFood),
    };
  } finally {
    await previousEmbedder.close();
  }
  console.log(
    `default, food photos with an object named: ${figures['when-needed'].food_named} of ${food.length} ` +
      `(${JSON.stringify(foodClasses)}); with the previous calibration ${previous.food_named} ` +
      `(${JSON.stringify(previous.food_classes)}), report photos named ${pct(previous.named)}; before ${before!.food_named}`,
  );
  console.log(
    `default before (first pass, raw ≥ ${HAND_PICKED_RAW_AT_HALF}): named ${pct(before!.named)}, crops ${pct(before!.named_cropped)}, ` +
      `${before!.generated_objects} objects on generated pictures`,
  );
  if (missed.length > 0) console.log(`default missed: ${missed.join('; ')}`);
  if (generatedNamed.length > 0) console.log(`default named on generated pictures: ${generatedNamed.join('; ')}`);
  return {
    report_photos: photos.length,
    generated_images: generated.length,
    food_photos: food.length,
    before: before!,
    previous_calibration: previous,
    food_classes: foodClasses,
    food_named_list: foodNamed,
    policies: figures,
    generated_named: generatedNamed,
    missed,
    raw_score_at_half: round(rawScoreAt(0.5)),
    loadavg_1m: [round(loadBefore), round(os.loadavg()[0])],
    targets: DEFAULT_TARGETS,
  };
}

/** Pictures with no object: seeded scenes, the class images of the demo and the benchmarks, and the bad inputs. */
async function generatedImages(): Promise<ImageInput[]> {
  return [...(await generatedPictures(GENERATED_SCENES, SCENE_SEED, 4, 424_242)), ...(await badInputs())];
}

/**
 * `scenes` random scenes (fixtures/synthetic-scenes.ts) drawn from `sceneSeed`, then `perKind` class
 * images of each kind (fixtures/images.ts) from `classSeed`: generated pictures that show no object.
 */
export async function generatedPictures(
  scenes: number,
  sceneSeed: number,
  perKind: number,
  classSeed: number,
): Promise<ImageInput[]> {
  const random = seededRandom(sceneSeed);
  const images: ImageInput[] = [];
  for (let i = 0; i < scenes; i++) {
    const spec = randomScene(random);
    images.push({ name: JSON.stringify(spec), bytes: await drawScene(spec) });
  }
  for (const kind of CLASS_IMAGE_KINDS) {
    (await classImages(kind, perKind, classSeed)).forEach((bytes, k) => images.push({ name: `${kind} ${k}`, bytes }));
  }
  return images;
}

/** Every third food photo (bench-images.ts), when installed: real photos with mostly no COCO object. */
function foodPhotos(): ImageInput[] {
  if (!fs.existsSync(FOOD_DIR)) return [];
  return fs
    .readdirSync(FOOD_DIR)
    .filter((file) => file.endsWith('.jpeg'))
    .sort()
    .filter((_, i) => i % 3 === 0)
    .map((file) => ({ name: file, bytes: fs.readFileSync(path.join(FOOD_DIR, file)) }));
}

/** COCO classes (not supercategories) an analysis names at ≥ 0.5. */
function namedClasses(analysis: ImageAnalysis): { class: string; score: number }[] {
  return analysis.objects!.filter((o) => o.score >= 0.5 && COCO_CLASSES.some((c) => c.name === o.class));
}

/** How many analyses name each COCO class. */
function classTally(analyses: ImageAnalysis[]): Record<string, number> {
  const tally: Record<string, number> = {};
  for (const a of analyses) for (const o of namedClasses(a)) tally[o.class] = (tally[o.class] ?? 0) + 1;
  return tally;
}

async function analyse(embedder: Embedder, images: ImageInput[]): Promise<ImageAnalysis[]> {
  const analyses = await embedder.analyze(images, undefined, { parts: ['objects'] });
  return analyses.map((a) => {
    if (a instanceof ImageDecodeError) throw a;
    return a;
  });
}

async function centreCrop(bytes: Buffer): Promise<Buffer> {
  const { width = 0, height = 0 } = await sharp(bytes)
    .rotate()
    .toBuffer({ resolveWithObject: true })
    .then((r) => r.info);
  const w = Math.max(1, Math.round(width * CROP));
  const h = Math.max(1, Math.round(height * CROP));
  return sharp(bytes)
    .rotate()
    .extract({ left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h })
    .png()
    .toBuffer();
}

function namedShare(
  photos: CocoPhoto[],
  analyses: ImageAnalysis[],
  named: (a: ImageAnalysis, c: string) => boolean,
): number {
  return photos.filter((p, i) => named(analyses[i], p.classes[0])).length / photos.length;
}

const classIndex = (name: string) => COCO_CLASSES.findIndex((c) => c.name === name);
const score = (a: ImageAnalysis, name: string) => a.objects!.find((o) => o.class === name)?.score ?? 0;
const pct = (value: number) => `${(value * 100).toFixed(1)}%`;
const round = (value: number) => Math.round(value * 1e4) / 1e4;
