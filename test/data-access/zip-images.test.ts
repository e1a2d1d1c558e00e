import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  isZip,
  readZipImageEntries,
  readZipImages,
  ZipInputError,
  type ZipImageEntry,
  type ZipLimits,
} from '../../src/data-access/zip/zip-images';
import { bmpImage, heicHead, solidColorPng, BLUE } from '../../fixtures/images';
import {
  corruptedDataZip,
  cp437Name,
  cp437Zip,
  deflatedEntry,
  emptyZip,
  encryptedZip,
  imagesZip,
  lyingZipBomb,
  macosZip,
  misplacedCentralDirectoryZip,
  nestedZipBomb,
  nonImageEntries,
  notAZip,
  overlappingZipBomb,
  rawZip,
  sampleImages,
  spannedZip,
  splitPartZip,
  storedEntry,
  truncatedZip,
  wrongEntryOffsetZip,
  ZIP_SLIP_NAMES,
  zipBomb,
  zipOf,
  zipSlipZip,
  zip64Zip,
} from '../../fixtures/zips';

const MiB = 1024 * 1024;
const FIELD = 'beagle_positive_examples';
const LIMITS: ZipLimits = {
  minImages: 10,
  maxImages: 50,
  maxZipBytes: 100 * MiB,
  maxEntryBytes: 10 * MiB,
  maxTotalUncompressedBytes: 200 * MiB,
};
const CLASSIFY_LIMITS: ZipLimits = { ...LIMITS, minImages: 1, maxImages: 20 };

const sha256 = (bytes: Buffer) => crypto.createHash('sha256').update(bytes).digest('hex');

async function listFiles(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

let workDir: string;
let images: Buffer[];
let uploads = 0;

/** Saves the zip as multer would: a temp file whose name says nothing about its content. */
async function upload(bytes: Buffer, name = `upload-${++uploads}`): Promise<string> {
  const file = path.join(workDir, name);
  await fs.writeFile(file, bytes);
  return file;
}

async function rejection(call: Promise<unknown>): Promise<ZipInputError> {
  const error = await call.then(
    () => new Error('expected the zip to be refused, but it was accepted'),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ZipInputError);
  return error as ZipInputError;
}

/** Reads a training zip as the upload does: its entry count and picture entries. */
async function readTraining(
  zip: string | Buffer,
  limits = LIMITS,
): Promise<{ entries: number; images: ZipImageEntry[] }> {
  const read: ZipImageEntry[] = [];
  const { entries } = await readZipImageEntries(zip, FIELD, limits, (image) => {
    read.push(image);
  });
  return { entries, images: read };
}

/** Expects the training zip to be refused with a message naming the field and each fragment. */
async function expectRefused(zip: Buffer, fragments: Array<string | RegExp>, limits = LIMITS): Promise<ZipInputError> {
  const error = await rejection(readTraining(await upload(zip), limits));
  expect(error.fieldName).toBe(FIELD);
  expect(error.message).toContain(`'${FIELD}'`);
  for (const fragment of fragments) expect(error.message).toMatch(fragment);
  return error;
}

/** Runs `call`, returning how long it took and how far the process's peak and current RSS rose. */
async function measured(call: () => Promise<unknown>) {
  const peakBefore = process.resourceUsage().maxRSS * 1024;
  const rssBefore = process.memoryUsage().rss;
  let rssHigh = rssBefore;
  const sampler = setInterval(() => (rssHigh = Math.max(rssHigh, process.memoryUsage().rss)), 2);
  const started = performance.now();
  const outcome = await call().then(
    () => null,
    (e: unknown) => e,
  );
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  rssHigh = Math.max(rssHigh, process.memoryUsage().rss);
  return {
    outcome,
    seconds,
    peakRise: process.resourceUsage().maxRSS * 1024 - peakBefore,
    rssRise: rssHigh - rssBefore,
  };
}

beforeAll(async () => {
  workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'zip-images-'));
  images = await sampleImages(24);
});

afterAll(async () => {
  await fs.rm(workDir, { recursive: true, force: true });
});

describe('isZip', () => {
  it('recognises a zip by its first bytes, whatever it is called', async () => {
    expect(isZip(await imagesZip(1))).toBe(true);
    expect(isZip(emptyZip())).toBe(true);
    expect(isZip(spannedZip([{ name: 'a.jpg', data: images[0] }]))).toBe(true);
    expect(isZip(images[0])).toBe(false);
    expect(isZip(await solidColorPng(BLUE))).toBe(false);
    expect(isZip(notAZip())).toBe(false);
    expect(isZip(Buffer.from('PK'))).toBe(false);
    expect(isZip(Buffer.alloc(0))).toBe(false);
  });
});

describe('readZipImageEntries (a training zip)', () => {
  it.each(['_', 'beagle', 'beagle.zip'])(
    'hands on every image of a zip uploaded as %p, in archive order',
    async (name) => {
      const names = images.slice(0, 12).map((_, i) => `dogs/beagle-${String(i).padStart(2, '0')}.jpg`);
      const zip = zipOf(images.slice(0, 12).map((data, i) => ({ name: names[i], data })));
      const result = await readTraining(await upload(zip, name));
      expect(result.entries).toBe(12);
      expect(result.images).toEqual(images.slice(0, 12).map((data, i) => ({ entryName: names[i], bytes: data })));
    },
  );

  it('hands on an image that appears twice as two entries (the caller counts it once)', async () => {
    const duplicated = [...images.slice(0, 10), images[0], images[1]];
    const zip = rawZip(duplicated.map((data, i) => storedEntry(`${i}.jpg`, data)));
    const result = await readTraining(await upload(zip));
    expect(result.images.map((i) => sha256(i.bytes))).toEqual(duplicated.map(sha256));
  });

  it('accepts PNG as well as JPEG, stored and deflated entries alike', async () => {
    const png = await solidColorPng(BLUE);
    const zip = rawZip([
      storedEntry('blue.png', png),
      ...images.slice(0, 9).map((data, i) => (i % 2 ? storedEntry(`${i}.jpg`, data) : deflatedEntry(`${i}.jpg`, data))),
    ]);
    const { images: read } = await readTraining(await upload(zip));
    expect(read.map((i) => sha256(i.bytes))).toEqual([png, ...images.slice(0, 9)].map(sha256));
  });

  it('reads zip64 archives (sizes and offsets in zip64 fields, zip64 end record)', async () => {
    const zip = zip64Zip([
      ...images.slice(0, 10).map((data, i) => deflatedEntry(`${i}.jpg`, data)),
      storedEntry('a.txt', Buffer.from('x')),
    ]);
    const result = await readTraining(await upload(zip));
    expect(result.images.map((i) => sha256(i.bytes))).toEqual(images.slice(0, 10).map(sha256));
    expect(result.entries).toBe(11);
  });

  it('reads names written in the DOS code page (CP437, UTF-8 flag clear) as the writer meant them', async () => {
    // Windows Explorer and old WinZip write 'Brücke' as CP437 bytes (ü = 0x81) without the UTF-8 flag.
    const names = ['Brücke_0.jpg', 'Café_1.jpg', 'Straße_2.jpg', 'Bär_3.jpg'];
    const zip = cp437Zip(names.map((name, i) => ({ name, data: images[i] })));
    expect(zip.includes(cp437Name('Brücke'))).toBe(true);
    expect(zip.includes(Buffer.from('Brücke', 'utf8'))).toBe(false);
    const { images: read } = await readTraining(await upload(zip));
    expect(read.map((i) => i.entryName)).toEqual(names);
    expect((await readZipImages(zip, 'images_file', CLASSIFY_LIMITS)).map((i) => i.entryName)).toEqual(names);
  });

  it.each(['PK\x07\x08', 'PK00'] as const)(
    'reads an archive that begins with the spanning marker %p, as unzip -t does',
    async (marker) => {
      const spanned = spannedZip(
        images.slice(0, 10).map((data, i) => ({ name: `${i}.jpg`, data })),
        marker,
      );
      expect(spanned.subarray(0, 4).toString('latin1')).toBe(marker);
      const { images: read } = await readTraining(await upload(spanned));
      expect(read.map((i) => sha256(i.bytes))).toEqual(images.slice(0, 10).map(sha256));
    },
  );

  it('skips folders, __MACOSX twins, hidden files and non-images; hands on pictures in formats it cannot decode', async () => {
    const tenImages = images.slice(0, 10);
    const mac = macosZip(tenImages); // folder, 10 images, 10 AppleDouble twins, .DS_Store
    const bmp = bmpImage();
    const heic = heicHead();
    const zip = rawZip([
      storedEntry('photos/', Buffer.alloc(0)),
      ...tenImages.map((data, i) => storedEntry(`photos/${i}.jpg`, data)),
      // Hidden and __MACOSX entries are skipped by name even when they hold a real image.
      storedEntry('__MACOSX/._x.jpg', images[20]),
      storedEntry('.hidden.jpg', images[21]),
      storedEntry('photos/.git/objects/y.jpg', images[22]),
      ...nonImageEntries().map(({ name, data }) => deflatedEntry(name, data)),
      // An empty file deflated to no bytes at all, as some writers do: empty, not damaged.
      { name: 'empty.dat', method: 8, payload: Buffer.alloc(0), crc32: 0, uncompressedSize: 0 },
      storedEntry('inner.zip', await imagesZip(3)),
      storedEntry('scan.bmp', bmp),
      storedEntry('IMG_0001.HEIC', heic),
    ]);

    const fromMac = await readTraining(await upload(mac));
    expect(fromMac.images.map((i) => i.entryName)).toEqual(tenImages.map((_, i) => `photos/image${i}.jpg`));
    expect(fromMac.entries).toBe(22);

    const mixed = await readTraining(await upload(zip));
    expect(mixed.images.map((i) => i.entryName)).toEqual([
      ...tenImages.map((_, i) => `photos/${i}.jpg`),
      'scan.bmp',
      'IMG_0001.HEIC',
    ]);
    expect(mixed.entries).toBe(1 + 10 + 3 + nonImageEntries().length + 2 + 2);
  });

  it('uses entry names only as labels: zip-slip names are read, never written anywhere', async () => {
    const outside = await listFiles(workDir);
    const slip = zipSlipZip(images.slice(0, 4));
    const zip = rawZip([
      ...ZIP_SLIP_NAMES.map((name, i) => storedEntry(name, images[i])),
      ...images.slice(4, 10).map((data, i) => storedEntry(`ok${i}.jpg`, data)),
    ]);
    const file = await upload(zip);
    const { images: read } = await readTraining(file);
    // yauzl shows a backslash as the separator it is meant to be.
    expect(read.slice(0, 4).map((i) => i.entryName)).toEqual(ZIP_SLIP_NAMES.map((n) => n.replace(/\\/g, '/')));
    expect(read.map((i) => sha256(i.bytes))).toEqual(images.slice(0, 10).map(sha256));
    const added = (await listFiles(workDir)).filter((f) => !outside.includes(f));
    expect(added).toEqual([path.basename(file)]);
    expect(await fs.stat(path.join(workDir, '..', 'evil.jpg')).catch(() => null)).toBeNull();
    expect((await readZipImages(slip, 'images_file', CLASSIFY_LIMITS)).map((i) => i.entryName)).toEqual(
      ZIP_SLIP_NAMES.map((n) => n.replace(/\\/g, '/')),
    );
  });

  it('says the file is empty when it has 0 bytes', async () => {
    const error = await expectRefused(Buffer.alloc(0), []);
    expect(error.message).toBe(
      `The file for 'beagle_positive_examples' is empty (0 bytes): the file is empty, so there is nothing to read. Attach the zip file itself (with curl: --form "beagle_positive_examples=@images.zip").`,
    );
  });

  it('reads an empty zip and a zip of only non-images as holding no images', async () => {
    expect((await readTraining(await upload(emptyZip()))).images).toEqual([]);
    expect((await readTraining(await upload(zipOf(nonImageEntries())))).images).toEqual([]);
  });

  it('says a zip is required when given a plain image or another file', async () => {
    await expectRefused(images[0], ['is a single JPEG image; a zip file is required']);
    await expectRefused(await solidColorPng(BLUE), ['is a single PNG image; a zip file is required']);
    await expectRefused(notAZip(), ['is not a zip file; a zip file is required']);
  });

  it('refuses a zip file over the size limit, naming the limit', async () => {
    await expectRefused(await imagesZip(12), [/is [\d.]+ KB; the limit is 10 KB per zip/], {
      ...LIMITS,
      maxZipBytes: 10 * 1024,
    });
  });

  it('refuses truncated and damaged zips with a clear reason', async () => {
    const good = await imagesZip(12);
    await expectRefused(truncatedZip(good), ['cannot be read', /no end of central directory record.*truncated/]);
    await expectRefused(truncatedZip(good, 0.999), ['cannot be read', 'truncated']);
    await expectRefused(misplacedCentralDirectoryZip(good), ['cannot be read', 'central directory is damaged']);
    await expectRefused(splitPartZip(good), ['cannot be read', 'split (multi-part) zip']);
    await expectRefused(wrongEntryOffsetZip(good), ['cannot be read', "no entry header for 'img000.jpg'"]);
    await expectRefused(corruptedDataZip({ name: 'x.jpg', data: images[0] }), ["checksum (CRC-32) of entry 'x.jpg'"]);
    const deflated = deflatedEntry('d.jpg', images[0]);
    const damagedDeflate = Buffer.from(deflated.payload);
    damagedDeflate.fill(0xff, 0, 64);
    await expectRefused(rawZip([{ ...deflated, payload: damagedDeflate }]), [
      "compressed data of entry 'd.jpg' is damaged",
    ]);
    const shortEntry = { ...storedEntry('short.jpg', images[0]), uncompressedSize: images[0].length + 100 };
    await expectRefused(rawZip([shortEntry]), ['an uncompressed entry records two different sizes for itself']);
    const shortDeflated = { ...deflatedEntry('short.jpg', images[0]), uncompressedSize: images[0].length + 100 };
    await expectRefused(rawZip([shortDeflated]), [
      /entry 'short.jpg' holds [\d.]+ KB, not the [\d.]+ KB its header declares/,
    ]);
  });

  it('refuses encrypted zips', async () => {
    const zip = encryptedZip(images.slice(0, 10).map((data, i) => ({ name: `${i}.jpg`, data })));
    await expectRefused(zip, ["encrypted entry ('0.jpg')", 'encrypted (password-protected) zips are not supported']);
  });

  it('refuses compression methods other than stored and deflate', async () => {
    const bzip2 = { ...storedEntry('a.jpg', images[0]), method: 12 };
    await expectRefused(rawZip([bzip2]), ["entry 'a.jpg' with method 12, which is not supported"]);
  });

  it('refuses an entry whose declared size is over the per-file limit, without inflating it', async () => {
    const zip = zipOf(images.slice(0, 12).map((data, i) => ({ name: `${i}.jpg`, data })));
    await expectRefused(zip, [/entry '\d+\.jpg' of [\d.]+ KB uncompressed; the limit is 1 KB per file/], {
      ...LIMITS,
      maxEntryBytes: 1024,
    });
  });

  it('refuses a zip with more entries than any image set needs before reading its directory', async () => {
    const many = rawZip(Array.from({ length: 5000 }, (_, i) => storedEntry(`${i}.txt`, Buffer.alloc(0))));
    await expectRefused(many, ['has 5000 entries; at most 1200 are read'], { ...LIMITS, maxImages: 50 });
  });

  describe('zip bombs', () => {
    // Refusing a bomb must cost neither time nor memory: an unbounded inflate of these would
    // allocate gigabytes, so a rise of hundreds of MB means a guard is missing.
    const MAX_RSS_RISE = 150 * MiB;

    it('refuses entries that declare a huge size, fast and in bounded memory', async () => {
      const bomb = zipBomb(4, 1024); // 4 entries of 1 GiB each, about 4 MB on disk
      const { outcome, seconds, peakRise, rssRise } = await measured(() =>
        expectRefused(bomb, ["entry 'bomb0.jpg' of 1024 MB uncompressed"]),
      );
      expect(outcome).toBeNull();
      expect(seconds).toBeLessThan(5);
      expect(peakRise).toBeLessThan(MAX_RSS_RISE);
      expect(rssRise).toBeLessThan(MAX_RSS_RISE);
    });

    it('stops inflating at the declared size when the header lies', async () => {
      const bomb = lyingZipBomb(1000, 1024); // declares 1000 bytes, expands to 1 GiB
      expect(bomb.length).toBeLessThan(2 * MiB);
      const { outcome, seconds, peakRise, rssRise } = await measured(() =>
        expectRefused(bomb, ["entry 'photo.jpg' expands beyond the 1000 bytes its header declares"]),
      );
      expect(outcome).toBeNull();
      expect(seconds).toBeLessThan(5);
      expect(peakRise).toBeLessThan(MAX_RSS_RISE);
      expect(rssRise).toBeLessThan(MAX_RSS_RISE);
      // The same for a lie within the per-file limit: the cap is the declared size, not the limit.
      await expectRefused(lyingZipBomb(5 * MiB, 64), ['expands beyond the 5 MB its header declares']);
    });

    it('refuses many entries that together expand past the total limit', async () => {
      await expectRefused(zipBomb(30, 8), ['expands to more than 200 MB uncompressed']);
      const overlapping = overlappingZipBomb(1000, 8); // 1000 names for one 8 MiB entry: 8 GB claimed
      const { outcome, seconds, peakRise } = await measured(() =>
        expectRefused(overlapping, ['expands to more than 200 MB']),
      );
      expect(outcome).toBeNull();
      expect(seconds).toBeLessThan(5);
      expect(peakRise).toBeLessThan(MAX_RSS_RISE);
    });

    it('skips nested zips without opening them (42.zip style)', async () => {
      const nested = nestedZipBomb(); // 4 levels of 4 zips over a 256 MiB leaf: 64 GiB if followed
      const zip = zipOf([
        ...images.slice(0, 10).map((data, i) => ({ name: `${i}.jpg`, data })),
        { name: '42.zip', data: nested },
      ]);
      const { outcome, seconds, peakRise } = await measured(async () => {
        const result = await readTraining(await upload(zip));
        expect(result.images).toHaveLength(10);
        expect(result.entries).toBe(11);
      });
      expect(outcome).toBeNull();
      expect(seconds).toBeLessThan(5);
      expect(peakRise).toBeLessThan(MAX_RSS_RISE);
      expect((await readTraining(await upload(nested))).images).toEqual([]);
    });
  });
});

describe('readZipImages (a classify zip)', () => {
  it('returns the images of a zip given as a buffer or a file, in archive order', async () => {
    const zip = rawZip([
      ...images.slice(0, 5).map((data, i) => deflatedEntry(`test/${i}.jpg`, data)),
      deflatedEntry('notes.txt', Buffer.from('x')),
    ]);
    const expected = images.slice(0, 5).map((data, i) => ({ entryName: `test/${i}.jpg`, bytes: data }));
    expect(await readZipImages(zip, 'images_file', CLASSIFY_LIMITS)).toEqual(expected);
    expect(await readZipImages(await upload(zip), 'images_file', CLASSIFY_LIMITS)).toEqual(expected);
  });

  it('applies the same checks', async () => {
    const refuse = async (zip: Buffer, fragment: string | RegExp) => {
      const error = await rejection(readZipImages(zip, 'images_file', CLASSIFY_LIMITS));
      expect(error.fieldName).toBe('images_file');
      expect(error.message).toContain("'images_file'");
      expect(error.message).toMatch(fragment);
    };
    await refuse(await imagesZip(21), 'more than 20 images');
    await refuse(zipOf(nonImageEntries()), 'contains 0 images; at least 1 is required');
    await refuse(images[0], 'is a single JPEG image; a zip file is required');
    await refuse(lyingZipBomb(1000, 1024), 'expands beyond');
    await refuse(zipBomb(2, 1024), 'of 1024 MB uncompressed');
    await refuse(encryptedZip([{ name: 'a.jpg', data: images[0] }]), 'encrypted');
    await refuse(truncatedZip(await imagesZip(3)), 'cannot be read');
  });
});
