import { ApiError } from '../../src/errors';
import { parseClassifierRef, parseClassifyParameters } from '../../src/domain/classify-request';

describe('parseClassifyParameters', () => {
  it('defaults to threshold 0.5 and no explicit classifiers', () => {
    expect(parseClassifyParameters({})).toEqual({
      url: undefined,
      classifierIds: undefined,
      owners: undefined,
      threshold: 0.5,
    });
  });

  it('splits, trims and deduplicates classifier_ids given as a list or repeated fields', () => {
    expect(parseClassifyParameters({ classifier_ids: ' a_1 , default,a_1,, ' }).classifierIds).toEqual([
      'a_1',
      'default',
    ]);
    expect(parseClassifyParameters({ classifier_ids: ['a_1', 'b_2,default'] }).classifierIds).toEqual([
      'a_1',
      'b_2',
      'default',
    ]);
  });

  it('reads owners IBM and me in any case, and refuses others', () => {
    expect(parseClassifyParameters({ owners: 'ibm,Me,IBM' }).owners).toEqual(['IBM', 'me']);
    expect(() => parseClassifyParameters({ owners: 'someone' })).toThrow(/The owner 'someone' is not valid/);
  });

  it.each([
    ['0', 0],
    ['0.0', 0],
    ['1', 1],
    ['0.73', 0.73],
  ])('accepts threshold %s', (raw, value) => {
    expect(parseClassifyParameters({ threshold: raw }).threshold).toBe(value);
  });

  it.each(['-1', '1.5', 'abc', 'NaN', 'Infinity', ' '])('refuses threshold %p with a 400', (raw) => {
    let error: unknown;
    try {
      parseClassifyParameters({ threshold: raw });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(400);
  });

  it('takes what the plain fields leave out from the legacy parameters JSON', () => {
    const parsed = parseClassifyParameters({
      parameters: JSON.stringify({
        url: 'http://x/y.jpg',
        classifier_ids: ['a_1', 'default'],
        owners: ['me'],
        threshold: 0.2,
      }),
      threshold: '0.9',
    });
    expect(parsed).toEqual({
      url: 'http://x/y.jpg',
      classifierIds: ['a_1', 'default'],
      owners: ['me'],
      threshold: 0.9,
    });
  });

  it('refuses parameters that are not a JSON object', () => {
    expect(() => parseClassifyParameters({ parameters: '{nope' })).toThrow(/not valid JSON/);
    expect(() => parseClassifyParameters({ parameters: '[1]' })).toThrow(/must be a JSON object/);
  });

  it('reads a pinned version as <classifier_id>@<version_id>, which no generated id can contain', () => {
    expect(parseClassifierRef('shapes_1706174669')).toEqual({ id: 'shapes_1706174669' });
    expect(parseClassifierRef('shapes_1706174669@12')).toEqual({ id: 'shapes_1706174669', versionId: 12 });
    for (const bad of ['a@', '@3', 'a@x', 'a@1@2', 'a@0', 'a@-1', 'a@1.5', `a@${'9'.repeat(16)}`]) {
      expect(() => parseClassifierRef(bad)).toThrow(/is not valid\. .*<classifier_id>@<version_id>/);
    }
    expect(() => parseClassifierRef('explicit@2')).toThrow(/The built-in classifier 'explicit' has no versions to pin/);
  });
});
