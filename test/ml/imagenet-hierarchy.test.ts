import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  formatImagenetClasses,
  generateImagenetClasses,
  IMAGENET_SOURCES,
} from '../../scripts/generate-imagenet-hierarchy';
import { BUNDLED_IMAGENET_CLASSES, parseImagenetClasses } from '../../src/ml/imagenet/imagenet-labels';
import { ModelPackError } from '../../src/ml/imagenet/model-pack-error';

const committedFile = join(__dirname, '..', '..', 'src', 'ml', 'imagenet', 'imagenet-classes.json');
const committedText = readFileSync(committedFile, 'utf8');
const classes = parseImagenetClasses(JSON.parse(committedText), committedFile);
const missingSources = [IMAGENET_SOURCES.darknetLabels, join(IMAGENET_SOURCES.wordnetDir, 'data.noun')].filter(
  (f) => !existsSync(f),
);

describe('imagenet-classes.json', () => {
  test('holds the 1000 ImageNet-1k classes in logit order (sorted WordNet ids)', () => {
    expect(classes).toHaveLength(1000);
    const wnids = classes.map((c) => c.wnid);
    expect(new Set(wnids).size).toBe(1000);
    expect([...wnids].sort()).toEqual(wnids);
    expect(wnids.every((w) => /^n\d{8}$/.test(w))).toBe(true);
    expect(BUNDLED_IMAGENET_CLASSES).toEqual(classes);
  });

  test.each([
    [0, 'n01440764', 'tench', '/animal/fish/soft-finned fish/cypriniform fish/tench'],
    [1, 'n01443537', 'goldfish', '/animal/fish/soft-finned fish/cypriniform fish/goldfish'],
    [151, 'n02085620', 'Chihuahua', '/animal/mammal/dog/Chihuahua'],
    [162, 'n02088364', 'beagle', '/animal/mammal/dog/hound/beagle'],
    [207, 'n02099601', 'golden retriever', '/animal/mammal/dog/golden retriever'],
    [281, 'n02123045', 'tabby', '/animal/mammal/cat/tabby'],
    [409, 'n02708093', 'analog clock', '/device/instrument/measuring instrument/timepiece/clock/analog clock'],
    [817, 'n04285008', 'sports car', '/conveyance/vehicle/motor vehicle/car/sports car'],
    [954, 'n07753592', 'banana', '/food/produce/edible fruit/banana'],
    [963, 'n07873807', 'pizza', '/food/nutriment/dish/pizza'],
    [981, 'n09835506', 'ballplayer', '/person/contestant/athlete/ballplayer'],
    [999, 'n15075141', 'toilet tissue', '/material/paper/tissue/toilet tissue'],
  ])('class %i is %s (%s) at %s', (index, wnid, label, hierarchy) => {
    expect(classes[index]).toEqual({ wnid, label, type_hierarchy: hierarchy });
  });

  test('every path runs from a general category down to the class itself, at most 6 levels', () => {
    const malformed = classes.filter(({ label, type_hierarchy }) => {
      const segments = type_hierarchy.split('/').slice(1);
      const wellFormed = segments.every((s) => s !== '' && !s.includes('_'));
      return !wellFormed || segments.length < 2 || segments.length > 6 || segments[segments.length - 1] !== label;
    });
    expect(malformed).toEqual([]);
  });

  test('the uninformative top levels of WordNet are left out', () => {
    const segments = new Set(classes.flatMap((c) => c.type_hierarchy.split('/').slice(1)));
    for (const generic of [
      'entity',
      'physical entity',
      'object',
      'whole',
      'living thing',
      'organism',
      'artifact',
      'instrumentality',
    ]) {
      expect(segments).not.toContain(generic);
    }
  });

  test('related classes share their ancestors', () => {
    const under = (ancestor: string) =>
      classes.filter((c) => c.type_hierarchy.startsWith(`${ancestor}/`)).map((c) => c.label);
    // ImageNet's 118 dog classes (151–268) are all under one 'dog' node.
    expect(under('/animal/mammal/dog')).toEqual(classes.slice(151, 269).map((c) => c.label));
    expect(under('/conveyance/vehicle/motor vehicle/car').sort()).toEqual(
      ['Model T', 'ambulance', 'beach wagon', 'cab', 'convertible', 'jeep', 'limousine', 'racer', 'sports car'].sort(),
    );
    expect(under('/person').sort()).toEqual(['ballplayer', 'groom', 'scuba diver']);
  });

  (missingSources.length === 0 ? test : test.skip)(
    'is what the generator makes from Debian darknet and wordnet-base',
    () => {
      expect(formatImagenetClasses(generateImagenetClasses())).toBe(committedText);
    },
  );
  if (missingSources.length > 0) {
    console.warn(
      `imagenet-hierarchy.test: skipped regenerating the class list, missing ${missingSources.join(', ')} (apt-get install darknet wordnet-base)`,
    );
  }

  test('a list of the wrong length or shape is refused', () => {
    expect(() => parseImagenetClasses(classes.slice(1), 'short.json')).toThrow(ModelPackError);
    const broken = classes.map((c, i) => (i === 5 ? { ...c, type_hierarchy: '/animal/not the label' } : c));
    expect(() => parseImagenetClasses(broken, 'broken.json')).toThrow(/broken\.json: class 5 is not/);
  });
});
