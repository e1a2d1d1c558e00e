import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_MISSING_OBJECTS_WARNING,
  defaultClasses,
  loadImagenetClasses,
  type ImagenetClass,
} from '../../src/ml/default-classifier';
import { BUNDLED_IMAGENET_CLASSES } from '../../src/ml/imagenet/imagenet-labels';
import { ModelPackError } from '../../src/ml/imagenet/model-pack-error';
import type { BuiltinClass } from '../../src/ml/types';

const COLORS: BuiltinClass[] = [
  { class: 'green color', score: 0.41 },
  { class: 'red color', score: 0.93 },
  { class: 'white color', score: 0.62 },
];

const indexOf = (label: string, hierarchyPart = ''): number =>
  BUNDLED_IMAGENET_CLASSES.findIndex((c) => c.label === label && c.type_hierarchy.includes(hierarchyPart));

/** Logits with the given classes raised above a flat background. */
function logitsWith(raised: Array<[number, number]>): Float32Array {
  const logits = new Float32Array(1000);
  for (const [index, logit] of raised) logits[index] = logit;
  return logits;
}

function probabilities(logits: Float32Array): number[] {
  const exps = Array.from(logits, (v) => Math.exp(v));
  const sum = exps.reduce((s, v) => s + v, 0);
  return exps.map((v) => v / sum);
}

function byClass(classes: BuiltinClass[]): Map<string, BuiltinClass> {
  return new Map(classes.map((c) => [c.class, c]));
}

describe('defaultClasses', () => {
  test('without ImageNet logits it returns the colour classes alone, sorted', () => {
    expect(defaultClasses({ colors: COLORS })).toEqual([COLORS[1], COLORS[2], COLORS[0]]);
  });

  const beagle = indexOf('beagle');
  const retriever = indexOf('golden retriever');
  const sportsCar = indexOf('sports car');
  const logits = logitsWith([
    [beagle, 9],
    [retriever, 8],
    [sportsCar, 7],
  ]);
  const p = probabilities(logits);
  const classes = defaultClasses({ colors: COLORS, imagenetLogits: logits });
  const found = byClass(classes);

  test('each class appears once, sorted by score, colours included', () => {
    expect(new Set(classes.map((c) => c.class)).size).toBe(classes.length);
    const scores = classes.map((c) => c.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    for (const color of COLORS) expect(found.get(color.class)).toEqual(color);
  });

  test('ImageNet classes carry their softmax probability and their type_hierarchy', () => {
    expect(found.get('beagle')).toEqual({
      class: 'beagle',
      score: expect.closeTo(p[beagle], 6),
      type_hierarchy: '/animal/mammal/dog/hound/beagle',
    });
    expect(found.get('sports car')?.type_hierarchy).toBe('/conveyance/vehicle/motor vehicle/car/sports car');
    // Every one of the 1000 classes is there unless a same-named node outranks it.
    const labels = new Set(BUNDLED_IMAGENET_CLASSES.map((c) => c.label));
    for (const label of labels) expect(found.has(label)).toBe(true);
  });

  test('ancestors are classes too, each at least as likely as any class below it', () => {
    const dogBreeds = BUNDLED_IMAGENET_CLASSES.map((c, i) => [c, p[i]] as const).filter(([c]) =>
      c.type_hierarchy.startsWith('/animal/mammal/dog/'),
    );
    const dog = found.get('dog');
    expect(dog?.type_hierarchy).toBe('/animal/mammal/dog');
    // Softmax classes exclude each other: P(dog) is the sum over the breeds.
    expect(dog?.score).toBeCloseTo(
      dogBreeds.reduce((sum, [, prob]) => sum + prob, 0),
      6,
    );
    expect(dog!.score).toBeGreaterThanOrEqual(1 - dogBreeds.reduce((product, [, prob]) => product * (1 - prob), 1));
    expect(found.get('hound')!.score).toBeGreaterThanOrEqual(found.get('beagle')!.score);
    expect(found.get('mammal')!.score).toBeGreaterThanOrEqual(dog!.score);
    expect(found.get('animal')!.score).toBeGreaterThanOrEqual(found.get('mammal')!.score);
    expect(found.get('car')).toMatchObject({ type_hierarchy: '/conveyance/vehicle/motor vehicle/car' });
    expect(found.get('vehicle')!.score).toBeGreaterThanOrEqual(found.get('car')!.score);
    expect(found.get('car')!.score).toBeGreaterThanOrEqual(found.get('sports car')!.score);

    // The same holds for every parent/child pair returned.
    const byPath = new Map(classes.filter((c) => c.type_hierarchy).map((c) => [c.type_hierarchy!, c]));
    for (const child of byPath.values()) {
      const parent = byPath.get(child.type_hierarchy!.slice(0, child.type_hierarchy!.lastIndexOf('/')));
      if (parent) expect(parent.score).toBeGreaterThanOrEqual(child.score);
    }
  });

  test('of two nodes with the same name, the more likely one is kept', () => {
    const machineCrane = indexOf('crane', '/device/');
    const birdCrane = indexOf('crane', '/animal/');
    const towardsMachine = defaultClasses({
      colors: [],
      imagenetLogits: logitsWith([
        [machineCrane, 6],
        [birdCrane, 2],
      ]),
    });
    expect(towardsMachine.filter((c) => c.class === 'crane')).toEqual([
      { class: 'crane', score: expect.any(Number), type_hierarchy: '/device/lifting device/crane' },
    ]);
    const towardsBird = defaultClasses({
      colors: [],
      imagenetLogits: logitsWith([
        [machineCrane, 2],
        [birdCrane, 6],
      ]),
    });
    expect(towardsBird.find((c) => c.class === 'crane')?.type_hierarchy).toBe('/animal/bird/crane');
  });

  test('works on any class list: parents sum their children', () => {
    const labels: ImagenetClass[] = [
      { wnid: 'n1', label: 'beagle', type_hierarchy: '/animal/dog/beagle' },
      { wnid: 'n2', label: 'pug', type_hierarchy: '/animal/dog/pug' },
      { wnid: 'n3', label: 'tabby', type_hierarchy: '/animal/cat/tabby' },
    ];
    const result = defaultClasses(
      { colors: [], imagenetLogits: Float32Array.of(Math.log(5), Math.log(3), Math.log(2)) },
      labels,
    );
    expect(result.map((c) => [c.class, Number(c.score.toFixed(6)), c.type_hierarchy])).toEqual([
      ['animal', 1, '/animal'],
      ['dog', 0.8, '/animal/dog'],
      ['beagle', 0.5, '/animal/dog/beagle'],
      ['pug', 0.3, '/animal/dog/pug'],
      ['cat', 0.2, '/animal/cat'],
      ['tabby', 0.2, '/animal/cat/tabby'],
    ]);
  });

  test('logits that do not match the class list are refused', () => {
    expect(() => defaultClasses({ colors: COLORS, imagenetLogits: new Float32Array(999) })).toThrow(
      /999 values but the class list has 1000/,
    );
  });
});

describe('the ImageNet pack being absent', () => {
  test('the warning tells how to install it', () => {
    expect(DEFAULT_MISSING_OBJECTS_WARNING).toMatch(/ImageNet/);
    expect(DEFAULT_MISSING_OBJECTS_WARNING).toContain('npm run models:fetch');
  });

  test('loading its classes says how to install it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'no-imagenet-pack-'));
    try {
      const error = await loadImagenetClasses(join(dir, 'imagenet')).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ModelPackError);
      expect((error as Error).message).toMatch(/manifest\.json: cannot read it .*npm run models:fetch/);
    } finally {
      await rm(dir, { recursive: true });
    }
  });
});
