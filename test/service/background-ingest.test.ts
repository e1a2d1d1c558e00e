import { classImages, undecodablePng } from '../../fixtures/images';
import { rawZip, storedEntry } from '../../fixtures/zips';
import { decodeImageViews, ImageDecodeError } from '../../src/ml/decode-image';
import { classZip, trainingForm } from '../support/example-zips';
import { bootService, VERSION, waitForStatus, type TestService } from '../support/service-harness';

/**
 * Issue 22: a create answers once the images are checked and their zips kept; the worker extracts,
 * decodes and embeds them as part of training. Images that then fail to decode appear in the classifier's `upload`
 * report (GET /v3/classifiers/{id}) and are skipped; a zip left under the minimum fails the training
 * with the entries named. The undecodable images here are PNGs whose structure is whole (every CRC
 * right) and whose image data is junk: no check short of decoding finds them.
 */
/**
 * libvips words a failure by what its thread saw last ("libpng read error", or only "Warning treated as
 * error" when several images decode at once): the detail in parentheses is masked before comparing.
 */
const masked = (text: string) => text.replace(/cannot be decoded \([^)]*\)/g, 'cannot be decoded (…)');

async function decoderReason(bytes: Buffer): Promise<string> {
  const error = await decodeImageViews(bytes, 'x', [{ size: 448, fit: 'fill' }]).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof ImageDecodeError)) throw new Error('expected the image to be undecodable');
  return error.reason;
}

describe('uploads answer at once; training decodes and reports', () => {
  let t: TestService;
  let good: Buffer[];
  let negatives: Buffer;

  const create = (zips: Record<string, Buffer>, name: string) =>
    t.call('POST', `/v3/classifiers?${VERSION}`, { body: trainingForm(zips, { name }) });
  const get = async (id: string) => (await t.call('GET', `/v3/classifiers/${id}?${VERSION}`)).body;

  beforeAll(async () => {
    t = await bootService();
    good = await classImages('yellow-triangles', 30, 61);
    negatives = await classZip('noise', 10, 62);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('reports an image that fails to decode after the answer, and trains on the rest', async () => {
    const bad = undecodablePng(1);
    const zip = rawZip([
      ...good.slice(0, 10).map((data, i) => storedEntry(`a/${i}.jpg`, data)),
      storedEntry('a/bad.png', bad),
    ]);
    const created = await create({ a_positive_examples: zip, negative_examples: negatives }, 'one bad');
    expect(created.status).toBe(200);
    expect(created.body.status).toBe('training');
    // Answered after the checks: the undecodable PNG passed them, so it counts until training decodes it.
    expect(created.body.upload).toMatchObject({
      training_examples: 21,
      decoded: false,
      files: [{ file: 'a_positive_examples', images: 11, decodable: 11, distinct: 11, accepted: 11, not_used: [] }, {}],
    });
    const id = created.body.classifier_id;
    const ready = await waitForStatus(t, id, ['ready', 'failed']);
    expect(ready.status).toBe('ready');
    expect(ready.upload).toEqual({
      training_examples: 20,
      decoded: true,
      files: [
        {
          file: 'a_positive_examples',
          entries: 11,
          images: 11,
          decodable: 10,
          distinct: 10,
          accepted: 10,
          not_used: [{ entry: 'a/bad.png', reason: expect.stringMatching(/^the PNG image data is corrupt/) }],
          not_used_count: 1,
        },
        { ...created.body.upload.files[1] },
      ],
    });
    expect(masked(ready.upload.files[0].not_used[0].reason)).toBe(masked(await decoderReason(bad)));
    const { versions } = (await t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body;
    expect(versions.map((v: { examples: number }) => v.examples)).toEqual([20]);
    // The list with verbose=true shows the same report.
    const listed = (await t.call('GET', `/v3/classifiers?verbose=true&${VERSION}`)).body.classifiers.find(
      (c: { classifier_id: string }) => c.classifier_id === id,
    );
    expect(listed.upload).toEqual(ready.upload);

    // An update: its own report replaces the first, decoded by the retraining.
    const bad2 = undecodablePng(2);
    const update = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({
        b_positive_examples: rawZip([
          ...good.slice(10, 20).map((data, i) => storedEntry(`b/${i}.jpg`, data)),
          storedEntry('b/bad.png', bad2),
        ]),
      }),
    });
    expect(update.status).toBe(200);
    expect(update.body.upload).toMatchObject({
      decoded: false,
      files: [{ file: 'b_positive_examples', accepted: 11 }],
    });
    expect((await get(id)).upload).toEqual(update.body.upload);
    const retrained = await waitForStatus(t, id, ['ready', 'failed']);
    expect(retrained.status).toBe('ready');
    expect(retrained.upload).toMatchObject({
      training_examples: 30,
      decoded: true,
      files: [
        {
          file: 'b_positive_examples',
          accepted: 10,
          not_used: [{ entry: 'b/bad.png' }],
          not_used_count: 1,
        },
      ],
    });
    expect(masked(retrained.upload.files[0].not_used[0].reason)).toBe(masked(await decoderReason(bad2)));
  });

  it('fails the training, naming the entries, when a zip keeps fewer than ten images once decoded', async () => {
    const bad = [3, 4, 5].map((seed) => undecodablePng(seed));
    const zip = rawZip([
      ...good.slice(20, 28).map((data, i) => storedEntry(`a/${i}.jpg`, data)),
      ...bad.map((data, i) => storedEntry(`a/bad${i}.png`, data)),
    ]);
    const created = await create({ a_positive_examples: zip, negative_examples: negatives }, 'too few once decoded');
    expect(created.status).toBe(200);
    const id = created.body.classifier_id;
    const failed = await waitForStatus(t, id, ['ready', 'failed']);
    expect(failed.status).toBe('failed');
    const reasons = await Promise.all(bad.map(decoderReason));
    expect(masked(failed.explanation)).toBe(
      masked(
        "The zip file for 'a_positive_examples' keeps 8 usable images once decoded, and at least 10 are required " +
          `(3 could not be decoded: ${reasons.map((r, i) => `'a/bad${i}.png': ${r}`).join('; ')}). ` +
          `Send that zip again with images that open in an image viewer, with POST /v3/classifiers/${id}.`,
      ),
    );
    expect(failed.upload).toMatchObject({
      decoded: true,
      files: [{ file: 'a_positive_examples', decodable: 8, distinct: 8, accepted: 8, not_used_count: 3 }, {}],
    });
  });

  it('fails the training, naming the entries, when none of a class decodes', async () => {
    const bad = Array.from({ length: 10 }, (_, i) => undecodablePng(10 + i));
    const zip = rawZip(bad.map((data, i) => storedEntry(`a/${i}.png`, data)));
    const created = await create({ a_positive_examples: zip, negative_examples: negatives }, 'none decodes');
    expect(created.status).toBe(200);
    const id = created.body.classifier_id;
    const failed = await waitForStatus(t, id, ['ready', 'failed']);
    expect(failed.status).toBe('failed');
    const reasons = await Promise.all(bad.slice(0, 5).map(decoderReason));
    expect(masked(failed.explanation)).toBe(
      masked(
        `The class 'a' has no image that could be read (${reasons.map((r, i) => `'a/${i}.png': ${r}`).join('; ')}; and 5 more). ` +
          `Send images of 'a' that open in an image viewer, in a zip, with POST /v3/classifiers/${id}.`,
      ),
    );
    expect(failed.upload).toMatchObject({ decoded: true, files: [{ accepted: 0, not_used_count: 10 }, {}] });
  });
});
