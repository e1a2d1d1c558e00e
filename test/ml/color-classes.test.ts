import sharp from 'sharp';
import { classImages, noiseImage, type Rgb, solidColorPng, twoColorImage } from '../../fixtures/images';
import { colorClasses, colorName, srgbToLab } from '../../src/ml/color-classes';
import { decodeImage, type DecodedImage } from '../../src/ml/decode-image';

const SIZE = 224;

function decode(bytes: Buffer, name = 'image.png'): Promise<DecodedImage> {
  return decodeImage(bytes, name, SIZE);
}

/** A DecodedImage made directly from pixels, bypassing any codec. */
function imageOfPixels(pixels: Rgb[]): DecodedImage {
  const side = Math.sqrt(pixels.length);
  const rgb = Buffer.alloc(pixels.length * 3);
  pixels.forEach(({ r, g, b }, i) => rgb.set([r, g, b], i * 3));
  return { rgb, size: side, width: side, height: side };
}

describe('srgbToLab', () => {
  it('matches reference CIELAB (D65) values', () => {
    const close = (actual: number[], expected: number[]) =>
      actual.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 1));
    close(srgbToLab(255, 255, 255), [100, 0, 0]);
    close(srgbToLab(0, 0, 0), [0, 0, 0]);
    close(srgbToLab(255, 0, 0), [53.24, 80.09, 67.2]);
    close(srgbToLab(0, 0, 255), [32.3, 79.19, -107.86]);
    close(srgbToLab(128, 128, 128), [53.59, 0, 0]);
  });
});

describe('colorClasses', () => {
  const solids: [string, Rgb][] = [
    ['red color', { r: 255, g: 0, b: 0 }],
    ['green color', { r: 0, g: 128, b: 0 }],
    ['blue color', { r: 0, g: 0, b: 255 }],
    ['yellow color', { r: 255, g: 255, b: 0 }],
    ['orange color', { r: 255, g: 165, b: 0 }],
    ['purple color', { r: 128, g: 0, b: 128 }],
    ['pink color', { r: 255, g: 192, b: 203 }],
    ['brown color', { r: 150, g: 75, b: 0 }],
    ['black color', { r: 0, g: 0, b: 0 }],
    ['white color', { r: 255, g: 255, b: 255 }],
    ['gray color', { r: 128, g: 128, b: 128 }],
    ['light gray color', { r: 190, g: 190, b: 190 }],
    ['dark gray color', { r: 64, g: 64, b: 64 }],
    ['navy blue color', { r: 0, g: 0, b: 110 }],
    ['light blue color', { r: 173, g: 216, b: 230 }],
    ['olive green color', { r: 110, g: 140, b: 40 }],
    ['dark green color', { r: 0, g: 80, b: 30 }],
    ['light brown color', { r: 181, g: 130, b: 80 }],
  ];

  it.each(solids)('names a solid image "%s" with score 1', async (name, color) => {
    const classes = colorClasses(await decode(await solidColorPng(color, 64)));
    expect(classes).toHaveLength(1);
    expect(classes[0]).toMatchObject({ class: name, score: 1 });
  });

  it('gives each half of a two-colour image the same middling score', async () => {
    const image = await decode(
      await twoColorImage({ left: { r: 255, g: 0, b: 0 }, right: { r: 0, g: 0, b: 255 }, width: 200 }),
    );
    const classes = colorClasses(image);
    expect(classes.map((c) => c.class).sort()).toEqual(['blue color', 'red color']);
    for (const { score } of classes) expect(score).toBeCloseTo(Math.SQRT1_2, 2);
  });

  it('scores by share of pixels, sorted best first, leaving out colours under 5%', () => {
    // 100 pixels: 75 white, 22 black, 3 red.
    const white = { r: 255, g: 255, b: 255 };
    const black = { r: 0, g: 0, b: 0 };
    const red = { r: 255, g: 0, b: 0 };
    const pixels = [...Array(75).fill(white), ...Array(22).fill(black), ...Array(3).fill(red)];
    expect(colorClasses(imageOfPixels(pixels))).toEqual([
      { class: 'white color', score: Math.round(Math.sqrt(0.75) * 1000) / 1000, type_hierarchy: '/colors/white color' },
      { class: 'black color', score: Math.round(Math.sqrt(0.22) * 1000) / 1000, type_hierarchy: '/colors/black color' },
    ]);
  });

  it('places shades under their family in type_hierarchy', () => {
    const olive = { r: 107, g: 142, b: 35 };
    expect(colorClasses(imageOfPixels(Array(4).fill(olive)))).toEqual([
      { class: 'olive green color', score: 1, type_hierarchy: '/colors/green/olive green color' },
    ]);
  });

  it('keeps scores consistent on a noisy photo-like image: each below 1, squares summing to at most 1', async () => {
    const classes = colorClasses(await decode(await noiseImage({ size: 224, seed: 4 })));
    expect(classes.length).toBeGreaterThan(0);
    const squares = classes.reduce((sum, c) => sum + c.score ** 2, 0);
    expect(squares).toBeLessThanOrEqual(1.001);
    for (let i = 1; i < classes.length; i++) expect(classes[i].score).toBeLessThanOrEqual(classes[i - 1].score);
  });

  it('finds the colours of the fixture classes', async () => {
    const dominant = async (kind: Parameters<typeof classImages>[0]) => {
      const [bytes] = await classImages(kind, 1, 5);
      return colorClasses(await decode(bytes, `${kind}.jpg`)).map((c) => c.type_hierarchy);
    };
    expect((await dominant('red-circles')).some((h) => h?.startsWith('/colors/red'))).toBe(true);
    expect((await dominant('blue-squares')).some((h) => h?.startsWith('/colors/blue'))).toBe(true);
    expect((await dominant('green-stripes')).some((h) => h?.startsWith('/colors/green'))).toBe(true);
    expect((await dominant('yellow-triangles')).some((h) => h?.startsWith('/colors/yellow'))).toBe(true);
  });

  it('is deterministic, whatever was classified before', async () => {
    const photo = await decode(
      await sharp(await noiseImage({ size: 64, seed: 8 }))
        .blur(3)
        .png()
        .toBuffer(),
    );
    const first = colorClasses(photo);
    expect(colorClasses(photo)).toEqual(first);
    // A fresh copy of the module starts with an empty cell cache: same answer.
    let fresh: typeof colorClasses | undefined;
    jest.isolateModules(() => {
      fresh = (require('../../src/ml/color-classes') as typeof import('../../src/ml/color-classes')).colorClasses;
    });
    expect(fresh!(photo)).toEqual(first);
  });

  it('names single colours through colorName', () => {
    expect(colorName(0, 255, 0)).toBe('bright green color');
    expect(colorName(255, 90, 0)).toBe('reddish orange color');
    expect(colorName(30, 30, 30)).toBe('black color');
  });
});
