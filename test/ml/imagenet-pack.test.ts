/** @jest-environment ./test/ml/typed-array-environment.ts */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import * as tar from 'tar';
import { loadImagenetClasses } from '../../src/ml/imagenet/imagenet-labels';
import { fetchImagenetPack, isImagenetPackPresent } from '../../src/ml/imagenet/imagenet-pack';
import { ModelPackError } from '../../src/ml/imagenet/model-pack-error';
import { OnnxGraphBuilder } from '../../src/ml/onnx/onnx-graph-builder';
import type { PackManifest } from '../../src/ml/types';

const POOLED = 1280;
const CLASSES = 1000;

/** Deterministic weights in [-0.5, 0.5). */
function weights(count: number, seed: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32 - 0.5;
  });
}

interface StandInModel {
  bytes: Uint8Array;
  inputName: string;
  logitsName: string;
  /** logits = pooled · weight + bias, weight laid out [POOLED][CLASSES]. */
  classifierWeight: (pooledIndex: number, classIndex: number) => number;
  bias: Float32Array;
}

type Head = 'gemm' | 'matmul-add' | 'conv1x1' | 'no-pool';

/**
 * A small model shaped like the zoo's MobileNetV2: [N,3,224,224] → strided Conv → Relu →
 * GlobalAveragePool → reshape → dense layer to 1000 logits. `head` picks how the dense layer is
 * written, as different exporters do; 'no-pool' flattens the feature map instead of pooling.
 */
function standInModel(head: Head): StandInModel {
  const builder = new OnnxGraphBuilder(`stand-in-${head}`);
  const inputName = head === 'gemm' ? 'input' : 'data';
  builder.input(inputName, ['N', 3, 224, 224]);
  const stride = head === 'no-pool' ? 224 : 16;
  const convWeight = builder.initializer({ name: 'conv_w', dims: [POOLED, 3, 3, 3], data: weights(POOLED * 27, 1) });
  const conv = builder.node('Conv', [inputName, convWeight], { kernel_shape: [3, 3], strides: [stride, stride] });
  const features = builder.node('GlobalAveragePool', [builder.node('Relu', [conv])]);
  const bias = weights(CLASSES, 3);
  const dense = weights(POOLED * CLASSES, 2);
  const logitsName = head === 'gemm' ? 'output' : 'logits';
  switch (head) {
    case 'gemm': {
      // PyTorch style: Flatten then Gemm with the weight stored [out, in].
      const weight = builder.initializer({ name: 'fc_w', dims: [CLASSES, POOLED], data: dense });
      const fcBias = builder.initializer({ name: 'fc_b', dims: [CLASSES], data: bias });
      builder.node(
        'Gemm',
        [builder.node('Flatten', [features], { axis: 1 }), weight, fcBias],
        { transB: 1 },
        logitsName,
      );
      builder.output(logitsName, ['N', CLASSES]);
      return {
        bytes: builder.toBuffer(),
        inputName,
        logitsName,
        bias,
        classifierWeight: (p, c) => dense[c * POOLED + p],
      };
    }
    case 'matmul-add': {
      // TF style: Reshape, MatMul with the weight stored [in, out], then Add.
      const shape = builder.initializer({
        name: 'flat_shape',
        dims: [2],
        data: BigInt64Array.from([-1n, BigInt(POOLED)]),
      });
      const weight = builder.initializer({ name: 'fc_w', dims: [POOLED, CLASSES], data: dense });
      const fcBias = builder.initializer({ name: 'fc_b', dims: [CLASSES], data: bias });
      const product = builder.node('MatMul', [builder.node('Reshape', [features, shape]), weight]);
      builder.node('Add', [product, fcBias], {}, logitsName);
      builder.output(logitsName, ['N', CLASSES]);
      return {
        bytes: builder.toBuffer(),
        inputName,
        logitsName,
        bias,
        classifierWeight: (p, c) => dense[p * CLASSES + c],
      };
    }
    case 'conv1x1': {
      // MXNet/Gluon style: a 1×1 convolution on the pooled map, flattened afterwards.
      const weight = builder.initializer({ name: 'fc_w', dims: [CLASSES, POOLED, 1, 1], data: dense });
      const fcBias = builder.initializer({ name: 'fc_b', dims: [CLASSES], data: bias });
      builder.node(
        'Flatten',
        [builder.node('Conv', [features, weight, fcBias], { kernel_shape: [1, 1] })],
        { axis: 1 },
        logitsName,
      );
      builder.output(logitsName, ['N', CLASSES]);
      return {
        bytes: builder.toBuffer(),
        inputName,
        logitsName,
        bias,
        classifierWeight: (p, c) => dense[c * POOLED + p],
      };
    }
    case 'no-pool': {
      // The feature map is 1×1 here, so Flatten gives the same width, but there is no pool to expose.
      const convOut = builder.node('Flatten', [builder.node('Relu', [conv])], { axis: 1 });
      const weight = builder.initializer({ name: 'fc_w', dims: [CLASSES, POOLED], data: dense });
      builder.node('Gemm', [convOut, weight], { transB: 1 }, logitsName);
      builder.output(logitsName, ['N', CLASSES]);
      return {
        bytes: builder.toBuffer(),
        inputName,
        logitsName,
        bias: new Float32Array(CLASSES),
        classifierWeight: (p, c) => dense[c * POOLED + p],
      };
    }
  }
}

let workDir: string;
let server: Server;
let baseUrl: string;
const routes = new Map<string, Buffer>();

interface Served {
  url: string;
  size: number;
  sha256: string;
}

function serve(name: string, body: Buffer): Served {
  routes.set(`/${name}`, body);
  return { url: `${baseUrl}/${name}`, size: body.length, sha256: createHash('sha256').update(body).digest('hex') };
}

/** A gzipped tarball of `files` (path inside the archive → content), built with the tar package. */
async function tarball(
  files: Record<string, Uint8Array | string>,
  options: { preservePaths?: boolean; cwd?: string } = {},
): Promise<Buffer> {
  const source = await mkdtemp(join(workDir, 'tar-src-'));
  const cwd = options.cwd ?? source;
  for (const [path, content] of Object.entries(files)) {
    const target = path.startsWith('/') ? path : join(cwd, path);
    await mkdir(join(target, '..'), { recursive: true });
    await writeFile(target, content);
  }
  const archive = join(source, '..', `${source.split('/').pop()}.tar.gz`);
  await tar.c({ gzip: true, file: archive, cwd, preservePaths: options.preservePaths }, Object.keys(files));
  return readFile(archive);
}

async function newModelsDir(): Promise<string> {
  return mkdtemp(join(workDir, 'models-'));
}

async function expectPackError(promise: Promise<unknown>, message: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ModelPackError);
  expect((error as Error).message).toMatch(message);
}

async function expectNothingInstalled(modelsDir: string): Promise<void> {
  expect(await readdir(modelsDir)).toEqual([]);
  expect(await isImagenetPackPresent(modelsDir)).toBe(false);
}

const standIns = new Map<Head, StandInModel>();
const zooLike = new Map<Head, Served>();

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'imagenet-pack-test-'));
  server = createServer((request, response) => {
    const body = routes.get(request.url ?? '');
    if (!body) {
      response.writeHead(404).end('not found');
      return;
    }
    response.writeHead(200, { 'content-type': 'application/gzip', 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  for (const head of ['gemm', 'matmul-add', 'conv1x1', 'no-pool'] as const) {
    const model = standInModel(head);
    standIns.set(head, model);
    // The zoo's tarball keeps the model in a folder named after it.
    zooLike.set(
      head,
      serve(
        `${head}.tar.gz`,
        await tarball({ 'mobilenetv2-12/mobilenetv2-12.onnx': model.bytes, 'mobilenetv2-12/README.txt': 'stand-in' }),
      ),
    );
  }
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(workDir, { recursive: true, force: true });
});

describe('fetchImagenetPack', () => {
  test.each(['gemm', 'matmul-add', 'conv1x1'] as const)(
    'installs a verified %s model with the pooled features as an extra output',
    async (head) => {
      const modelsDir = await newModelsDir();
      const model = standIns.get(head)!;

      const manifest = await fetchImagenetPack({ modelsDir, ...zooLike.get(head)! });

      expect(manifest).toEqual<PackManifest>({
        id: 'imagenet',
        version: 1,
        model: 'model.onnx',
        input: { name: model.inputName, size: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
        embedding: { outputs: ['pooled_embedding'], dim: POOLED },
        heads: { imagenet: { output: model.logitsName, labelsFile: 'imagenet-classes.json' } },
      });
      const packDir = join(modelsDir, 'imagenet');
      expect(JSON.parse(await readFile(join(packDir, 'manifest.json'), 'utf8'))).toEqual(manifest);
      expect(await isImagenetPackPresent(modelsDir)).toBe(true);
      expect(await readdir(modelsDir)).toEqual(['imagenet']);
      expect((await readdir(packDir)).sort()).toEqual(['imagenet-classes.json', 'manifest.json', 'model.onnx']);
      const classes = await loadImagenetClasses(packDir);
      expect(classes).toHaveLength(1000);
      expect(classes[0].label).toBe('tench');

      const session = await ort.InferenceSession.create(join(packDir, 'model.onnx'), { intraOpNumThreads: 1 });
      try {
        expect(session.inputNames).toEqual([model.inputName]);
        const image = new ort.Tensor(
          'float32',
          weights(2 * 3 * 224 * 224, 7).map((v) => v + 0.5),
          [2, 3, 224, 224],
        );
        const outputs = await session.run({ [model.inputName]: image });
        const logits = outputs[model.logitsName];
        const pooled = outputs['pooled_embedding'];
        expect(logits.dims).toEqual([2, CLASSES]);
        expect(pooled.dims).toEqual([2, POOLED]);
        // The extra output must be exactly what the classifier reads: recompute some logits from it.
        const pooledData = pooled.data as Float32Array;
        const logitsData = logits.data as Float32Array;
        for (const [row, classIndex] of [
          [0, 0],
          [0, 417],
          [1, 999],
        ]) {
          let expected = model.bias[classIndex];
          for (let p = 0; p < POOLED; p += 1)
            expected += pooledData[row * POOLED + p] * model.classifierWeight(p, classIndex);
          expect(logitsData[row * CLASSES + classIndex]).toBeCloseTo(expected, 3);
        }
        expect(pooledData.some((v) => v > 0)).toBe(true);
      } finally {
        await session.release();
      }
    },
  );

  test('a wrong checksum installs nothing', async () => {
    const modelsDir = await newModelsDir();
    const served = zooLike.get('gemm')!;
    await expectPackError(
      fetchImagenetPack({ modelsDir, ...served, sha256: '0'.repeat(64) }),
      /sha256 [0-9a-f]{64} does not match the expected 0{64}/,
    );
    await expectNothingInstalled(modelsDir);
  });

  test('a file larger than the expected size is refused', async () => {
    const modelsDir = await newModelsDir();
    const served = zooLike.get('gemm')!;
    await expectPackError(
      fetchImagenetPack({ modelsDir, ...served, size: served.size - 1 }),
      /announces \d+ bytes, the pack is \d+/,
    );
    await expectNothingInstalled(modelsDir);
  });

  test('a download is cut off at the size cap even when the server announces no length', async () => {
    const modelsDir = await newModelsDir();
    const served = zooLike.get('gemm')!;
    const response = await fetch(served.url);
    // Same bytes, no Content-Length: only the byte cap can stop it.
    const chunked: typeof fetch = async () => new Response(response.body, { status: 200 });
    await expectPackError(
      fetchImagenetPack({ modelsDir, ...served, size: 1000, fetchImpl: chunked }),
      /went past the expected 1000 bytes/,
    );
    await expectNothingInstalled(modelsDir);
  });

  test('a file shorter than the expected size is refused', async () => {
    const modelsDir = await newModelsDir();
    const served = zooLike.get('gemm')!;
    await expectPackError(
      fetchImagenetPack({ modelsDir, ...served, size: served.size + 1 }),
      /downloaded \d+ bytes, expected \d+/,
    );
    await expectNothingInstalled(modelsDir);
  });

  test('an HTTP error is reported with its status', async () => {
    const modelsDir = await newModelsDir();
    await expectPackError(
      fetchImagenetPack({ modelsDir, url: `${baseUrl}/missing.tar.gz`, size: 10, sha256: '0'.repeat(64) }),
      /HTTP 404/,
    );
    await expectNothingInstalled(modelsDir);
  });

  test('an unreachable server is reported', async () => {
    const modelsDir = await newModelsDir();
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await expectPackError(
      fetchImagenetPack({ modelsDir, url: `http://127.0.0.1:${port}/x.tar.gz`, size: 10, sha256: '0'.repeat(64) }),
      /download failed/,
    );
    await expectNothingInstalled(modelsDir);
  });

  test('a tarball without an .onnx file is refused', async () => {
    const modelsDir = await newModelsDir();
    const served = serve('no-onnx.tar.gz', await tarball({ 'mobilenetv2-12/README.txt': 'no model here' }));
    await expectPackError(fetchImagenetPack({ modelsDir, ...served }), /holds no \.onnx file/);
    await expectNothingInstalled(modelsDir);
  });

  test('a tarball with two .onnx files is refused', async () => {
    const modelsDir = await newModelsDir();
    const bytes = standIns.get('gemm')!.bytes;
    const served = serve('two-onnx.tar.gz', await tarball({ 'a.onnx': bytes, 'b/c.onnx': bytes }));
    await expectPackError(fetchImagenetPack({ modelsDir, ...served }), /holds 2 \.onnx files \(a\.onnx, b\/c\.onnx\)/);
    await expectNothingInstalled(modelsDir);
  });

  test('a tarball with a ../ entry is refused before anything is written', async () => {
    const modelsDir = await newModelsDir();
    const root = await mkdtemp(join(workDir, 'escape-'));
    // Unpacked under <modelsDir>/<staging>/unpacked, this entry would land in workDir.
    const entry = '../../../escaped.txt';
    const served = serve(
      'escape.tar.gz',
      await tarball(
        { 'model.onnx': standIns.get('gemm')!.bytes, [entry]: 'outside' },
        { cwd: join(root, 'a', 'b', 'c'), preservePaths: true },
      ),
    );
    await rm(root, { recursive: true });
    await expectPackError(
      fetchImagenetPack({ modelsDir, ...served }),
      /'\.\.\/\.\.\/\.\.\/escaped\.txt' would be written outside the extraction directory/,
    );
    await expectNothingInstalled(modelsDir);
    expect(await readdir(workDir)).not.toContain('escaped.txt');
  });

  test('a tarball with an absolute path is refused', async () => {
    const modelsDir = await newModelsDir();
    const absolute = join(workDir, 'absolute-entry.txt');
    const served = serve(
      'absolute.tar.gz',
      await tarball({ 'model.onnx': standIns.get('gemm')!.bytes, [absolute]: 'absolute' }, { preservePaths: true }),
    );
    await expectPackError(
      fetchImagenetPack({ modelsDir, ...served }),
      /would be written outside the extraction directory/,
    );
    await expectNothingInstalled(modelsDir);
  });

  test('a file that is not a tarball is refused', async () => {
    const modelsDir = await newModelsDir();
    const served = serve('garbage.tar.gz', Buffer.from('this is not an archive '.repeat(64)));
    await expectPackError(fetchImagenetPack({ modelsDir, ...served }), /not a readable tar\.gz archive/);
    await expectNothingInstalled(modelsDir);
  });

  test('a model whose classifier is not fed by a global average pool is refused', async () => {
    const modelsDir = await newModelsDir();
    await expectPackError(
      fetchImagenetPack({ modelsDir, ...zooLike.get('no-pool')! }),
      /graph not understood: the classifier's input comes from Relu, not a GlobalAveragePool/,
    );
    await expectNothingInstalled(modelsDir);
  });

  test('a file that is not an ONNX model is refused', async () => {
    const modelsDir = await newModelsDir();
    const served = serve(
      'not-onnx.tar.gz',
      await tarball({ 'model.onnx': Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]) }),
    );
    await expectPackError(fetchImagenetPack({ modelsDir, ...served }), /not a readable ONNX model/);
    await expectNothingInstalled(modelsDir);
  });

  test('a re-fetch replaces the installed pack; a failed one keeps it', async () => {
    const modelsDir = await newModelsDir();
    await fetchImagenetPack({ modelsDir, ...zooLike.get('gemm')! });
    const replaced = await fetchImagenetPack({ modelsDir, ...zooLike.get('matmul-add')! });
    const manifestPath = join(modelsDir, 'imagenet', 'manifest.json');
    expect(replaced.heads.imagenet?.output).toBe('logits');
    expect(JSON.parse(await readFile(manifestPath, 'utf8'))).toEqual(replaced);
    const installedModel = await readFile(join(modelsDir, 'imagenet', 'model.onnx'));

    await expectPackError(
      fetchImagenetPack({ modelsDir, ...zooLike.get('gemm')!, sha256: 'f'.repeat(64) }),
      /does not match/,
    );
    expect(await readdir(modelsDir)).toEqual(['imagenet']);
    expect(JSON.parse(await readFile(manifestPath, 'utf8'))).toEqual(replaced);
    expect((await readFile(join(modelsDir, 'imagenet', 'model.onnx'))).equals(installedModel)).toBe(true);
  });

  test('work directories left by an interrupted fetch are cleared', async () => {
    const modelsDir = await newModelsDir();
    await mkdir(join(modelsDir, '.imagenet-staging-crashed', 'unpacked'), { recursive: true });
    await fetchImagenetPack({ modelsDir, ...zooLike.get('gemm')! });
    expect(await readdir(modelsDir)).toEqual(['imagenet']);
  });
});
