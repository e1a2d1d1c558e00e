import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { bmpImage, heicHead } from '../../fixtures/images';
import { cp437Zip, rawZip, sampleImages, spannedZip, storedEntry, zipOf } from '../../fixtures/zips';
import { decodeImage, ImageDecodeError } from '../../src/ml/decode-image';
import type { WorkerSupervisor } from '../../src/processes/worker-supervisor';
import { classZip, trainingForm } from '../support/example-zips';
import { bootService, VERSION, waitForStatus, type TestService } from '../support/service-harness';

/**
 * Issue 10: zips as users' tools make them, read by yauzl; only images that decode are counted and
 * trained on; every refusal names the zip, its counts and the entries with their reasons.
 */

/** The reason the service gives for an image it cannot decode (the decoder is the one uploads use). */
async function reasonFor(bytes: Buffer): Promise<string> {
  const error = await decodeImage(bytes, 'x', 224).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof ImageDecodeError)) throw new Error('expected the image to be undecodable');
  return error.reason;
}

/** The first `keep` share of each picture's bytes: JPEGs cut short, as by an interrupted copy. */
const cutShort = (images: Buffer[], keep = 0.5) =>
  images.map((bytes) => bytes.subarray(0, Math.floor(bytes.length * keep)));

const TAIL = 'Add more distinct JPEG or PNG images (hidden files, __MACOSX entries and non-images are skipped).';

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** The decoder's reason for a JPEG cut short: how much of the picture is missing. */
const CUT_SHORT =
  'the JPEG file is incomplete: the bottom \\d+% of the picture is missing ' +
  escape('(was the upload or download cut short?); upload the complete file');
/** A file that ends before even its header does. */
const INCOMPLETE =
  'the file is incomplete: it ends before the image data does (was the upload or download cut short?); upload the complete file';
/** The whole text, literal but for `CUT_SHORT` where `{cut}` stands. */
const exactly = (text: string) => new RegExp(`^${text.split('{cut}').map(escape).join(CUT_SHORT)}$`);

describe('uploads: every zip read, only decodable distinct images counted, refusals that name the file and the reason', () => {
  let t: TestService;
  let worker: WorkerSupervisor | undefined;
  let images: Buffer[];
  let negatives: Buffer;

  const create = (zips: Record<string, Buffer>, name = 'zips') =>
    t.call('POST', `/v3/classifiers?${VERSION}`, { body: trainingForm(zips, { name }) });
  const classify = (bytes: Buffer, fileName: string, query = '', fields: Record<string, string> = {}) => {
    const form = new FormData();
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    form.append('images_file', new Blob([new Uint8Array(bytes)]), fileName);
    return t.call('POST', `/v3/classify?${VERSION}${query}`, { body: form });
  };
  const entries = (pictures: Buffer[], name: (i: number) => string) =>
    pictures.map((data, i) => storedEntry(name(i), data));

  beforeAll(async () => {
    t = await bootService({ START_WORKER: 'false' });
    images = await sampleImages(40, 5);
    negatives = await classZip('noise', 10, 6);
  });
  afterAll(async () => {
    await worker?.stop();
    await t?.close();
  });

  it('400 for 1 good JPEG and 9 cut short, naming the zip, the counts and the first five entries with their reasons', async () => {
    const cut = cutShort(images.slice(1, 10));
    const zip = rawZip([storedEntry('good.jpg', images[0]), ...entries(cut, (i) => `cut${i + 1}.jpg`)]);
    expect(await reasonFor(cut[0])).toMatch(new RegExp(`^${CUT_SHORT}$`));
    const answer = await create({ a_positive_examples: zip, negative_examples: negatives });
    expect(answer).toEqual({
      status: 400,
      body: {
        code: 400,
        error: expect.stringMatching(
          exactly(
            "The zip file for 'a_positive_examples' contains 1 usable image; at least 10 are required. " +
              'Of its 10 entries, 10 are images, 1 can be decoded and 1 is distinct. ' +
              `Not used: ${[1, 2, 3, 4, 5].map((i) => `'cut${i}.jpg': {cut}`).join('; ')}; and 4 more. ${TAIL}`,
          ),
        ),
      },
    });
    expect(await t.service.ctx.classifiers.listByOwner('alice')).toEqual([]);
  });

  it('400 for one picture copied ten times: duplicates count once, and are named', async () => {
    const zip = rawZip(Array.from({ length: 10 }, (_, i) => storedEntry(`copy${i}.jpg`, images[0])));
    const answer = await create({ a_positive_examples: zip, negative_examples: negatives });
    const duplicate = (i: number) => `'copy${i}.jpg': the same picture as 'copy0.jpg' (a duplicate counts once)`;
    expect(answer).toEqual({
      status: 400,
      body: {
        code: 400,
        error:
          "The zip file for 'a_positive_examples' contains 1 usable image; at least 10 are required. " +
          'Of its 10 entries, 10 are images, 10 can be decoded and 1 is distinct. ' +
          `Not used: ${[1, 2, 3, 4, 5].map(duplicate).join('; ')}; and 4 more. ${TAIL}`,
      },
    });
  });

  it('400 at upload, not a failed training, for twelve pictures none of which decodes', async () => {
    const cut = cutShort(images.slice(10, 16));
    // Files that only start like an image: a JPEG and a PNG signature, then nothing of a picture.
    const fakes = Array.from({ length: 6 }, (_, i) =>
      i % 2
        ? Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(300, i)])
        : Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(300, i)]),
    );
    const zip = rawZip([
      ...entries(cut, (i) => `cut${i}.jpg`),
      ...entries(fakes, (i) => `fake${i}.${i % 2 ? 'jpg' : 'png'}`),
    ]);
    const answer = await create({ a_positive_examples: zip, negative_examples: negatives });
    expect(answer).toEqual({
      status: 400,
      body: {
        code: 400,
        error: expect.stringMatching(
          exactly(
            "The zip file for 'a_positive_examples' contains 0 usable images; at least 10 are required. " +
              'Of its 12 entries, 12 are images, 0 can be decoded and 0 are distinct. ' +
              `Not used: ${[0, 1, 2, 3, 4].map((i) => `'cut${i}.jpg': {cut}`).join('; ')}; and 7 more. ${TAIL}`,
          ),
        ),
      },
    });
    // The files that only start like an image are reported too (they are among the 7 more): refused alone, they are named.
    const onlyFakes = await create({
      a_positive_examples: rawZip(entries(fakes, (i) => `fake${i}.${i % 2 ? 'jpg' : 'png'}`)),
      negative_examples: negatives,
    });
    expect(onlyFakes.body.error).toBe(
      "The zip file for 'a_positive_examples' contains 0 usable images; at least 10 are required. " +
        'Of its 6 entries, 6 are images, 0 can be decoded and 0 are distinct. ' +
        `Not used: ${[0, 1, 2, 3, 4].map((i) => `'fake${i}.${i % 2 ? 'jpg' : 'png'}': ${INCOMPLETE}`).join('; ')}; and 1 more. ${TAIL}`,
    );
  });

  it('400 naming the overlap when negative_examples holds the same pictures as a class', async () => {
    const classPictures = images.slice(20, 30);
    const zip = rawZip(entries(classPictures, (i) => `a/${i}.jpg`));
    const sameAsClass = rawZip(entries(classPictures, (i) => `neg/${i}.jpg`));
    const answer = await create({ a_positive_examples: zip, negative_examples: sameAsClass });
    const shared = (i: number) =>
      `'neg/${i}.jpg': the same picture as 'a/${i}.jpg' in 'a_positive_examples'; an image of a class cannot also be a negative example`;
    expect(answer).toEqual({
      status: 400,
      body: {
        code: 400,
        error:
          "The zip file for 'negative_examples' contains 0 usable images; at least 10 are required. " +
          'Of its 10 entries, 10 are images, 10 can be decoded and 10 are distinct, of which 10 are also in a class zip. ' +
          `Not used: ${[0, 1, 2, 3, 4].map(shared).join('; ')}; and 5 more. ${TAIL}`,
      },
    });
  });

  it('400 "the file is empty" for a 0-byte zip', async () => {
    const answer = await create({ a_positive_examples: Buffer.alloc(0), negative_examples: negatives });
    expect(answer).toEqual({
      status: 400,
      body: {
        code: 400,
        error:
          'The file for \'a_positive_examples\' is empty (0 bytes): the file is empty, so there is nothing to read. Attach the zip file itself (with curl: --form "a_positive_examples=@images.zip").',
      },
    });
  });

  it.each([
    ['PK\\x07\\x08', 'PK\x07\x08'],
    ['PK00', 'PK00'],
  ] as const)('accepts a zip that begins with the spanning marker %s', async (_label, marker) => {
    const zip = spannedZip(
      images.slice(0, 10).map((data, i) => ({ name: `${i}.jpg`, data })),
      marker,
    );
    const answer = await create({ a_positive_examples: zip, negative_examples: negatives }, `spanned-${_label}`);
    expect(answer.status).toBe(200);
    expect(answer.body.upload.files[0]).toMatchObject({
      file: 'a_positive_examples',
      entries: 10,
      images: 10,
      decodable: 10,
      distinct: 10,
      accepted: 10,
    });
    expect((await t.call('DELETE', `/v3/classifiers/${answer.body.classifier_id}?${VERSION}`)).status).toBe(200);
  });

  describe('classify zips report every picture', () => {
    it('names CP437 entries as written, and gives BMP, HEIC and cut-short entries their own error, counted in images_processed', async () => {
      const bmp = bmpImage();
      const heic = heicHead();
      const cut = cutShort([images[30]])[0];
      const zip = zipOf([
        { name: 'a.jpg', data: images[33] },
        { name: 'b.jpg', data: images[34] },
        { name: 'scan.bmp', data: bmp },
        { name: 'IMG_0001.HEIC', data: heic },
        { name: 'cut.jpg', data: cut },
        { name: 'readme.txt', data: Buffer.from('holiday photos\n') },
        { name: '__MACOSX/._Brücke_0.jpg', data: Buffer.alloc(82, 1) },
      ]);
      // Names in the DOS code page with the UTF-8 flag clear, as Windows Explorer writes them.
      const cp437 = cp437Zip([
        { name: 'Brücke_0.jpg', data: images[31] },
        { name: 'Straße_1.jpg', data: images[32] },
      ]);
      const named = await classify(cp437, 'fotos.zip', '', { threshold: '0.0' });
      expect(named.status).toBe(200);
      expect(named.body.images.map((i: { image: string }) => i.image)).toEqual([
        'fotos.zip/Brücke_0.jpg',
        'fotos.zip/Straße_1.jpg',
      ]);

      const mixed = await classify(zip, 'mixed.zip');
      expect(mixed.status).toBe(200);
      expect(mixed.body.images_processed).toBe(5);
      const errors = Object.fromEntries(
        mixed.body.images
          .filter((i: { error?: unknown }) => i.error)
          .map((i: { image: string; error: unknown }) => [i.image, i.error]),
      );
      const error = (description: string) => ({ code: 400, description, error_id: 'input_error' });
      expect(errors).toEqual({
        'mixed.zip/scan.bmp': error(
          'mixed.zip/scan.bmp: the file is not a JPEG, PNG, GIF, TIFF or WebP image: it is a BMP image, which is not supported; upload the picture as JPEG or PNG',
        ),
        'mixed.zip/IMG_0001.HEIC': error(
          'mixed.zip/IMG_0001.HEIC: the file is not a JPEG, PNG, GIF, TIFF or WebP image: it is a HEIC image, which is not supported; upload the picture as JPEG or PNG',
        ),
        'mixed.zip/cut.jpg': {
          code: 400,
          description: expect.stringMatching(exactly('mixed.zip/cut.jpg: {cut}')),
          error_id: 'input_error',
        },
      });
      expect(mixed.body.images.filter((i: { classifiers?: unknown }) => i.classifiers)).toHaveLength(2);
    });
  });

  it('warns that classifier_ids, owners and threshold in a POST query string were ignored, and applies none of them', async () => {
    const answer = await classify(images[35], 'one.jpg', '&classifier_ids=nosuch_1&threshold=0.0&owners=me');
    expect(answer.status).toBe(200);
    expect(answer.body.warnings).toEqual([
      {
        warning_id: 'parameters_ignored',
        description:
          "The query parameters 'classifier_ids', 'owners', 'threshold' were ignored: POST /v3/classify reads them only as multipart form fields. Send them as form fields (curl: --form \"classifier_ids=…\").",
      },
    ]);
    expect(answer.body.images[0].classifiers.map((c: { classifier_id: string }) => c.classifier_id)).toEqual([
      'default',
    ]);
    // The default threshold 0.5 still applies: nothing below it is returned.
    for (const c of answer.body.images[0].classifiers[0].classes) expect(c.score).toBeGreaterThanOrEqual(0.5);
    const single = await classify(images[35], 'one.jpg', '&threshold=0.2');
    expect(single.body.warnings).toEqual([
      {
        warning_id: 'parameters_ignored',
        description:
          'The query parameter \'threshold\' was ignored: POST /v3/classify reads it only as multipart form fields. Send it as a form field (curl: --form "threshold=…").',
      },
    ]);
    expect((await classify(images[35], 'one.jpg', '', { threshold: '0.2' })).body.warnings).toBeUndefined();
  });

  describe('training on exactly what was accepted', () => {
    let acceptedId: string;
    let acceptedAnswer: any;
    let brokenId: string;
    let brokenEntries: string[];
    let onlyAId: string;

    beforeAll(async () => {
      // 12 class images with two copies and one cut short; 12 negatives of which 2 are class pictures.
      const classEntries = [
        ...entries(images.slice(0, 10), (i) => `a${i}.jpg`),
        storedEntry('a0-copy.jpg', images[0]),
        storedEntry('cut.jpg', cutShort([images[10]])[0]),
      ];
      const negativeEntries = [
        ...entries(images.slice(11, 21), (i) => `n${i}.jpg`),
        storedEntry('n-a1.jpg', images[1]),
        storedEntry('n-a2.jpg', images[2]),
      ];
      acceptedAnswer = (
        await create(
          { a_positive_examples: rawZip(classEntries), negative_examples: rawZip(negativeEntries) },
          'accepted',
        )
      ).body;
      acceptedId = acceptedAnswer.classifier_id;

      // Accepted at upload; then its stored pictures are damaged (a disk fault): training must say
      // which entries failed, and why.
      const broken = await create(
        {
          broken_positive_examples: rawZip(entries(images.slice(21, 31), (i) => `b${i}.jpg`)),
          negative_examples: negatives,
        },
        'broken',
      );
      expect(broken.status).toBe(200);
      brokenId = broken.body.classifier_id;
      const examples = (await t.service.ctx.classifiers.trainingSnapshot(brokenId))!.examples.filter(
        (e) => e.className === 'broken',
      );
      brokenEntries = examples.map((e) => e.entryName!);
      // The images wait in the kept zip until the worker extracts them (issue 22); the damaged copies are
      // put where extraction finds each image already stored, as a disk fault would leave them.
      const sha256 = (bytes: Buffer) => crypto.createHash('sha256').update(bytes).digest('hex');
      const byHash = new Map(images.slice(21, 31).map((bytes) => [sha256(bytes), bytes]));
      for (const e of examples) {
        const file = path.join(t.dataDir, 'images', e.imageHash.slice(0, 2), e.imageHash);
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, byHash.get(e.imageHash)!.subarray(0, 200));
      }
      // An upload checks its images and training decodes them (issue 22): nothing is cached before training.
      const hashes = examples.map((e) => e.imageHash);
      expect((await t.service.ctx.embeddings.getMany(hashes, t.service.ctx.embedder.packKey)).size).toBe(0);

      // A later update makes the earlier negatives pictures of 'a' too: nothing is left to tell 'a' apart from.
      const onlyA = await create(
        { a_positive_examples: rawZip(entries(images.slice(0, 10), (i) => `a${i}.jpg`)), negative_examples: negatives },
        'only-a',
      );
      onlyAId = onlyA.body.classifier_id;

      const { WorkerSupervisor } = await import('../../src/processes/worker-supervisor');
      const c = t.service.config;
      worker = new WorkerSupervisor(
        {
          ...process.env,
          DATA_DIR: c.dataDir,
          ...(c.databaseUrl ? { DATABASE_URL: c.databaseUrl } : {}),
          MODELS_DIR: c.modelsDir,
          REDIS_URL: c.redisUrl,
          QUEUE_PREFIX: c.queuePrefix,
          ORT_THREADS: '1',
          LOG_LEVEL: 'warn',
        },
        t.service.ctx.logger,
      );
      await worker.start();
      expect((await waitForStatus(t, onlyAId, ['ready', 'failed'])).status).toBe('ready');
      const update = await t.call('POST', `/v3/classifiers/${onlyAId}?${VERSION}`, {
        body: trainingForm({ a_positive_examples: negatives }),
      });
      expect(update.status).toBe(200);
    });

    it('answers what each zip contributed, and the version trains on exactly training_examples images', async () => {
      expect(acceptedAnswer.upload).toEqual({
        training_examples: 20,
        decoded: false,
        files: [
          {
            file: 'a_positive_examples',
            entries: 12,
            images: 12,
            decodable: 11,
            distinct: 10,
            accepted: 10,
            not_used: [
              { entry: 'a0-copy.jpg', reason: "the same picture as 'a0.jpg' (a duplicate counts once)" },
              { entry: 'cut.jpg', reason: expect.stringMatching(exactly('{cut}')) },
            ],
            not_used_count: 2,
          },
          {
            file: 'negative_examples',
            entries: 12,
            images: 12,
            decodable: 12,
            distinct: 12,
            accepted: 10,
            not_used: [
              {
                entry: 'n-a1.jpg',
                reason:
                  "the same picture as 'a1.jpg' in 'a_positive_examples'; an image of a class cannot also be a negative example",
              },
              {
                entry: 'n-a2.jpg',
                reason:
                  "the same picture as 'a2.jpg' in 'a_positive_examples'; an image of a class cannot also be a negative example",
              },
            ],
            not_used_count: 2,
          },
        ],
      });
      expect((await waitForStatus(t, acceptedId, ['ready', 'failed'])).status).toBe('ready');
      const { versions } = (await t.call('GET', `/v3/classifiers/${acceptedId}/versions?${VERSION}`)).body;
      expect(versions.map((v: { examples: number }) => v.examples)).toEqual([20]);
    });

    it('names the class, the entries and the reasons when training cannot read a class', async () => {
      const failed = await waitForStatus(t, brokenId, ['ready', 'failed']);
      expect(failed.status).toBe('failed');
      const reasons = await Promise.all(
        (await t.service.ctx.classifiers.trainingSnapshot(brokenId))!.examples
          .filter((e) => e.className === 'broken')
          .map(async (e) => reasonFor(await t.service.ctx.images.read(e.imageHash))),
      );
      const listed = brokenEntries.slice(0, 5).map((name, i) => `'${name}': ${reasons[i]}`);
      expect(failed.explanation).toBe(
        `The class 'broken' has no image that could be read (${listed.join('; ')}; and 5 more). ` +
          `Send images of 'broken' that open in an image viewer, in a zip, with POST /v3/classifiers/${brokenId}.`,
      );
      expect(failed.explanation).not.toMatch(/JPEG or PNG/);
    });

    it('names the negatives that turned out to be pictures of the class when a class has nothing to be told apart from', async () => {
      const failed = await waitForStatus(t, onlyAId, ['failed']);
      const negativeNames = (await t.service.ctx.classifiers.trainingSnapshot(onlyAId))!.examples
        .filter((e) => e.className === null)
        .map((e) => `'${e.entryName}'`);
      expect(negativeNames).toHaveLength(10);
      expect(failed.explanation).toBe(
        "The class 'a' has no negative examples: every readable example of this classifier is an image of 'a'. " +
          `The negative examples ${negativeNames.slice(0, 5).join('; ')}; and 5 more are the same pictures as images of 'a', so they count as 'a'. ` +
          `Add a negative_examples zip of other subjects, or another class, with POST /v3/classifiers/${onlyAId}.`,
      );
    });
  });
});
