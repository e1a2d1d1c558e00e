import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { decodeImageStretched } from '../../src/ml/decode-image';
import { CENTERNET_INPUT_SIZE } from '../../src/ml/detector/centernet-converter';
import { decodeMlModel, runNeuralNetworkClassifier, withCoreMlSpec } from '../support/coreml-reference';
import {
  ALICE_KEY,
  basicAuth,
  bootService,
  BOB_KEY,
  VERSION,
  waitForStatus,
  type TestService,
} from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';
import { darknetPhoto, darknetPhotosInstalled, type DarknetPhotoName } from '../support/darknet-photos';

/** The export takes the picture as the service's eye does: stretched to CenterNet's square (the MobileNetV2 input is its 2×2 block means). */
const EXPORT_SIZE = CENTERNET_INPUT_SIZE;

const PHOTO_NAMES: DarknetPhotoName[] = ['dog', 'horses', 'person'];
const hasPhotos = darknetPhotosInstalled(PHOTO_NAMES);
const withPhotos = hasPhotos ? it : it.skip;
const withPhotosAndCoreMlSpec = hasPhotos ? withCoreMlSpec : it.skip;

/** GET that keeps the body as bytes. */
async function download(
  t: TestService,
  pathAndQuery: string,
  key = ALICE_KEY,
): Promise<{ status: number; type: string | null; disposition: string | null; bytes: Buffer }> {
  const res = await fetch(`${t.url}${pathAndQuery}`, { headers: { Authorization: basicAuth(key) } });
  return {
    status: res.status,
    type: res.headers.get('content-type'),
    disposition: res.headers.get('content-disposition'),
    bytes: Buffer.from(await res.arrayBuffer()),
  };
}

/** The service's own scores for one image (threshold 0: every class), by class. */
async function serviceScores(
  t: TestService,
  classifierId: string,
  bytes: Buffer,
  name: string,
): Promise<Map<string, number>> {
  const form = new FormData();
  form.append('images_file', new Blob([new Uint8Array(bytes)]), name);
  form.append('classifier_ids', classifierId);
  form.append('threshold', '0');
  const res = await t.call('POST', `/v3/classify?${VERSION}`, { body: form });
  expect(res.status).toBe(200);
  return new Map(
    res.body.images[0].classifiers[0].classes.map((c: { class: string; score: number }) => [c.class, c.score]),
  );
}

describe('exporting a trained classifier (Core ML and ONNX)', () => {
  let t: TestService;
  let id: string;
  let firstVersion: number;
  let retrainedVersion: number;
  let photos: Array<{ name: string; bytes: Buffer }>;
  let scores: Map<string, Map<string, number>>;
  let onnxSize = 0;

  beforeAll(async () => {
    // One version kept: the retrain at the end prunes the first.
    t = await bootService({ KEEP_VERSIONS: '1' });
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          circles_positive_examples: await classZip('red-circles', 12, 31),
          squares_positive_examples: await classZip('blue-squares', 12, 32),
          negative_examples: await classZip('noise', 12, 33),
        },
        { name: 'shapes' },
      ),
    });
    id = created.body.classifier_id;
    expect(created.body.core_ml_enabled).toBe(false);
    const ready = await waitForStatus(t, id, ['ready', 'failed']);
    expect(ready.status).toBe('ready');
    expect(ready.core_ml_enabled).toBe(true);
    firstVersion = ready.evaluation.version_id;
    photos = hasPhotos ? PHOTO_NAMES.map(darknetPhoto) : [];
    scores = new Map();
    for (const photo of photos) scores.set(photo.name, await serviceScores(t, id, photo.bytes, photo.name));
  });
  afterAll(async () => {
    await t?.close();
  });

  withPhotos('ONNX: one self-contained model whose scores match the service within 1e-5 on real photos', async () => {
    const res = await download(t, `/v3/classifiers/${id}/onnx_model?${VERSION}`);
    expect(res.status).toBe(200);
    expect(res.type).toBe('application/octet-stream');
    expect(res.disposition).toContain(`${id}.onnx`);
    onnxSize = res.bytes.length;

    const model = onnx.ModelProto.decode(res.bytes);
    const meta = new Map((model.metadataProps ?? []).map((p) => [p.key, p.value]));
    expect(meta.get('classifier_id')).toBe(id);
    expect(meta.get('version_id')).toBe(String(firstVersion));
    expect(JSON.parse(meta.get('classes')!)).toEqual(['circles', 'squares']);
    expect(meta.get('input_normalisation')).toMatch(/pixel \/ 255 - mean\[c\]\) \/ std\[c\]/);
    const [input] = model.graph!.input!;
    expect(input.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || Number(d.dimValue))).toEqual([
      'N',
      3,
      EXPORT_SIZE,
      EXPORT_SIZE,
    ]);

    const mean: number[] = JSON.parse(meta.get('input_mean')!);
    const std: number[] = JSON.parse(meta.get('input_std')!);
    const session = await ort.InferenceSession.create(res.bytes);
    // All photos in one batch: the export takes any N.
    const plane = EXPORT_SIZE * EXPORT_SIZE;
    const batch = new Float32Array(photos.length * 3 * plane);
    for (const [n, photo] of photos.entries()) {
      const { rgb } = await decodeImageStretched(photo.bytes, photo.name, EXPORT_SIZE);
      for (let c = 0; c < 3; c++)
        for (let p = 0; p < plane; p++) batch[(n * 3 + c) * plane + p] = (rgb[p * 3 + c] / 255 - mean[c]) / std[c];
    }
    const out = await session.run({
      [input.name!]: new ort.Tensor('float32', batch, [photos.length, 3, EXPORT_SIZE, EXPORT_SIZE]),
    });
    const values = out[model.graph!.output![0].name!].data as Float32Array;
    expect(values).toHaveLength(photos.length * 2);
    for (const [n, photo] of photos.entries()) {
      const expected = scores.get(photo.name)!;
      ['circles', 'squares'].forEach((cls, k) =>
        expect(Math.abs(values[n * 2 + k] - expected.get(cls)!)).toBeLessThan(1e-5),
      );
    }
    await session.release();
  });

  withPhotosAndCoreMlSpec(
    "Core ML: an .mlmodel that decodes with Apple's schema, has every required field, and scores like the service",
    async () => {
      const res = await download(t, `/v3/classifiers/${id}/core_ml_model?${VERSION}`);
      expect(res.status).toBe(200);
      expect(res.type).toBe('application/octet-stream');
      expect(res.disposition).toContain(`${id}.mlmodel`);
      const model = await decodeMlModel(res.bytes);

      // Model: a specification version, a description, and the NeuralNetworkClassifier type.
      expect(model.specificationVersion).toBeGreaterThanOrEqual(1);
      expect(model.Type).toBe('neuralNetworkClassifier');
      const { description } = model;
      expect(description.input).toHaveLength(1);
      const [input] = description.input;
      expect(input.type.Type).toBe('imageType');
      expect(input.type.imageType).toMatchObject({ width: EXPORT_SIZE, height: EXPORT_SIZE, colorSpace: 'RGB' });
      // A classifier names its predicted label (a string) and its probabilities (a dictionary keyed by label).
      const output = new Map(description.output.map((o: any) => [o.name, o.type]));
      expect(output.get(description.predictedFeatureName)).toMatchObject({ Type: 'stringType' });
      expect(output.get(description.predictedProbabilitiesName)).toMatchObject({
        Type: 'dictionaryType',
        dictionaryType: { KeyType: 'stringKeyType' },
      });
      expect(description.metadata.userDefined).toMatchObject({
        classifier_id: id,
        version_id: String(firstVersion),
        pack: expect.stringMatching(/@/),
      });

      const nn = model.neuralNetworkClassifier;
      expect(nn.ClassLabels).toBe('stringClassLabels');
      expect(nn.stringClassLabels.vector).toEqual(['circles', 'squares']);
      // The preprocessing: pixel/255 for the bundled backbone, as Core ML image scale and bias.
      expect(nn.preprocessing).toHaveLength(1);
      expect(nn.preprocessing[0].featureName).toBe(input.name);
      expect(nn.preprocessing[0].scaler).toMatchObject({ redBias: 0, greenBias: 0, blueBias: 0 });
      expect(nn.preprocessing[0].scaler.channelScale).toBeCloseTo(1 / 255, 9);
      // Every layer is named, has a type, reads only blobs computed before it, and carries consistent weights.
      const known = new Set<string>([input.name]);
      for (const layer of nn.layers) {
        expect(layer.name).not.toBe('');
        expect(layer.layer).toBeDefined();
        for (const blob of layer.input) expect(known.has(blob)).toBe(true);
        expect(layer.output).toHaveLength(1);
        expect(known.has(layer.output[0])).toBe(false);
        known.add(layer.output[0]);
        if (layer.layer === 'convolution') {
          const c = layer.convolution;
          expect(c.kernelSize).toHaveLength(2);
          expect(c.weights.floatValue).toHaveLength(
            c.outputChannels * c.kernelChannels * c.kernelSize[0] * c.kernelSize[1],
          );
          if (c.hasBias) expect(c.bias.floatValue).toHaveLength(c.outputChannels);
        }
        if (layer.layer === 'innerProduct') {
          const p = layer.innerProduct;
          expect(p.weights.floatValue).toHaveLength(p.inputChannels * p.outputChannels);
          if (p.hasBias) expect(p.bias.floatValue).toHaveLength(p.outputChannels);
        }
      }
      expect(known.has(nn.labelProbabilityLayerName)).toBe(true);
      expect(nn.layers[nn.layers.length - 1].output[0]).toBe(nn.labelProbabilityLayerName);

      // The network itself, run by the test's reference interpreter on the pixels the service sees.
      for (const photo of photos) {
        const { rgb } = await decodeImageStretched(photo.bytes, photo.name, EXPORT_SIZE);
        const probabilities = runNeuralNetworkClassifier(model, rgb, EXPORT_SIZE);
        const expected = scores.get(photo.name)!;
        for (const cls of ['circles', 'squares'])
          expect(Math.abs(probabilities.get(cls)! - expected.get(cls)!)).toBeLessThan(1e-4);
      }

      // fp32 weights either way: the .mlmodel of a 2-class classifier is within 10 % of the ONNX export.
      if (onnxSize > 0) expect(Math.abs(res.bytes.length - onnxSize) / onnxSize).toBeLessThan(0.1);
    },
  );

  it("another owner's export is a 404, like the classifier itself", async () => {
    for (const model of ['core_ml_model', 'onnx_model']) {
      const res = await t.call('GET', `/v3/classifiers/${id}/${model}?${VERSION}`, { key: BOB_KEY });
      expect(res).toEqual({
        status: 404,
        body: { code: 404, error: expect.stringMatching(`Cannot find classifier '${id}'`) },
      });
    }
  });

  it('version_id picks a version; an unknown one is a 404, a malformed one a 400; a never-trained classifier says to wait', async () => {
    // Hold the worker: the retrain stays queued and a new classifier never trains.
    await t.service.worker!.stop();
    const updated = await t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
      body: trainingForm({ stripes_positive_examples: await classZip('green-stripes', 12, 34) }),
    });
    expect(updated.body).toMatchObject({ status: 'retraining', core_ml_enabled: true });

    const pinned = await download(t, `/v3/classifiers/${id}/onnx_model?version_id=${firstVersion}&${VERSION}`);
    expect(pinned.status).toBe(200);
    expect(pinned.disposition).toContain(`${id}-v${firstVersion}.onnx`);
    const meta = new Map((onnx.ModelProto.decode(pinned.bytes).metadataProps ?? []).map((p) => [p.key, p.value]));
    expect(meta.get('version_id')).toBe(String(firstVersion));
    const pinnedCoreMl = await download(t, `/v3/classifiers/${id}/core_ml_model?version_id=${firstVersion}&${VERSION}`);
    expect(pinnedCoreMl.status).toBe(200);

    const unknown = await t.call('GET', `/v3/classifiers/${id}/onnx_model?version_id=987654&${VERSION}`);
    expect(unknown).toEqual({
      status: 404,
      body: { code: 404, error: expect.stringMatching(`Classifier '${id}' has no version 987654`) },
    });
    for (const bad of ['abc', '0', '-1', '1.5']) {
      const res = await t.call('GET', `/v3/classifiers/${id}/onnx_model?version_id=${bad}&${VERSION}`);
      expect(res).toEqual({
        status: 400,
        body: { code: 400, error: expect.stringMatching(/version_id must be a positive integer/) },
      });
    }

    const other = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          a_positive_examples: await classZip('red-circles', 10, 35),
          negative_examples: await classZip('noise', 10, 36),
        },
        { name: 'untrained' },
      ),
    });
    expect(other.body.core_ml_enabled).toBe(false);
    for (const model of ['core_ml_model', 'onnx_model']) {
      const res = await t.call('GET', `/v3/classifiers/${other.body.classifier_id}/${model}?${VERSION}`);
      expect(res).toEqual({
        status: 409,
        body: { code: 409, error: expect.stringMatching(/has not finished training.*until its status is ready/) },
      });
    }
    // Another classifier's version is not this one's.
    const foreign = await t.call(
      'GET',
      `/v3/classifiers/${other.body.classifier_id}/onnx_model?version_id=${firstVersion}&${VERSION}`,
    );
    expect(foreign.status).toBe(404);
  });

  it('exports the retrained version; a version the retention setting pruned is a 410', async () => {
    await t.service.worker!.start();
    const ready = await waitForStatus(t, id, ['ready', 'failed']);
    expect(ready.status).toBe('ready');
    retrainedVersion = ready.evaluation.version_id;
    const current = await download(t, `/v3/classifiers/${id}/core_ml_model?${VERSION}`);
    expect(current.status).toBe(200);
    // The ONNX export's metadata names the version without Apple's schema (the Core ML check is below).
    const currentOnnx = await download(t, `/v3/classifiers/${id}/onnx_model?${VERSION}`);
    const meta = new Map((onnx.ModelProto.decode(currentOnnx.bytes).metadataProps ?? []).map((p) => [p.key, p.value]));
    expect(meta.get('version_id')).toBe(String(retrainedVersion));
    expect(JSON.parse(meta.get('classes')!)).toEqual(['circles', 'squares', 'stripes']);
    for (const format of ['core_ml_model', 'onnx_model']) {
      const pruned = await t.call('GET', `/v3/classifiers/${id}/${format}?version_id=${firstVersion}&${VERSION}`);
      expect(pruned).toEqual({
        status: 410,
        body: { code: 410, error: expect.stringMatching(`Version ${firstVersion} of classifier '${id}' was pruned`) },
      });
    }
  });

  withCoreMlSpec(
    "the retrained version's .mlmodel decodes with Apple's schema and names its new class and version",
    async () => {
      const current = await download(t, `/v3/classifiers/${id}/core_ml_model?${VERSION}`);
      const model = await decodeMlModel(current.bytes);
      expect(model.neuralNetworkClassifier.stringClassLabels.vector).toEqual(['circles', 'squares', 'stripes']);
      expect(model.description.metadata.userDefined.version_id).toBe(String(retrainedVersion));
    },
  );
});
