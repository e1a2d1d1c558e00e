import { parseExampleUploads, validateClassName } from '../../src/domain/training-form';
import { newClassifierId } from '../../src/domain/classifier-id';

describe('example upload fields', () => {
  const file = (fieldname: string) => ({ fieldname, path: `/tmp/${fieldname}` });

  it('maps <class>_positive_examples to classes and negative_examples to negatives', () => {
    expect(parseExampleUploads([file('beagle_positive_examples'), file('negative_examples')])).toEqual([
      { fieldName: 'beagle_positive_examples', className: 'beagle', path: '/tmp/beagle_positive_examples' },
      { fieldName: 'negative_examples', className: null, path: '/tmp/negative_examples' },
    ]);
  });

  it('keeps unicode and spaces in class names as sent', () => {
    expect(parseExampleUploads([file('golden retriever_positive_examples')])[0].className).toBe('golden retriever');
    expect(parseExampleUploads([file('犬_positive_examples')])[0].className).toBe('犬');
  });

  it.each(['$', '*', '-', '{', '}', '\\', '|', '/', "'", '"', '`', '[', ']'])(
    'refuses the character %s in class names',
    (c) => {
      expect(() => validateClassName(`a${c}b`, `a${c}b_positive_examples`)).toThrow(`contains the character '${c}'`);
    },
  );

  it('refuses empty and overlong class names, duplicates and unknown fields', () => {
    expect(() => parseExampleUploads([file('_positive_examples')])).toThrow(/empty class name/);
    expect(() => parseExampleUploads([file(`${'x'.repeat(257)}_positive_examples`)])).toThrow(/at most 256/);
    expect(() => parseExampleUploads([file('a_positive_examples'), file('a_positive_examples')])).toThrow(
      /more than once/,
    );
    expect(() => parseExampleUploads([file('negative_examples'), file('negative_examples')])).toThrow(/at most one/);
    expect(() => parseExampleUploads([file('images_file')])).toThrow(/Unexpected file field 'images_file'/);
  });
});

describe('classifier ids', () => {
  it("follow Watson's rule: spaces removed, other characters dropped, 30 characters, _ and a positive int32", () => {
    expect(newClassifierId('Dog Breeds')).toMatch(/^DogBreeds_\d+$/);
    expect(newClassifierId('a-b_c.d!e')).toMatch(/^a-b_cde_\d+$/);
    expect(newClassifierId('x'.repeat(40))).toMatch(new RegExp(`^${'x'.repeat(30)}_\\d+$`));
    expect(newClassifierId('犬')).toMatch(/^classifier_\d+$/);
    const n = Number(newClassifierId('a').split('_')[1]);
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(2 ** 31);
  });
});
