import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import AdmZip from 'adm-zip';
import VisualRecognitionV3 from 'ibm-watson/visual-recognition/v3';
import { BasicAuthenticator, IamAuthenticator } from 'ibm-watson/auth';
import { classImages } from '../../fixtures/images';
import { CENTERNET_INPUT_SIZE } from '../../src/ml/detector/centernet-converter';
import { issueAccessToken } from '../../src/entry-points/http/access-token';
import { ALICE_KEY, BOB_KEY, bootService, VERSION, waitFor, type TestService } from '../support/service-harness';
import { classZip } from '../support/example-zips';
import { decodeMlModel, withCoreMlSpec } from '../support/coreml-reference';
import { tmpEntries } from '../support/upload-files';

/**
 * The official ibm-watson 6.2.2 Node SDK, used exactly as its docs show, against the real
 * service: only the service URL and the key differ from a client of IBM's Watson.
 */
describe('ibm-watson VisualRecognitionV3 SDK against the service', () => {
  let t: TestService;
  let imageServer: http.Server;
  let imageUrl: string;
  let scratchDir: string;
  let circlesZipPath: string;
  let squaresZip: Buffer;
  let noiseZip: Buffer;
  let stripesZip: Buffer;
  let circle: Buffer;
  let square: Buffer;
  let stripes: Buffer;
  let alice: VisualRecognitionV3;
  let bob: VisualRecognitionV3;
  let classifierId: string;

  function sdkClient(authenticator: BasicAuthenticator | IamAuthenticator): VisualRecognitionV3 {
    return new VisualRecognitionV3({ version: '2018-03-19', serviceUrl: t.url, authenticator });
  }

  async function waitForClassifier(id: string, statuses: string[]): Promise<VisualRecognitionV3.Classifier> {
    return waitFor(
      `classifier ${id} to be ${statuses.join('/')} (via the SDK)`,
      async () => {
        const { result } = await alice.getClassifier({ classifierId: id });
        return statuses.includes(result.status ?? '') ? result : undefined;
      },
      60_000,
      250,
    );
  }

  const classNames = (classes: Array<{ class: string }> | undefined) => (classes ?? []).map((c) => c.class);

  beforeAll(async () => {
    // The SDK warns on every construction that IBM's Visual Recognition was discontinued.
    jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    // A 1 MB request limit lets a small upload prove that chunked SDK uploads are held to it.
    t = await bootService({ ALLOW_PRIVATE_URLS: 'true', MAX_REQUEST_MB: '1' });
    scratchDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-sdk-'));
    circlesZipPath = path.join(scratchDir, 'circles.zip');
    fs.writeFileSync(circlesZipPath, await classZip('red-circles', 12, 21));
    squaresZip = await classZip('blue-squares', 12, 22);
    noiseZip = await classZip('noise', 12, 23);
    stripesZip = await classZip('green-stripes', 12, 24);
    [circle] = await classImages('red-circles', 1, 91);
    [square] = await classImages('blue-squares', 1, 92);
    [stripes] = await classImages('green-stripes', 1, 93);
    imageServer = http.createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'image/jpeg' }).end(circle));
    await new Promise<void>((resolve) => imageServer.listen(0, '127.0.0.1', resolve));
    imageUrl = `http://127.0.0.1:${(imageServer.address() as AddressInfo).port}/circle.jpg`;
    alice = sdkClient(new BasicAuthenticator({ username: 'apikey', password: ALICE_KEY }));
    bob = sdkClient(new BasicAuthenticator({ username: 'apikey', password: BOB_KEY }));
  });
  afterAll(async () => {
    await new Promise((resolve) => imageServer?.close(resolve));
    await t?.close();
    if (scratchDir) fs.rmSync(scratchDir, { recursive: true, force: true });
    jest.restoreAllMocks();
  });

  it('createClassifier takes a ReadStream and Buffers as example zips and answers the training classifier', async () => {
    const response = await alice.createClassifier({
      name: 'sdk shapes',
      positiveExamples: { circles: fs.createReadStream(circlesZipPath), squares: squaresZip },
      negativeExamples: noiseZip,
      negativeExamplesFilename: 'noise.zip',
    });
    expect(response.status).toBe(200);
    const created = response.result;
    classifierId = created.classifier_id;
    expect(classifierId).toMatch(/^sdkshapes_\d+$/);
    expect(created).toMatchObject({ name: 'sdk shapes', owner: 'alice', status: 'training', core_ml_enabled: false });
    expect(classNames(created.classes)).toEqual(['circles', 'squares']);
  });

  it('getClassifier polls until ready; listClassifiers lists it brief and verbose', async () => {
    const ready = await waitForClassifier(classifierId, ['ready', 'failed']);
    expect(ready.status).toBe('ready');
    expect(ready.explanation).toBeUndefined();
    expect(ready.core_ml_enabled).toBe(true);

    const verbose = (await alice.listClassifiers({ verbose: true })).result;
    expect(verbose.classifiers).toHaveLength(1);
    expect(verbose.classifiers[0]).toMatchObject({
      classifier_id: classifierId,
      name: 'sdk shapes',
      owner: 'alice',
      status: 'ready',
    });
    expect(classNames(verbose.classifiers[0].classes)).toEqual(['circles', 'squares']);
    const brief = (await alice.listClassifiers()).result;
    expect(brief.classifiers).toEqual([{ classifier_id: classifierId, name: 'sdk shapes', status: 'ready' }]);
  });

  it('classify: one image Buffer with imagesFilename, classifierIds, threshold 0 and acceptLanguage', async () => {
    const response = await alice.classify({
      imagesFile: circle,
      imagesFilename: 'circle.jpg',
      classifierIds: [classifierId, 'default'],
      threshold: 0.0,
      acceptLanguage: 'en',
    });
    expect(response.status).toBe(200);
    const { images, images_processed, custom_classes } = response.result;
    expect(images_processed).toBe(1);
    expect(custom_classes).toBe(2);
    expect(images[0].image).toBe('circle.jpg');
    const [custom, builtIn] = images[0].classifiers;
    expect(custom).toMatchObject({ classifier_id: classifierId, name: 'sdk shapes' });
    expect(classNames(custom.classes)).toEqual(['circles', 'squares']);
    expect(custom.classes[0].score).toBeGreaterThan(0.5);
    expect(builtIn.classifier_id).toBe('default');
    expect(builtIn.classes.length).toBeGreaterThan(0);
  });

  it('classify: a zip of images with owners [me, IBM] and the default threshold', async () => {
    const zip = new AdmZip();
    zip.addFile('circle.jpg', circle);
    zip.addFile('square.jpg', square);
    const { result } = await alice.classify({
      imagesFile: zip.toBuffer(),
      imagesFilename: 'shapes.zip',
      owners: ['me', 'IBM'],
    });
    expect(result.images_processed).toBe(2);
    const byName = new Map(result.images.map((image) => [image.image, image]));
    expect([...byName.keys()].sort()).toEqual(['shapes.zip/circle.jpg', 'shapes.zip/square.jpg']);
    for (const [name, expected] of [
      ['shapes.zip/circle.jpg', 'circles'],
      ['shapes.zip/square.jpg', 'squares'],
    ]) {
      const classifiers = byName.get(name)!.classifiers;
      expect(classifiers.map((c) => c.classifier_id).sort()).toEqual([classifierId, 'default'].sort());
      const custom = classifiers.find((c) => c.classifier_id === classifierId)!;
      // threshold defaults to 0.5: only the winning class is left.
      expect(classNames(custom.classes)).toEqual([expected]);
    }
  });

  it('classify: a zip sent without a filename (the SDK names it "_") is recognised by its content', async () => {
    const zip = new AdmZip();
    zip.addFile('a.jpg', circle);
    zip.addFile('b.jpg', square);
    const { result } = await alice.classify({ imagesFile: zip.toBuffer(), classifierIds: [classifierId] });
    expect(result.images_processed).toBe(2);
    expect(result.images.map((image) => image.image).sort()).toEqual(['_/a.jpg', '_/b.jpg']);
  });

  it('classify: an image ReadStream with no classifier choice uses default only; other languages answer in English', async () => {
    const imagePath = path.join(scratchDir, 'square.jpg');
    fs.writeFileSync(imagePath, square);
    const response = await alice.classify({ imagesFile: fs.createReadStream(imagePath), acceptLanguage: 'de' });
    expect(response.status).toBe(200);
    expect(response.headers['content-language']).toBe('en');
    expect(response.result.custom_classes).toBe(0);
    expect(response.result.images[0].image).toBe('square.jpg');
    expect(response.result.images[0].classifiers.map((c) => c.classifier_id)).toEqual(['default']);
  });

  it('classify: an image url', async () => {
    const { result } = await alice.classify({ url: imageUrl, classifierIds: [classifierId] });
    expect(result.images[0]).toMatchObject({ source_url: imageUrl, resolved_url: imageUrl });
    expect(classNames(result.images[0].classifiers[0].classes)).toEqual(['circles']);
  });

  it("another owner's client gets 404 for the classifier and no valid classifier to classify with", async () => {
    await expect(bob.getClassifier({ classifierId })).rejects.toMatchObject({ status: 404 });
    await expect(bob.deleteClassifier({ classifierId })).rejects.toMatchObject({ status: 404 });
    await expect(
      bob.updateClassifier({ classifierId, positiveExamples: { stripes: stripesZip } }),
    ).rejects.toMatchObject({ status: 404 });
    expect((await bob.listClassifiers({ verbose: true })).result.classifiers).toEqual([]);
    const refused = await bob
      .classify({ imagesFile: circle, imagesFilename: 'circle.jpg', classifierIds: [classifierId] })
      .catch((e) => e);
    expect(refused.status).toBe(400);
    const body = JSON.parse(refused.body);
    expect(body.images[0].error).toMatchObject({
      code: 400,
      description: expect.stringMatching(/valid classifier_ids/),
    });
  });

  it('an IamAuthenticator pointed at the service exchanges the key for a token and is served', async () => {
    const iam = sdkClient(new IamAuthenticator({ apikey: ALICE_KEY, url: `${t.url}/identity/token` }));
    const { result } = await iam.getClassifier({ classifierId });
    expect(result).toMatchObject({ classifier_id: classifierId, status: 'ready' });
  });

  it('refuses an access token that was tampered with or has expired', async () => {
    const res = await fetch(`${t.url}/identity/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=${ALICE_KEY}`,
    });
    const [header, payload, signature] = ((await res.json()) as { access_token: string }).access_token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    expect(JSON.stringify(claims)).not.toContain(ALICE_KEY);
    const bobKey = (await t.service.apiKeys.findActiveKey(BOB_KEY))!;
    const forged = Buffer.from(JSON.stringify({ ...claims, kid: bobKey.id, sub: 'bob' })).toString('base64url');
    const bearer = (token: string) => ({ headers: { Authorization: `Bearer ${token}` } });
    expect((await t.call('GET', `/v3/classifiers?${VERSION}`, bearer(`${header}.${forged}.${signature}`))).status).toBe(
      401,
    );
    const secret = await t.service.apiKeys.tokenSigningSecret();
    const aliceKey = (await t.service.apiKeys.findActiveKey(ALICE_KEY))!;
    const expired = issueAccessToken(secret, aliceKey, Math.floor(Date.now() / 1000) - 7200).token;
    const refused = await t.call('GET', `/v3/classifiers?${VERSION}`, bearer(expired));
    expect(refused).toEqual({ status: 401, body: { code: 401, error: expect.stringMatching(/expired/) } });
  });

  it('holds chunked SDK uploads (no Content-Length) to the request limit: 413', async () => {
    const bigZip = () => {
      const zip = new AdmZip();
      zip.addFile('padding.jpg', crypto.randomBytes(600 * 1024));
      return zip.toBuffer();
    };
    const refused = await alice
      .createClassifier({ name: 'too big', positiveExamples: { a: bigZip(), b: bigZip() } })
      .catch((e) => e);
    expect(refused.status).toBe(413);
    expect(JSON.parse(refused.body).error).toMatch(/at most 1 MB/);
    expect(tmpEntries(t.dataDir)).toEqual([]);
  });

  it('updateClassifier adds a class; polling returns to ready and the new class classifies', async () => {
    const response = await alice.updateClassifier({ classifierId, positiveExamples: { stripes: stripesZip } });
    expect(response.status).toBe(200);
    expect(response.result.status).toBe('retraining');
    expect(classNames(response.result.classes)).toEqual(['circles', 'squares', 'stripes']);

    const ready = await waitForClassifier(classifierId, ['ready', 'failed']);
    expect(ready.status).toBe('ready');
    expect(Date.parse(ready.retrained!.toString())).toBeGreaterThanOrEqual(
      Date.parse(response.result.updated!.toString()),
    );
    // threshold 0: the k-NN gate may hold a new image of a 12-example class below 0.5 (it lies beyond the
    // class's own spread); the retrained head must still rank the new class first.
    const { result } = await alice.classify({
      imagesFile: stripes,
      imagesFilename: 'stripes.jpg',
      classifierIds: [classifierId],
      threshold: 0,
    });
    expect(result.custom_classes).toBe(3);
    expect(result.images[0].classifiers[0].classes[0].class).toBe('stripes');
  });

  withCoreMlSpec(
    "getCoreMlModel downloads the current version as an .mlmodel that decodes with Apple's schema",
    async () => {
      const response = await alice.getCoreMlModel({ classifierId });
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toBe('application/octet-stream');
      const chunks: Buffer[] = [];
      for await (const chunk of response.result as AsyncIterable<Buffer>) chunks.push(Buffer.from(chunk));
      const model = await decodeMlModel(Buffer.concat(chunks));
      expect(model.Type).toBe('neuralNetworkClassifier');
      expect(model.neuralNetworkClassifier.stringClassLabels.vector).toEqual(['circles', 'squares', 'stripes']);
      // The export takes CenterNet's square: both networks of the embedding read it.
      expect(model.description.input[0].type.imageType).toMatchObject({
        width: CENTERNET_INPUT_SIZE,
        height: CENTERNET_INPUT_SIZE,
        colorSpace: 'RGB',
      });
      expect(model.description.metadata.userDefined).toMatchObject({ classifier_id: classifierId });
      await expect(bob.getCoreMlModel({ classifierId })).rejects.toMatchObject({ status: 404 });
    },
  );

  it('deleteClassifier answers {}, after which getClassifier is a 404', async () => {
    const response = await alice.deleteClassifier({ classifierId });
    expect(response.status).toBe(200);
    expect(response.result).toEqual({});
    await expect(alice.getClassifier({ classifierId })).rejects.toMatchObject({ status: 404 });
    expect((await alice.listClassifiers()).result.classifiers).toEqual([]);
  });
});
