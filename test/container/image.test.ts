import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  IMAGE,
  PREFIX,
  REDIS_IMAGE,
  VERSION,
  call,
  formOf,
  freePort,
  generatedKey,
  logs,
  podman,
  podmanOk,
  removeContainers,
  state,
  waitFor,
  waitForLog,
  type Answer,
  type Field,
} from './support/podman';

const NETWORK = `${PREFIX}-image-net`;
const REDIS = `${PREFIX}-image-redis`;
const VOLUME = `${PREFIX}-image-data`;
const API = `${PREFIX}-image-api`;
const REPO = path.resolve(__dirname, '..', '..');
/** Where the tutorial's requests and answers are written, for the record (run.sh prints where). */
const TRANSCRIPT = path.join(process.env.CONTAINER_TEST_OUT ?? os.tmpdir(), 'tutorial.txt');

let port: number;
let key: string;
let demo: string;

/** The container as the README's Docker section runs it: the image, a volume on /data, a Redis, one published port. */
async function runApi(): Promise<void> {
  await podmanOk([
    'run',
    '-d',
    '--name',
    API,
    '--network',
    NETWORK,
    '--init',
    '-p',
    `127.0.0.1:${port}:8080`,
    '-v',
    `${VOLUME}:/data`,
    '-e',
    `REDIS_URL=redis://${REDIS}:6379`,
    IMAGE,
  ]);
}

async function answering(): Promise<void> {
  await waitFor(
    'the API to answer /healthz',
    async () => {
      try {
        return (await call(port, 'GET', '/healthz')).status === 200 ? true : undefined;
      } catch {
        return undefined;
      }
    },
    180_000,
  );
}

function record(step: string, request: string, answer: Answer): void {
  fs.appendFileSync(TRANSCRIPT, `## ${step}\n$ ${request}\n${answer.status} ${JSON.stringify(answer.body)}\n\n`);
}

const demoFile = (name: string) => ({ filename: name, bytes: fs.readFileSync(path.join(demo, name)) });

async function step(title: string, method: string, pathAndQuery: string, fields?: Field[]): Promise<Answer> {
  const answer = await call(port, method, pathAndQuery, key, fields && formOf(fields));
  const shown = fields
    ?.map(([name, value]) =>
      typeof value === 'string' ? `--form "${name}=${value}"` : `--form "${name}=@${value.filename}"`,
    )
    .join(' ');
  record(
    title,
    `curl -X ${method} -u "apikey:$KEY" ${shown ?? ''} "http://localhost:${port}${pathAndQuery}"`.replace(
      / {2,}/g,
      ' ',
    ),
    answer,
  );
  return answer;
}

async function settled(id: string): Promise<any> {
  return waitFor(
    `${id} to finish training`,
    async () => {
      const got = await call(port, 'GET', `/v3/classifiers/${id}?${VERSION}`, key);
      return ['ready', 'failed'].includes(got.body.status) ? got : undefined;
    },
    300_000,
    1000,
  );
}

beforeAll(async () => {
  port = await freePort();
  demo = fs.mkdtempSync(path.join(os.tmpdir(), `${PREFIX}-demo-`));
  // The README's example zips, made by its own command (run.sh compiled the scripts).
  execFileSync('node', [path.join(REPO, 'dist/scripts/make-demo-zips.js'), demo], { stdio: 'ignore' });
  fs.writeFileSync(
    TRANSCRIPT,
    `# The README's Watson tutorial against the container ${API} (${IMAGE}), published on 127.0.0.1:${port}\n\n`,
  );
  await podmanOk(['network', 'create', NETWORK]);
  await podmanOk(['volume', 'create', VOLUME]);
  await podmanOk(['run', '-d', '--name', REDIS, '--network', NETWORK, REDIS_IMAGE]);
  await runApi();
  await answering();
}, 300_000);

afterAll(async () => {
  await removeContainers(API, REDIS);
  await podman(['volume', 'rm', '--force', VOLUME]);
  await podman(['network', 'rm', '--force', NETWORK]);
  fs.rmSync(demo, { recursive: true, force: true });
});

describe('the image, run as the README says', () => {
  it('runs as the non-root user node, every process of it', async () => {
    expect((await podmanOk(['exec', API, 'id', '-un'])).trim()).toBe('node');
    const users = (await podmanOk(['top', API, 'user', 'args'])).trim().split('\n').slice(1);
    // The API process and the training worker it starts (and the init process podman adds, which is root).
    const node = users.filter((line) => /\bnode\b.*dist\//.test(line));
    expect(node.length).toBeGreaterThanOrEqual(2);
    for (const line of node) expect(line).toMatch(/^node\s/);
  });

  it('converted its models on the first start into the volume, and prints the generated key once', async () => {
    // The image holds no models and no data: all of it is made in /data, the volume.
    expect((await podmanOk(['run', '--rm', '--entrypoint', 'ls', IMAGE, '-A', '/data'])).trim()).toBe('');
    const models = await podmanOk([
      'exec',
      API,
      'sh',
      '-c',
      'ls -ln /data/models && ls /data/models/bundled /data/models/detector',
    ]);
    expect(models).toMatch(/ 1000 +1000 .* bundled/);
    expect(models).toMatch(/ 1000 +1000 .* detector/);
    expect(models).toMatch(/\.onnx/);
    key = generatedKey(await logs(API))!;
    expect(key).toMatch(/^\S{20,}$/);
  });

  it('answers /healthz and /readyz', async () => {
    expect(await call(port, 'GET', '/healthz')).toEqual({ status: 200, body: { status: 'ok' } });
    const ready = await call(port, 'GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.status).toBe('ready');
  });

  it("passes the README's Watson tutorial through the published port, and keeps every classifier across a restart and a new container", async () => {
    const created = await step('create from zips', 'POST', `/v3/classifiers?${VERSION}`, [
      ['circles_positive_examples', demoFile('circles.zip')],
      ['squares_positive_examples', demoFile('squares.zip')],
      ['negative_examples', demoFile('noise.zip')],
      ['name', 'shapes'],
    ]);
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({
      name: 'shapes',
      status: 'training',
      classes: [{ class: 'circles' }, { class: 'squares' }],
    });
    const id: string = created.body.classifier_id;

    const ready = await settled(id);
    record(
      'poll until ready',
      `curl -u "apikey:$KEY" "http://localhost:${port}/v3/classifiers/${id}?${VERSION}"`,
      ready,
    );
    expect(ready.body.status).toBe('ready');
    expect(ready.body.evaluation.folds).toBeGreaterThan(1);

    const classified = await step('classify with it and default', 'POST', `/v3/classify?${VERSION}`, [
      ['images_file', demoFile('circle.jpg')],
      ['classifier_ids', `${id},default`],
    ]);
    expect(classified.status).toBe(200);
    const [custom, builtIn] = classified.body.images[0].classifiers;
    expect(custom).toMatchObject({ classifier_id: id, version_id: 1 });
    expect(custom.classes[0].class).toBe('circles');
    expect(builtIn.classifier_id).toBe('default');
    expect(builtIn.classes.length).toBeGreaterThan(0);

    const retrain = await step('add a class (retrain)', 'POST', `/v3/classifiers/${id}?${VERSION}`, [
      ['stripes_positive_examples', demoFile('stripes.zip')],
    ]);
    expect(retrain.status).toBe(200);
    expect(retrain.body.status).toBe('retraining');
    const retrained = await settled(id);
    record(
      'poll until ready',
      `curl -u "apikey:$KEY" "http://localhost:${port}/v3/classifiers/${id}?${VERSION}"`,
      retrained,
    );
    expect(retrained.body.status).toBe('ready');
    expect(retrained.body.retrained).toEqual(expect.any(String));

    const stripes = await step('classify stripes.jpg at threshold 0', 'POST', `/v3/classify?${VERSION}`, [
      ['images_file', demoFile('stripes.jpg')],
      ['classifier_ids', id],
      ['threshold', '0.0'],
    ]);
    expect(stripes.body.images[0].classifiers[0].version_id).toBe(2);
    expect(stripes.body.images[0].classifiers[0].classes[0].class).toBe('stripes');

    // A restart (SIGTERM, then start) and a new container on the same volume keep the classifier and its answers.
    const before = (await state(API)).pid;
    expect((await podman(['restart', API])).code).toBe(0);
    expect((await state(API)).pid).not.toBe(before);
    await answering();
    await waitForLog(
      API,
      /Watson Visual Recognition v3 API listening[\s\S]*Watson Visual Recognition v3 API listening/,
      60_000,
    );
    expect(generatedKey(await logs(API))).toBe(key); // printed on the first start only (the log spans both)
    const again = async () =>
      (
        await call(
          port,
          'POST',
          `/v3/classify?${VERSION}`,
          key,
          formOf([
            ['images_file', demoFile('stripes.jpg')],
            ['classifier_ids', id],
            ['threshold', '0.0'],
          ]),
        )
      ).body;
    expect(await again()).toEqual(stripes.body);

    await removeContainers(API);
    await runApi();
    await answering();
    expect(generatedKey(await logs(API))).toBeUndefined(); // the key is in the volume's database, not made again
    const listed = await step('list', 'GET', `/v3/classifiers?${VERSION}`);
    expect(listed.body.classifiers).toEqual([{ classifier_id: id, name: 'shapes', status: 'ready' }]);
    expect(await again()).toEqual(stripes.body);

    const deleted = await step('delete', 'DELETE', `/v3/classifiers/${id}?${VERSION}`);
    expect(deleted).toEqual({ status: 200, body: {} });
    expect((await call(port, 'GET', `/v3/classifiers?${VERSION}`, key)).body).toEqual({ classifiers: [] });
  });
});
