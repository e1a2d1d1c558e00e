/**
 * Colour classes in the style of Watson's `default` classifier ("red color",
 * "olive green color"): each pixel is named after the nearest colour of a fixed
 * palette in CIELAB (CIE76 distance), and a colour's score grows with the share
 * of pixels it names.
 */
import type { DecodedImage } from './decode-image';
import type { BuiltinClass } from './types';

type Family = 'black' | 'gray' | 'white' | 'red' | 'pink' | 'orange' | 'yellow' | 'green' | 'blue' | 'purple' | 'brown';

interface NamedColor {
  name: string;
  family: Family;
  rgb: [number, number, number];
}

/** The palette. Entries are at least 11 ΔE apart, so a flat colour has one clear name. */
const PALETTE: readonly NamedColor[] = [
  { name: 'black color', family: 'black', rgb: [0, 0, 0] },
  { name: 'dark gray color', family: 'gray', rgb: [64, 64, 64] },
  { name: 'gray color', family: 'gray', rgb: [128, 128, 128] },
  { name: 'light gray color', family: 'gray', rgb: [192, 192, 192] },
  { name: 'white color', family: 'white', rgb: [255, 255, 255] },
  { name: 'ivory color', family: 'white', rgb: [250, 245, 220] },
  { name: 'red color', family: 'red', rgb: [230, 20, 20] },
  { name: 'maroon color', family: 'red', rgb: [128, 0, 0] },
  { name: 'pink color', family: 'pink', rgb: [255, 182, 193] },
  { name: 'hot pink color', family: 'pink', rgb: [255, 105, 180] },
  { name: 'magenta color', family: 'pink', rgb: [255, 0, 255] },
  { name: 'salmon color', family: 'pink', rgb: [250, 128, 114] },
  { name: 'orange color', family: 'orange', rgb: [255, 150, 0] },
  { name: 'reddish orange color', family: 'orange', rgb: [255, 90, 0] },
  { name: 'peach color', family: 'orange', rgb: [255, 203, 164] },
  { name: 'yellow color', family: 'yellow', rgb: [255, 230, 0] },
  { name: 'light yellow color', family: 'yellow', rgb: [255, 250, 150] },
  { name: 'mustard color', family: 'yellow', rgb: [200, 160, 30] },
  { name: 'green color', family: 'green', rgb: [0, 128, 0] },
  { name: 'dark green color', family: 'green', rgb: [0, 80, 30] },
  { name: 'light green color', family: 'green', rgb: [144, 238, 144] },
  { name: 'bright green color', family: 'green', rgb: [0, 255, 0] },
  { name: 'yellow green color', family: 'green', rgb: [154, 205, 50] },
  { name: 'olive green color', family: 'green', rgb: [107, 142, 35] },
  { name: 'sea green color', family: 'green', rgb: [46, 139, 87] },
  { name: 'blue color', family: 'blue', rgb: [0, 0, 255] },
  { name: 'navy blue color', family: 'blue', rgb: [0, 0, 128] },
  { name: 'royal blue color', family: 'blue', rgb: [65, 105, 225] },
  { name: 'azure color', family: 'blue', rgb: [0, 127, 255] },
  { name: 'light blue color', family: 'blue', rgb: [173, 216, 230] },
  { name: 'steel blue color', family: 'blue', rgb: [70, 110, 150] },
  { name: 'teal color', family: 'blue', rgb: [0, 128, 128] },
  { name: 'turquoise color', family: 'blue', rgb: [64, 224, 208] },
  { name: 'purple color', family: 'purple', rgb: [128, 0, 128] },
  { name: 'indigo color', family: 'purple', rgb: [75, 0, 130] },
  { name: 'violet color', family: 'purple', rgb: [238, 130, 238] },
  { name: 'lavender color', family: 'purple', rgb: [190, 160, 220] },
  { name: 'brown color', family: 'brown', rgb: [139, 69, 19] },
  { name: 'dark brown color', family: 'brown', rgb: [80, 50, 35] },
  { name: 'light brown color', family: 'brown', rgb: [181, 130, 80] },
  { name: 'reddish brown color', family: 'brown', rgb: [165, 42, 42] },
  { name: 'beige color', family: 'brown', rgb: [225, 200, 160] },
];

/** Colours naming less than this share of the pixels are not reported. */
const MIN_PIXEL_FRACTION = 0.05;

/** `/colors/<family>/<name>` for shades, `/colors/<name>` for the family colour itself. */
function typeHierarchy({ name, family }: NamedColor): string {
  return name === `${family} color` ? `/colors/${name}` : `/colors/${family}/${name}`;
}

/** An sRGB channel value (0–255) as linear light (0–1). */
function linearLight(v: number): number {
  const c = v / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
}

/** sRGB (0–255) to CIELAB under D65. */
export function srgbToLab(r: number, g: number, b: number): [number, number, number] {
  return linearToLab(linearLight(r), linearLight(g), linearLight(b));
}

function linearToLab(rl: number, gl: number, bl: number): [number, number, number] {
  const x = (0.4124 * rl + 0.3576 * gl + 0.1805 * bl) / 0.95047;
  const y = 0.2126 * rl + 0.7152 * gl + 0.0722 * bl;
  const z = (0.0193 * rl + 0.1192 * gl + 0.9505 * bl) / 1.08883;
  const f = (t: number) => (t > 216 / 24389 ? Math.cbrt(t) : ((24389 / 27) * t + 16) / 116);
  const fy = f(y);
  return [116 * fy - 16, 500 * (f(x) - fy), 200 * (fy - f(z))];
}

const PALETTE_LAB = Float64Array.from(PALETTE.flatMap(({ rgb }) => srgbToLab(...rgb)));

function nearestPaletteIndex([l, a, bb]: [number, number, number]): number {
  let best = 0;
  let bestDistance = Infinity;
  for (let i = 0; i < PALETTE.length; i++) {
    const dl = l - PALETTE_LAB[3 * i];
    const da = a - PALETTE_LAB[3 * i + 1];
    const db = bb - PALETTE_LAB[3 * i + 2];
    const distance = dl * dl + da * da + db * db;
    if (distance < bestDistance) {
      bestDistance = distance;
      best = i;
    }
  }
  return best;
}

/** Bits kept per channel when naming a pixel: 64 levels, cells of 4, at most 2.8 ΔE from the cell's centre. */
const CELL_BITS = 6;
const DROPPED_BITS = 8 - CELL_BITS;
const UNKNOWN = 0xff;

/**
 * Palette index of each quantised sRGB cell, filled in the first time a pixel
 * falls in the cell: an image touches a few thousand of the 262,144 cells, so
 * this costs far less than building the whole table (≈0.15 s).
 */
const nearestByCell = new Uint8Array(1 << (3 * CELL_BITS)).fill(UNKNOWN);
const CELL_CENTRE_LIGHT = Array.from({ length: 1 << CELL_BITS }, (_, q) =>
  linearLight((q << DROPPED_BITS) + ((1 << DROPPED_BITS) - 1) / 2),
);

function cellOf(r: number, g: number, b: number): number {
  return ((r >> DROPPED_BITS) << (2 * CELL_BITS)) | ((g >> DROPPED_BITS) << CELL_BITS) | (b >> DROPPED_BITS);
}

function nearestForCell(cell: number): number {
  let index = nearestByCell[cell];
  if (index === UNKNOWN) {
    const mask = (1 << CELL_BITS) - 1;
    const lab = linearToLab(
      CELL_CENTRE_LIGHT[cell >> (2 * CELL_BITS)],
      CELL_CENTRE_LIGHT[(cell >> CELL_BITS) & mask],
      CELL_CENTRE_LIGHT[cell & mask],
    );
    index = nearestPaletteIndex(lab);
    nearestByCell[cell] = index;
  }
  return index;
}

/** The palette name of one sRGB colour (for tests and diagnostics). */
export function colorName(r: number, g: number, b: number): string {
  return PALETTE[nearestForCell(cellOf(r, g, b))].name;
}

/**
 * The image's dominant colours, best first. Score = √(share of pixels nearest
 * that colour), rounded to 3 decimals: a solid colour scores 1, each half of a
 * two-colour image ≈0.71, a colour over a quarter of the image 0.5 (the usual
 * threshold). Colours under 5% of the pixels are left out.
 */
export function colorClasses(image: DecodedImage): BuiltinClass[] {
  const { rgb } = image;
  const counts = new Uint32Array(PALETTE.length);
  for (let i = 0; i + 2 < rgb.length; i += 3) {
    counts[nearestForCell(cellOf(rgb[i], rgb[i + 1], rgb[i + 2]))]++;
  }
  const pixels = Math.floor(rgb.length / 3);
  if (pixels === 0) return [];
  const classes: { index: number; fraction: number }[] = [];
  counts.forEach((count, index) => {
    const fraction = count / pixels;
    if (fraction >= MIN_PIXEL_FRACTION) classes.push({ index, fraction });
  });
  classes.sort((a, b) => b.fraction - a.fraction || a.index - b.index);
  return classes.map(({ index, fraction }) => ({
    class: PALETTE[index].name,
    score: Math.round(Math.sqrt(fraction) * 1000) / 1000,
    type_hierarchy: typeHierarchy(PALETTE[index]),
  }));
}
