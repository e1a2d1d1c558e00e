import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import {
  BLUE,
  classImages,
  cmykJpeg,
  exifRotatedJpeg,
  hugePngHeader,
  RED,
  sixteenBitPng,
  solidColorPng,
} from '../../fixtures/images';
import {
  corruptedDataZip,
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
  splitPartZip,
  storedEntry,
  truncatedZip,
  wrongEntryOffsetZip,
  zipBomb,
  zipOf,
} from '../../fixtures/zips';
import { dataLayout } from '../../src/data-access/files/data-layout';
import { classZip, trainingForm } from '../support/example-zips';
import {
  ALICE_KEY,
  BOB_KEY,
  bootService,
  VERSION,
  waitFor,
  waitForStatus,
  type TestService,
} from '../support/service-harness';
import { tmpEntries } from '../support/upload-files';
import {
  chunkedUpload,
  foldersUnder,
  manyClassesForm,
  pathsNamedWith,
  tinyPngs,
  zipSlipImagesZip,
  zipSlipNames,
} from './hostile-fixtures';

/**
 * "Nothing lost, nothing let in": every hostile input a public upload endpoint meets, each with
 * the exact status and message a user gets, against one service with small limits. A classifier
 * trained before the corpus must classify exactly as before it, nothing may land outside the data
 * dir, no temp upload may stay, and the database must stay sound.
 */

const LIMITS = { MAX_ZIP_MB: '2', MAX_REQUEST_MB: '4', MAX_CLASSIFY_IMAGE_MB: '1' };
// Derived by the service: a training entry may be 5× a classify image, a training zip may expand to 4× its limit.
const TRAINING_ENTRY_LIMIT = '5 MB';
const TRAINING_EXPANSION_LIMIT = '8 MB';
/** A thousand classes in one call must be accepted well under this (a shared 2-core machine). */
const THOUSAND_CLASSES_BUDGET_MS = 20_000;

interface Answer {
  status: number;
  body: any;
}

interface HostileCase {
  title: string;
  send: () => Promise<Answer>;
  status: number;
  /** The `error` of the Watson error body `{code, error}`: the exact text, or a pattern pinning its key words. */
  error?: string | RegExp;
  /** Further checks of the answer. A classifier a case creates is deleted afterwards unless `keep` is set. */
  verify?: (answer: Answer) => void | Promise<void>;
  keep?: boolean;
}

describe('hostile inputs: nothing lost, nothing let in', () => {
  const token = `hostile${crypto.randomBytes(5).toString('hex')}`;
  let t: TestService;
  const fx = {} as {
    circles: Buffer;
    squares: Buffer;
    negatives: Buffer;
    probes: Buffer[];
    baselineId: string;
    baselineScores: Answer[];
    baselineHashes: string[];
    tenImages: Buffer[];
    slipZip: Buffer;
    hugePng: Buffer;
    hugePngClassifierId: string;
    tinyImages: Buffer[];
  };

  const create = (zips: Record<string, Buffer>, fields: Record<string, string> = { name: 'hostile' }) =>
    t.call('POST', `/v3/classifiers?${VERSION}`, { body: trainingForm(zips, fields) });
  /** A create with `zip` as the class `a` and the baseline's negatives as the second example set. */
  const createWith = (zip: Buffer) => create({ a_positive_examples: zip, negative_examples: fx.negatives });
  const createWithClass = (className: string) =>
    create({ [`${className}_positive_examples`]: fx.circles, negative_examples: fx.negatives });
  const classify = (bytes: Buffer, fileName: string, fields: Record<string, string> = {}, key = ALICE_KEY) => {
    const form = new FormData();
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    form.append('images_file', new Blob([new Uint8Array(bytes)]), fileName);
    return t.call('POST', `/v3/classify?${VERSION}`, { body: form, key });
  };
  const examplesOf = async (id: string, className: string | null) =>
    (await t.service.ctx.classifiers.trainingSnapshot(id))!.examples.filter((e) => e.className === className);
  const zipError = (field: string, problem: string) => `The zip file for '${field}' ${problem}`;
  const unreadable = (field: string, reason: string) =>
    zipError(field, `cannot be read: ${reason}. Create the zip again and re-upload it.`);
  /** `counts`: the sentence giving the zip's entries, images, decodable and distinct images. */
  const tooFewImages = (field: string, count: number, counts: string) =>
    zipError(
      field,
      `contains ${count} usable ${count === 1 ? 'image' : 'images'}; at least 10 are required. ${counts} Add more distinct JPEG or PNG images (hidden files, __MACOSX entries and non-images are skipped).`,
    );
  const baselineClassify = () =>
    Promise.all(
      fx.probes.map((probe, i) =>
        classify(probe, `probe${i}.jpg`, { classifier_ids: fx.baselineId, threshold: '0.0' }),
      ),
    );

  beforeAll(async () => {
    t = await bootService(LIMITS);
    [fx.circles, fx.squares, fx.negatives] = await Promise.all([
      classZip('red-circles', 10, 1),
      classZip('blue-squares', 10, 2),
      classZip('noise', 10, 3),
    ]);
    fx.probes = [
      (await classImages('red-circles', 1, 99))[0],
      (await classImages('blue-squares', 1, 98))[0],
      (await classImages('noise', 1, 97))[0],
    ];
    // Labelled with a customer id, so a DELETE /v3/user_data that matched by pattern would take it.
    const baseline = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: fx.circles,
          squares_positive_examples: fx.squares,
          negative_examples: fx.negatives,
        },
        { name: 'baseline' },
      ),
      headers: { 'X-Watson-Metadata': 'customer_id=acme' },
    });
    expect(baseline.status).toBe(200);
    fx.baselineId = baseline.body.classifier_id;
    fx.baselineHashes = (await t.service.ctx.classifiers.trainingSnapshot(fx.baselineId))!.examples.map(
      (e) => e.imageHash,
    );
    expect((await waitForStatus(t, fx.baselineId, ['ready', 'failed'])).status).toBe('ready');
    fx.baselineScores = await baselineClassify();
    for (const answer of fx.baselineScores) expect(answer.status).toBe(200);
    // No training during the corpus: the classifiers it creates are deleted before they could train.
    await t.service.worker!.stop();

    fx.tenImages = await sampleImages(12, 5);
    fx.slipZip = zipSlipImagesZip(token, fx.tenImages);
    fx.hugePng = await hugePngHeader();
    fx.tinyImages = await tinyPngs(10);
  });
  afterAll(async () => {
    await t?.close();
  });

  const CASES: HostileCase[] = [
    // ---- Entry names that try to leave the extraction folder: accepted as images stored by hash ----
    {
      title: 'zip-slip names (../, absolute, ..\\, C:\\, UNC) in a training zip are images stored by hash',
      send: () => createWith(fx.slipZip),
      status: 200,
      verify: async ({ body }) => {
        expect(body.classes).toEqual([{ class: 'a' }]);
        expect(await examplesOf(body.classifier_id, 'a')).toHaveLength(zipSlipNames(token).length);
      },
    },
    {
      title: 'zip-slip names in a classify zip are labels only, <zip>/<entry name>',
      send: () => classify(fx.slipZip, 'slip.zip', { threshold: '0.0' }),
      status: 200,
      verify: ({ body }) => {
        // yauzl reads a backslash as the path separator zips are meant to use.
        expect(body.images.map((i: { image: string }) => i.image)).toEqual(
          zipSlipNames(token).map((n) => `slip.zip/${n.replace(/\\/g, '/')}`),
        );
        for (const image of body.images) expect(image.error).toBeUndefined();
      },
    },
    {
      title: 'a multipart file name with ../ is cut to its base name, never used as a path',
      send: () => classify(fx.tenImages[0], `../../${token}-upload.jpg`, { threshold: '0.0' }),
      status: 200,
      verify: ({ body }) => expect(body.images[0].image).toBe(`${token}-upload.jpg`),
    },

    // ---- Zip bombs: refused from the directory or while inflating, never expanded in full ----
    {
      title: 'a zip bomb (0.5 MB declaring and expanding to 512 MB) in a training zip',
      send: () => createWith(zipBomb(1, 512)),
      status: 400,
      error: zipError(
        'a_positive_examples',
        `contains entry 'bomb0.jpg' of 512 MB uncompressed; the limit is ${TRAINING_ENTRY_LIMIT} per file. Remove it or make it smaller.`,
      ),
    },
    {
      title: 'a zip bomb as a classify images_file',
      send: () => classify(zipBomb(1, 512), 'bomb.zip'),
      status: 400,
      error: zipError(
        'images_file',
        "contains entry 'bomb0.jpg' of 512 MB uncompressed; the limit is 1 MB per file. Remove it or make it smaller.",
      ),
    },
    {
      title: 'a lying zip bomb (declares 1,000 bytes, expands to 64 MB)',
      send: () => createWith(lyingZipBomb(1000, 64)),
      status: 400,
      error: unreadable('a_positive_examples', "entry 'photo.jpg' expands beyond the 1000 bytes its header declares"),
    },
    {
      title: 'an overlapping-entry bomb (1,000 directory records on one 1 MB entry)',
      send: () => createWith(overlappingZipBomb(1000, 1)),
      status: 400,
      error: zipError(
        'a_positive_examples',
        `expands to more than ${TRAINING_EXPANSION_LIMIT} uncompressed, the limit per zip. Use fewer or smaller images.`,
      ),
    },
    {
      title: 'a 42.zip-style nested bomb: nested zips are not images and are never opened',
      send: () => createWith(nestedZipBomb(4, 4, 256)),
      status: 400,
      error: tooFewImages(
        'a_positive_examples',
        0,
        'Of its 4 entries, 0 are images, 0 can be decoded and 0 are distinct.',
      ),
    },
    {
      title: 'ten images beside a nested bomb: the images count, the nested zip is skipped',
      send: () =>
        createWith(
          zipOf([
            ...fx.tenImages.slice(0, 10).map((data, i) => ({ name: `${i}.jpg`, data })),
            { name: 'inner.zip', data: nestedZipBomb(2, 4, 64) },
          ]),
        ),
      status: 200,
      verify: async ({ body }) => expect(await examplesOf(body.classifier_id, 'a')).toHaveLength(10),
    },

    // ---- Damaged archives: 400 naming the field, what is wrong and to re-create the zip ----
    {
      title: 'a truncated zip (its central directory cut off)',
      send: async () => createWith(truncatedZip(await imagesZip(10, 7))),
      status: 400,
      error: unreadable(
        'a_positive_examples',
        'no end of central directory record was found (the file is truncated or not a zip)',
      ),
    },
    {
      title: 'a zip whose end record points the central directory to the wrong offset',
      send: async () => createWith(misplacedCentralDirectoryZip(await imagesZip(10, 7))),
      status: 400,
      error: unreadable('a_positive_examples', 'its central directory is damaged'),
    },
    {
      title: 'a zip whose central directory points an entry at no local header',
      send: async () => createWith(wrongEntryOffsetZip(await imagesZip(10, 7))),
      status: 400,
      error: unreadable('a_positive_examples', "the central directory points to no entry header for 'img000.jpg'"),
    },
    {
      title: 'one part of a split (multi-part) zip',
      send: async () => createWith(splitPartZip(await imagesZip(10, 7))),
      status: 400,
      error: unreadable(
        'a_positive_examples',
        'it is one part of a split (multi-part) zip; only single-file zips can be read',
      ),
    },
    {
      title: 'a zip whose entry data is damaged (CRC-32 mismatch)',
      send: () => createWith(corruptedDataZip({ name: 'damaged.jpg', data: fx.tenImages[0] })),
      status: 400,
      error: unreadable('a_positive_examples', "the checksum (CRC-32) of entry 'damaged.jpg' does not match"),
    },
    {
      title: 'a text file named .zip',
      send: () => createWith(notAZip()),
      status: 400,
      error:
        "The file for 'a_positive_examples' is not a zip file; a zip file is required here. Put the images into a .zip archive and upload that.",
    },
    {
      title: 'a single PNG where a zip is required',
      send: async () => createWith(await solidColorPng(RED)),
      status: 400,
      error:
        "The file for 'a_positive_examples' is a single PNG image; a zip file is required here. Put the images into a .zip archive and upload that.",
    },
    {
      title: 'an encrypted (password-protected) zip',
      send: () =>
        createWith(encryptedZip(fx.tenImages.slice(0, 10).map((data, i) => ({ name: `secret${i}.jpg`, data })))),
      status: 400,
      error: zipError(
        'a_positive_examples',
        "contains an encrypted entry ('secret0.jpg'); encrypted (password-protected) zips are not supported. Create the zip without a password.",
      ),
    },

    // ---- What is skipped, silently and uncounted ----
    {
      title: 'a zip of only non-images (text, PDF, BMP, empty, text named .jpg)',
      send: () => createWith(zipOf(nonImageEntries())),
      status: 400,
      error: tooFewImages(
        'a_positive_examples',
        0,
        'Of its 5 entries, 0 are images, 0 can be decoded and 0 are distinct.',
      ),
    },
    {
      title: 'a macOS zip: __MACOSX/._* twins and .DS_Store skipped, ten images counted',
      send: () => createWith(macosZip(fx.tenImages.slice(0, 10))),
      status: 200,
      verify: async ({ body }) => expect(await examplesOf(body.classifier_id, 'a')).toHaveLength(10),
    },
    {
      title: 'a macOS zip of nine images: the __MACOSX twins do not make up the tenth',
      send: () => createWith(macosZip(fx.tenImages.slice(0, 9))),
      status: 400,
      error: tooFewImages(
        'a_positive_examples',
        9,
        'Of its 20 entries, 9 are images, 9 can be decoded and 9 are distinct.',
      ),
    },
    {
      title: '0-byte images beside ten real ones are skipped and not counted',
      send: () =>
        createWith(
          rawZip([
            ...fx.tenImages.slice(0, 10).map((data, i) => storedEntry(`${i}.jpg`, data)),
            ...[0, 1, 2].map((i) => storedEntry(`empty${i}.jpg`, Buffer.alloc(0))),
          ]),
        ),
      status: 200,
      verify: async ({ body }) => expect(await examplesOf(body.classifier_id, 'a')).toHaveLength(10),
    },
    {
      title: 'nine images and three 0-byte ones are nine usable images',
      send: () =>
        createWith(
          rawZip([
            ...fx.tenImages.slice(0, 9).map((data, i) => storedEntry(`${i}.jpg`, data)),
            ...[0, 1, 2].map((i) => storedEntry(`empty${i}.jpg`, Buffer.alloc(0))),
          ]),
        ),
      status: 400,
      error: tooFewImages(
        'a_positive_examples',
        9,
        'Of its 12 entries, 9 are images, 9 can be decoded and 9 are distinct.',
      ),
    },

    // ---- Awkward images ----
    {
      // Uploads are decoded (header first): the PNG is left out and reported, the ten others train (checked below).
      title:
        'a PNG declaring 60,000×60,000 pixels among ten images in a training zip is left out at upload, with its reason',
      send: () =>
        createWith(
          zipOf([
            ...fx.tenImages.slice(0, 10).map((data, i) => ({ name: `${i}.jpg`, data })),
            { name: 'huge.png', data: fx.hugePng },
          ]),
        ),
      status: 200,
      keep: true,
      verify: async ({ body }) => {
        fx.hugePngClassifierId = body.classifier_id;
        expect(await examplesOf(body.classifier_id, 'a')).toHaveLength(10);
        expect(body.upload.training_examples).toBe(20);
        expect(body.upload.files[0]).toEqual({
          file: 'a_positive_examples',
          entries: 11,
          images: 11,
          decodable: 10,
          distinct: 10,
          accepted: 10,
          not_used: [
            {
              entry: 'huge.png',
              reason:
                'the image is 60000×60000 pixels (3600.0 megapixels), more than the 50-megapixel limit; scale it down and upload it again',
            },
          ],
          not_used_count: 1,
        });
      },
    },
    {
      title: 'classifying a PNG declaring 60,000×60,000 pixels gives a per-image error',
      send: () => classify(fx.hugePng, 'huge.png'),
      status: 200,
      verify: ({ body }) =>
        expect(body.images).toEqual([
          {
            image: 'huge.png',
            error: {
              code: 400,
              description:
                'huge.png: the image is 60000×60000 pixels (3600.0 megapixels), more than the 50-megapixel limit; scale it down and upload it again',
              error_id: 'input_error',
            },
          },
        ]),
    },
    {
      title: 'a CMYK JPEG classifies like its sRGB twin (red)',
      send: async () => classify(await cmykJpeg(RED), 'cmyk.jpg'),
      status: 200,
      verify: ({ body }) =>
        expect(body.images[0].classifiers[0].classes.map((c: { class: string }) => c.class)).toContain('red color'),
    },
    {
      title: 'a 16-bit PNG classifies (blue)',
      send: async () => classify(await sixteenBitPng(BLUE), 'deep.png'),
      status: 200,
      verify: ({ body }) =>
        expect(body.images[0].classifiers[0].classes.map((c: { class: string }) => c.class)).toContain('blue color'),
    },
    {
      title: 'an EXIF-rotated photo classifies',
      send: async () => classify(await exifRotatedJpeg(RED, BLUE), 'rotated.jpg', { threshold: '0.0' }),
      status: 200,
      verify: ({ body }) => {
        expect(body.images[0].error).toBeUndefined();
        expect(body.images[0].classifiers[0].classes.length).toBeGreaterThan(0);
      },
    },

    // ---- Class names ----
    {
      title: 'an empty class name (_positive_examples)',
      send: () => createWithClass(''),
      status: 400,
      error:
        "The field '_positive_examples' has an empty class name. Name the field '<class>_positive_examples', for example 'beagle_positive_examples'.",
    },
    {
      title: 'a class name of 1,000 characters',
      send: () => createWithClass('x'.repeat(1000)),
      status: 400,
      error:
        /^The class name in the field 'x{1000}_positive_examples' is 1000 characters long; at most 256 are allowed\.$/,
    },
    {
      title: 'a unicode class name is kept as sent',
      send: () => createWithClass('犬 🐕 Ünïcødé'),
      status: 200,
      verify: ({ body }) => expect(body.classes).toEqual([{ class: '犬 🐕 Ünïcødé' }]),
    },
    {
      title: "a class name with '/' is refused, naming the character",
      send: () => createWithClass('cats/dogs'),
      status: 400,
      error:
        "The class name 'cats/dogs' contains the character '/', which is not allowed. Class names cannot contain any of: $ * - { } \\ | / ' \" ` [ ]. Rename the field 'cats/dogs_positive_examples'.",
    },
    {
      title: "a class name '..' is only a name (class names never become paths)",
      send: () => createWithClass('..'),
      status: 200,
      verify: ({ body }) => expect(body.classes).toEqual([{ class: '..' }]),
    },
    {
      title: 'a class name with spaces is kept as sent',
      send: () => createWithClass(' golden retriever '),
      status: 200,
      verify: ({ body }) => expect(body.classes).toEqual([{ class: ' golden retriever ' }]),
    },
    {
      title: "SQL in a class name ('; DROP TABLE classifiers;--) is refused, naming its first forbidden character",
      send: () => createWithClass("'; DROP TABLE classifiers;--"),
      status: 400,
      error:
        /^The class name ''; DROP TABLE classifiers;--' contains the character ''', which is not allowed\. .* Rename the field ''; DROP TABLE classifiers;--_positive_examples'\.$/,
    },
    {
      title: 'SQL without forbidden characters is stored as plain text and the tables survive',
      send: () => createWithClass('Robert; DROP TABLE classifiers;'),
      status: 200,
      verify: async ({ body }) => {
        expect(body.classes).toEqual([{ class: 'Robert; DROP TABLE classifiers;' }]);
        expect((await t.call('GET', `/v3/classifiers/${fx.baselineId}?${VERSION}`)).status).toBe(200);
      },
    },
    {
      title: 'HTML in a class name is returned verbatim in JSON, never as markup',
      send: () => createWithClass('<img src=x onerror=alert(1)>'),
      status: 200,
      verify: ({ body }) => expect(body.classes).toEqual([{ class: '<img src=x onerror=alert(1)>' }]),
    },
    {
      title: "a <script>…</script> class name is refused for its '/'",
      send: () => createWithClass('<script>alert(1)</script>'),
      status: 400,
      error: /^The class name '<script>alert\(1\)<\/script>' contains the character '\/', which is not allowed\./,
    },

    {
      title: "a class name '__proto__' is only a name",
      send: () => createWithClass('__proto__'),
      status: 200,
      verify: ({ body }) => expect(body.classes).toEqual([{ class: '__proto__' }]),
    },

    // ---- Classifier names, duplicate and odd form fields ----
    {
      title: 'a missing name',
      send: () => create({ a_positive_examples: fx.circles, negative_examples: fx.negatives }, {}),
      status: 400,
      error: "Missing required parameter 'name'. Send the classifier's name as the form field 'name'.",
    },
    {
      title: 'a name of only spaces is a missing name',
      send: () => create({ a_positive_examples: fx.circles, negative_examples: fx.negatives }, { name: '   ' }),
      status: 400,
      error: "Missing required parameter 'name'. Send the classifier's name as the form field 'name'.",
    },
    {
      title: 'a name of 1,025 characters',
      send: () =>
        create({ a_positive_examples: fx.circles, negative_examples: fx.negatives }, { name: 'n'.repeat(1025) }),
      status: 400,
      error: 'The classifier name is 1025 characters long; at most 1024 are allowed.',
    },
    {
      title: 'a name with HTML and a path keeps its text; the id keeps only [A-Za-z0-9_-]',
      send: () =>
        create(
          { a_positive_examples: fx.circles, negative_examples: fx.negatives },
          { name: '<b>../../etc/passwd</b>' },
        ),
      status: 200,
      verify: ({ body }) => {
        expect(body.name).toBe('<b>../../etc/passwd</b>');
        expect(body.classifier_id).toMatch(/^betcpasswdb_\d+$/);
      },
    },
    {
      title: 'the name field sent twice',
      send: () => {
        const form = trainingForm(
          { a_positive_examples: fx.circles, negative_examples: fx.negatives },
          { name: 'first' },
        );
        form.append('name', 'second');
        return t.call('POST', `/v3/classifiers?${VERSION}`, { body: form });
      },
      status: 400,
      error: "The field 'name' arrived as 2 values. Send the classifier's name once, as plain text.",
    },
    {
      title: 'the same class twice in one call',
      send: () => {
        const form = trainingForm({ a_positive_examples: fx.circles, negative_examples: fx.negatives });
        form.append('name', 'twice');
        form.append('a_positive_examples', new Blob([new Uint8Array(fx.squares)]), 'again.zip');
        return t.call('POST', `/v3/classifiers?${VERSION}`, { body: form });
      },
      status: 400,
      error:
        "The field 'a_positive_examples' was sent more than once. Put all images of a class into one zip per request.",
    },
    {
      title: 'negative_examples twice in one call',
      send: () => {
        const form = trainingForm(
          { a_positive_examples: fx.circles, negative_examples: fx.negatives },
          { name: 'twice' },
        );
        form.append('negative_examples', new Blob([new Uint8Array(fx.negatives)]), 'again.zip');
        return t.call('POST', `/v3/classifiers?${VERSION}`, { body: form });
      },
      status: 400,
      error: "More than one 'negative_examples' file was sent. Send at most one zip of negative examples per request.",
    },
    {
      title: 'a positive examples field sent as text instead of a file',
      send: () => create({ negative_examples: fx.negatives }, { name: 'text', a_positive_examples: 'images.zip' }),
      status: 400,
      error:
        'The field \'a_positive_examples\' arrived as text, not as a file. Send it as a file part with a file name (with curl: -F "a_positive_examples=@<file>", note the @).',
    },
    {
      title: 'a text field over the 1 MB a text field may hold',
      send: () =>
        create(
          { a_positive_examples: fx.circles, negative_examples: fx.negatives },
          { name: 'n'.repeat(1.5 * 1024 * 1024) },
        ),
      status: 400,
      error:
        "The text field 'name' is longer than 1 MB, the limit for a text field. Send a shorter value; images and zips go in file fields.",
    },
    {
      title: 'more than 100 text fields',
      send: () => {
        const fields = Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`field${i}`, 'x']));
        return create(
          { a_positive_examples: fx.circles, negative_examples: fx.negatives },
          { name: 'fields', ...fields },
        );
      },
      status: 400,
      error: 'The form has more than 100 text fields, the limit per request. Send only the fields the API reads.',
    },
    {
      // Accepted: Watson documents no class limit, and 1,000 zips of 10 images fit the 256 MB call limit.
      title: '1,000 classes in one classifier are accepted quickly',
      send: async () => {
        const started = Date.now();
        const answer = await t.call('POST', `/v3/classifiers?${VERSION}`, {
          body: manyClassesForm(1000, fx.tinyImages, 'thousand'),
        });
        expect(Date.now() - started).toBeLessThan(THOUSAND_CLASSES_BUDGET_MS);
        return answer;
      },
      status: 200,
      verify: async ({ body }) => {
        expect(body.classes).toHaveLength(1000);
        expect(body.classes[999]).toEqual({ class: 'class0999' });
        expect((await t.service.ctx.classifiers.trainingSnapshot(body.classifier_id))!.examples).toHaveLength(10_000);
      },
    },

    // ---- Size limits (MAX_ZIP_MB=2, MAX_REQUEST_MB=4, MAX_CLASSIFY_IMAGE_MB=1) ----
    {
      title: 'a training zip over MAX_ZIP_MB',
      send: () => createWith(zipOf([{ name: 'noise.bin', data: crypto.randomBytes(2.5 * 1024 * 1024) }])),
      status: 400,
      error:
        "The file in the field 'a_positive_examples' is larger than 2 MB, the limit for one file. Split it into smaller zips.",
    },
    {
      title: 'a request over MAX_REQUEST_MB with a Content-Length',
      send: () => {
        const part = crypto.randomBytes(1.5 * 1024 * 1024);
        return create({ a_positive_examples: part, b_positive_examples: part, c_positive_examples: part });
      },
      status: 413,
      error:
        /^The request is 4\.\d MB; at most 4 MB are accepted in one call\. Split the examples over several update calls\.$/,
    },
    {
      title: 'a chunked request (no Content-Length) over MAX_REQUEST_MB',
      send: () => {
        const part = 1.5 * 1024 * 1024; // each under MAX_ZIP_MB, together over MAX_REQUEST_MB
        return chunkedUpload(t.url, `/v3/classifiers?${VERSION}`, ALICE_KEY, {
          a_positive_examples: part,
          b_positive_examples: part,
          c_positive_examples: part,
        });
      },
      status: 413,
      error:
        'The request is over 4 MB; at most 4 MB are accepted in one call. Split the examples over several update calls.',
    },
    {
      title: 'a classify image over MAX_CLASSIFY_IMAGE_MB',
      send: () => classify(crypto.randomBytes(1.5 * 1024 * 1024), 'big.jpg'),
      status: 400,
      error: "The image 'big.jpg' is 1.5 MB; at most 1 MB are accepted per image. Send a smaller image.",
    },
    {
      title: 'a classify zip of more than 20 images',
      send: async () =>
        classify(zipOf((await tinyPngs(21)).map((data, i) => ({ name: `${i}.png`, data }))), 'many.zip'),
      status: 400,
      error: zipError(
        'images_file',
        'contains more than 20 images; at most 20 are allowed per zip. Split the images over several requests.',
      ),
    },

    // ---- Version, keys and owners ----
    {
      title: 'a create without version',
      send: () =>
        t.call('POST', '/v3/classifiers', {
          body: trainingForm({ a_positive_examples: fx.circles, negative_examples: fx.negatives }, { name: 'v' }),
        }),
      status: 400,
      error: "Missing 'version' query parameter. Add ?version=2018-03-19 to the URL.",
    },
    {
      title: 'a classify with a malformed version',
      send: () => {
        const form = new FormData();
        form.append('images_file', new Blob([new Uint8Array(fx.tenImages[0])]), 'x.jpg');
        return t.call('POST', '/v3/classify?version=2018-13-45', { body: form });
      },
      status: 400,
      error:
        "The 'version' query parameter '2018-13-45' is not a date in the form YYYY-MM-DD. Use, for example, version=2018-03-19.",
    },
    {
      title: 'a bad key',
      send: () => t.call('GET', `/v3/classifiers/${fx.baselineId}?${VERSION}`, { key: 'not-a-real-key-000' }),
      status: 401,
      error: 'The API key is not valid. Check the key, or ask the operator for one.',
    },
    {
      title: 'no key at all',
      send: () => t.call('GET', `/v3/classifiers?${VERSION}`, { key: null }),
      status: 401,
      error:
        "Unauthorized: send the API key as HTTP Basic auth with user 'apikey' (curl -u \"apikey:{key}\") or as 'Authorization: Bearer {key}'.",
    },
    {
      title: "another owner's key reading the classifier: 404 as for an unknown id",
      send: () => t.call('GET', `/v3/classifiers/${fx.baselineId}?${VERSION}`, { key: BOB_KEY }),
      status: 404,
      error:
        /^Cannot find classifier 'baseline_\d+'\. Check the classifier_id \(GET \/v3\/classifiers lists yours\)\.$/,
    },
    {
      title: "another owner's key retraining the classifier",
      send: () =>
        t.call('POST', `/v3/classifiers/${fx.baselineId}?${VERSION}`, {
          body: trainingForm({ evil_positive_examples: fx.circles }),
          key: BOB_KEY,
        }),
      status: 404,
      error: /^Cannot find classifier 'baseline_\d+'\./,
    },
    {
      title: "another owner's key deleting the classifier",
      send: () => t.call('DELETE', `/v3/classifiers/${fx.baselineId}?${VERSION}`, { key: BOB_KEY }),
      status: 404,
      error: /^Cannot find classifier 'baseline_\d+'\./,
    },
    {
      title: "another owner's key classifying with the classifier: 400 shaped like an answer",
      send: () => classify(fx.probes[0], 'p.jpg', { classifier_ids: fx.baselineId }, BOB_KEY),
      status: 400,
      verify: ({ body }) => {
        expect(body.images[0].error.description).toMatch(
          /^Did not find any valid classifier_ids specified in the request/,
        );
        expect(body.warnings).toEqual([
          {
            warning_id: 'classifier_not_found',
            description: `Could not find classifier '${fx.baselineId}'; it was skipped.`,
          },
        ]);
      },
    },
    {
      title: 'a classifier id of ../../service.sqlite in the path',
      send: () => t.call('GET', `/v3/classifiers/..%2F..%2Fservice.sqlite?${VERSION}`),
      status: 404,
      error:
        "Cannot find classifier '../../service.sqlite'. Check the classifier_id (GET /v3/classifiers lists yours).",
    },
    {
      title: 'SQL in classifier_ids is an unknown id',
      send: () => classify(fx.probes[0], 'p.jpg', { classifier_ids: "x' OR '1'='1" }),
      status: 400,
      verify: ({ body }) =>
        expect(body.warnings).toEqual([
          {
            warning_id: 'classifier_not_found',
            description: "Could not find classifier 'x' OR '1'='1'; it was skipped.",
          },
        ]),
    },
    {
      title:
        "DELETE /v3/user_data with customer_id '%' or SQL matches nothing by pattern (the baseline's 'acme' survives)",
      send: async () => {
        // '=' can be in no label (it separates field and value in X-Watson-Metadata): a 400 that says so.
        const sql = await t.call('DELETE', `/v3/user_data?customer_id=${encodeURIComponent("' OR '1'='1")}&${VERSION}`);
        expect(sql).toMatchObject({ status: 400, body: { error: expect.stringMatching(/contains '='/) } });
        return t.call('DELETE', `/v3/user_data?customer_id=%25&${VERSION}`);
      },
      status: 202,
      verify: async () =>
        expect((await t.call('GET', `/v3/classifiers/${fx.baselineId}?${VERSION}`)).body.status).toBe('ready'),
    },
    {
      title: 'a classify URL with the file: scheme',
      send: () => t.call('GET', `/v3/classify?url=${encodeURIComponent('file:///etc/passwd')}&${VERSION}`),
      status: 200,
      verify: ({ body }) =>
        expect(body.images).toEqual([
          {
            source_url: 'file:///etc/passwd',
            error: {
              code: 400,
              description: 'The URL scheme file: is not supported; give an http:// or https:// URL.',
              error_id: 'input_error',
            },
          },
        ]),
    },
    {
      title: "a classify URL pointing at the service's own loopback address",
      send: () => t.call('GET', `/v3/classify?url=${encodeURIComponent(`${t.url}/health`)}&${VERSION}`),
      status: 200,
      verify: ({ body }) =>
        expect(body.images[0].error).toEqual({
          code: 400,
          description:
            "The URL's host 127.0.0.1 is a private address; fetching it is not allowed. Give a publicly reachable URL.",
          error_id: 'input_error',
        }),
    },
    {
      title: "a 'parameters' field that is not JSON",
      send: () => classify(fx.probes[0], 'p.jpg', { parameters: '{"classifier_ids": [' }),
      status: 400,
      error:
        'The \'parameters\' field is not valid JSON. Send an object such as {"classifier_ids": ["default"], "threshold": 0.6}.',
    },
    {
      title: 'an empty multipart classify',
      send: () => t.call('POST', `/v3/classify?${VERSION}`, { body: new FormData() }),
      status: 400,
      error: 'No input images. Send an image or a zip of images as images_file, or an image URL as url.',
    },
  ];

  it.each(CASES.map((c) => [c.title, c] as const))('%s', async (_title, c) => {
    const answer = await c.send();
    if (c.error !== undefined) {
      expect(answer).toEqual({
        status: c.status,
        body: { code: c.status, error: typeof c.error === 'string' ? c.error : expect.stringMatching(c.error) },
      });
    } else {
      expect(answer.status).toBe(c.status);
    }
    await c.verify?.(answer);
    const created = answer.status === 200 ? answer.body.classifier_id : undefined;
    if (created && !c.keep) expect((await t.call('DELETE', `/v3/classifiers/${created}?${VERSION}`)).status).toBe(200);
  });

  it('trains the classifier on exactly what its upload accepted (the 60,000×60,000 PNG was left out)', async () => {
    await t.service.worker!.start();
    const trained = await waitForStatus(t, fx.hugePngClassifierId, ['ready', 'failed']);
    expect(trained.status).toBe('ready');
    const { versions } = (await t.call('GET', `/v3/classifiers/${fx.hugePngClassifierId}/versions?${VERSION}`)).body;
    expect(versions).toHaveLength(1);
    expect(versions[0].examples).toBe(20); // what the upload answered as training_examples: 10 images + 10 negatives
  });

  describe('after the corpus', () => {
    it('wrote no file outside the data dir', () => {
      const names = zipSlipNames(token).map((n) => n.split(/[/\\]/).pop()!);
      const bases = [
        ...foldersUnder(t.dataDir),
        path.dirname(t.dataDir),
        os.tmpdir(),
        process.cwd(),
        path.parse(t.dataDir).root,
      ];
      const landed = bases.flatMap((base) => names.map((n) => path.join(base, n))).filter((p) => fs.existsSync(p));
      expect(landed).toEqual([]);
      // Anything carrying the token, in the data dir (images are stored by hash) and beside it.
      expect(pathsNamedWith(t.dataDir, token, 10)).toEqual([]);
      expect(pathsNamedWith(path.dirname(t.dataDir), token, 1)).toEqual([]);
      expect(pathsNamedWith(os.tmpdir(), token, 1)).toEqual([]);
    });

    it('left no temp upload behind', async () => {
      // Temp files are removed when each request's handler settles, or at once when its form is refused.
      const left = await waitFor(
        'the temp folder to empty',
        async () => {
          const files = tmpEntries(t.dataDir);
          return files.length === 0 ? files : undefined;
        },
        5_000,
        100,
      ).catch(() => tmpEntries(t.dataDir));
      expect(left).toEqual([]);
    });

    it('kept no image that no classifier uses (refused and deleted uploads left nothing in the store)', async () => {
      const snapshots = await Promise.all(
        [fx.baselineId, fx.hugePngClassifierId].map((id) => t.service.ctx.classifiers.trainingSnapshot(id)),
      );
      const referenced = new Set(snapshots.flatMap((snap) => snap!.examples.map((e) => e.imageHash)));
      expect((await t.service.ctx.images.listHashes()).sort()).toEqual([...referenced].sort());
    });

    it('kept the database sound', async () => {
      if (t.service.config.databaseUrl) {
        // PostgreSQL checks its own pages; what is ours to check is that the schema is whole.
        const db = await t.openDatabase();
        try {
          const tables = (await db.kysely.introspection.getTables()).map((table) => table.name);
          expect(tables).toEqual(expect.arrayContaining(['classifiers', 'examples', 'versions']));
        } finally {
          await db.close();
        }
        return;
      }
      const db = new BetterSqlite3(dataLayout(t.dataDir).database, { readonly: true, fileMustExist: true });
      try {
        expect(db.pragma('integrity_check')).toEqual([{ integrity_check: 'ok' }]);
        expect(
          db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'classifiers'").get(),
        ).toEqual({ n: 1 });
      } finally {
        db.close();
      }
    });

    it('lost nothing: the classifier trained before the corpus scores the same images exactly as before', async () => {
      for (const hash of fx.baselineHashes) expect(await t.service.ctx.images.has(hash)).toBe(true);
      const after = await baselineClassify();
      expect(after).toEqual(fx.baselineScores);
      const list = (await t.call('GET', `/v3/classifiers?${VERSION}`)).body.classifiers.map(
        (c: { classifier_id: string }) => c.classifier_id,
      );
      expect(list.sort()).toEqual([fx.baselineId, fx.hugePngClassifierId].sort());
    });
  });
});
