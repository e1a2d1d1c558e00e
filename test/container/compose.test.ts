import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { classZip } from '../support/example-zips';
import { classImages } from '../../fixtures/images';
import {
  PREFIX,
  VERSION,
  call,
  callInside,
  formOf,
  freePort,
  generatedKey,
  logs,
  podman,
  podmanOk,
  state,
  waitFor,
  waitForLog,
  type Field,
} from './support/podman';

const REPO = path.resolve(__dirname, '..', '..');
/** compose.yaml's project: its containers are <project>_<service>_<n>, its volumes <project>_<volume>. */
const PROJECT = `${PREFIX}-stack`;
const OUT = process.env.CONTAINER_TEST_OUT ?? os.tmpdir();
const FAILOVER_LOG = path.join(OUT, 'compose-failover.txt');
const container = (service: string, n = 1) => `${PROJECT}_${service}_${n}`;
const APIS = [container('api', 1), container('api', 2)];
const WORKERS = [container('worker', 1), container('worker', 2)];

let port: number;
let key: string;

function compose(args: string[], timeoutMs = 300_000): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      'podman-compose',
      ['-p', PROJECT, '-f', path.join(REPO, 'compose.yaml'), ...args],
      {
        cwd: REPO,
        env: { ...process.env, WATSON_VR_PORT: String(port) },
        timeout: timeoutMs,
        maxBuffer: 64 * 1024 * 1024,
      },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, output: stdout + stderr }),
    );
  });
}

function note(line: string): void {
  fs.appendFileSync(FAILOVER_LOG, `${new Date().toISOString()} ${line}\n`);
}

const zipField = async (
  name: string,
  kind: Parameters<typeof classZip>[0],
  count: number,
  seed: number,
): Promise<Field> => [name, { filename: `${name}.zip`, bytes: await classZip(kind, count, seed) }];

/** Runs redis-cli in the stack's Redis container. */
async function redisCli(...args: string[]): Promise<string> {
  return (await podmanOk(['exec', container('redis'), 'redis-cli', '--raw', ...args])).trim();
}

async function ready(id: string, through: string, timeoutMs: number): Promise<any> {
  return waitFor(
    `${id} to be ready`,
    async () => {
      const got = await callInside(through, 'GET', `/v3/classifiers/${id}?${VERSION}`, key);
      if (got.body.status === 'failed') throw new Error(`training failed: ${JSON.stringify(got.body)}`);
      return got.body.status === 'ready' ? got.body : undefined;
    },
    timeoutMs,
    1000,
  );
}

beforeAll(async () => {
  port = await freePort();
  fs.writeFileSync(FAILOVER_LOG, `# compose.yaml as project ${PROJECT}, the proxy published on 127.0.0.1:${port}\n`);
  const up = await compose(['up', '-d']);
  fs.writeFileSync(path.join(OUT, 'compose-up.txt'), up.output);
  if (up.code !== 0) throw new Error(`podman-compose up failed:\n${up.output}`);
  // podman-compose starts the services in dependency order but does not wait for PostgreSQL to be healthy:
  // an API or worker that starts too early stops, saying the database does not answer, and its restart
  // policy starts it again.
  for (const api of APIS) {
    await waitFor(
      `${api} to answer`,
      async () => {
        try {
          return (await callInside(api, 'GET', '/healthz', '')).status === 200 ? true : undefined;
        } catch {
          return undefined;
        }
      },
      300_000,
      2000,
    );
  }
  for (const worker of WORKERS) await waitForLog(worker, /training worker ready/, 300_000);
  key = await waitFor(
    "the generated key in one api replica's log",
    async () => {
      for (const api of APIS) {
        const found = generatedKey(await logs(api));
        if (found) return found;
      }
      return undefined;
    },
    30_000,
  );
}, 600_000);

afterAll(async () => {
  for (const name of [...APIS, ...WORKERS, container('proxy'), container('postgres'), container('redis')]) {
    fs.writeFileSync(path.join(OUT, `${name}.log`), await logs(name).catch(String));
  }
  const down = await compose(['down', '-v']);
  fs.writeFileSync(path.join(OUT, 'compose-down.txt'), down.output);
  await podman(['network', 'rm', '--force', `${PROJECT}_default`]); // podman-compose down leaves it
});

describe('compose.yaml: PostgreSQL, Redis, two API replicas behind the proxy, two training workers', () => {
  it('brings every service up, the API replicas ready on PostgreSQL, Redis and the models, one key printed', async () => {
    for (const name of [...APIS, ...WORKERS, container('proxy'), container('postgres'), container('redis')]) {
      expect({ name, status: (await state(name)).status }).toEqual({ name, status: 'running' });
    }
    for (const api of APIS) {
      const readiness = await callInside(api, 'GET', '/readyz', key);
      expect(readiness.body).toMatchObject({
        status: 'ready',
        checks: { database: { ok: true }, redis: { ok: true }, models: { ok: true } },
      });
    }
    // Exactly one replica generated the key (the other found it made).
    const printed = await Promise.all(APIS.map(async (api) => generatedKey(await logs(api))));
    expect(printed.filter(Boolean)).toEqual([key]);
  });

  it('the proxy on the published port spreads requests over both replicas', async () => {
    for (let i = 0; i < 20; i++) expect((await call(port, 'GET', `/v3/classifiers?${VERSION}`, key)).status).toBe(200);
    // Each replica counts its own requests; any replica's /metrics shows every process of the instance.
    const hosts = await Promise.all(APIS.map(async (api) => (await podmanOk(['exec', api, 'hostname'])).trim()));
    const counts = await waitFor(
      "both replicas' counts in /metrics",
      async () => {
        const text: string = (await callInside(APIS[0], 'GET', '/metrics', key)).body;
        const perHost = hosts.map((host) =>
          [...text.matchAll(/^watson_vr_http_requests_total\{([^}]*)\} (\d+)/gm)]
            .filter(
              ([, labels]) =>
                labels.includes('route="/v3/classifiers"') &&
                labels.includes('method="GET"') &&
                labels.includes(`process_instance="${host}/`),
            )
            .reduce((sum, [, , n]) => sum + Number(n), 0),
        );
        return perHost[0] + perHost[1] >= 20 ? perHost : undefined;
      },
      30_000,
      1000,
    );
    note(
      `20 GET /v3/classifiers through the proxy: ${APIS[0]} answered ${counts[0]}, ${APIS[1]} answered ${counts[1]}`,
    );
    expect(counts[0]).toBeGreaterThan(0);
    expect(counts[1]).toBeGreaterThan(0);
  });

  it('a classifier created through one replica classifies through the other', async () => {
    const created = await callInside(APIS[0], 'POST', `/v3/classifiers?${VERSION}`, key, [
      ['name', 'shapes'],
      await zipField('circles_positive_examples', 'red-circles', 20, 1),
      await zipField('squares_positive_examples', 'blue-squares', 20, 2),
    ]);
    expect(created.status).toBe(200);
    const id = created.body.classifier_id;
    note(`created ${id} through ${APIS[0]}`);
    await ready(id, APIS[1], 300_000);
    const circle = (await classImages('red-circles', 1, 77))[0];
    for (const api of [APIS[1], APIS[0]]) {
      const answer = await callInside(api, 'POST', `/v3/classify?${VERSION}`, key, [
        ['images_file', { filename: 'circle.jpg', bytes: circle }],
        ['classifier_ids', id],
      ]);
      expect(answer.status).toBe(200);
      expect(answer.body.images[0].classifiers[0]).toMatchObject({
        classifier_id: id,
        version_id: 1,
        classes: [{ class: 'circles' }],
      });
      note(`classified through ${api}: ${JSON.stringify(answer.body.images[0].classifiers[0])}`);
    }
  });

  it('the proxy keeps answering while an API replica whose process died is restarted', async () => {
    const victim = APIS[1];
    const before = await state(victim);
    const nodePid = (await podmanOk(['top', victim, 'hpid', 'args']))
      .split('\n')
      .find((line) => /node dist\/src\/main/.test(line))!
      .trim()
      .split(/\s+/)[0];
    process.kill(Number(nodePid), 'SIGKILL');
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      statuses.push((await call(port, 'GET', `/v3/classifiers?${VERSION}`, key)).status);
      await new Promise((r) => setTimeout(r, 250));
    }
    note(
      `SIGKILL to ${victim}'s node process; 20 GET through the proxy meanwhile answered ${JSON.stringify(statuses)}`,
    );
    expect(statuses).toEqual(Array(20).fill(200));
    await waitFor(
      `${victim} to be restarted and answer`,
      async () => {
        const s = await state(victim);
        if (s.restarts <= before.restarts || s.status !== 'running') return undefined;
        return (await callInside(victim, 'GET', '/healthz', '').catch(() => undefined))?.status === 200
          ? true
          : undefined;
      },
      180_000,
      1000,
    );
    note(`${victim} restarted by its restart policy and answers again`);
  });

  it('a worker container killed during a training is restarted, and the training finishes', async () => {
    const hosts = new Map<string, string>();
    for (const worker of WORKERS) hosts.set((await podmanOk(['exec', worker, 'hostname'])).trim(), worker);

    // Enough examples that the run lasts a few seconds in a container with one onnxruntime thread.
    const fields: Field[] = [
      ['name', 'failover'],
      await zipField('circles_positive_examples', 'red-circles', 150, 11),
      await zipField('squares_positive_examples', 'blue-squares', 150, 12),
      await zipField('stripes_positive_examples', 'green-stripes', 150, 13),
      await zipField('triangles_positive_examples', 'yellow-triangles', 150, 14),
    ];
    // Watches the queue from inside the Redis container for the run to be under way (it has reported progress),
    // then prints the job's key, who runs it (BullMQ's pb: processedBy) and its progress.
    const active = podman(
      [
        'exec',
        container('redis'),
        'sh',
        '-c',
        'for i in $(seq 12000); do for k in $(redis-cli --scan --pattern "watson-vr:*:training:active"); do ' +
          'id=$(redis-cli lindex "$k" 0); job="${k%:active}:$id"; p=$(redis-cli hget "$job" progress); ' +
          'if [ -n "$id" ] && [ -n "$p" ] && [ "$p" != 0 ]; then echo "$job"; redis-cli hget "$job" pb; echo "$p"; exit 0; fi; done; sleep 0.05; done; exit 1',
      ],
      { timeoutMs: 900_000 },
    );
    const upload = await callInside(APIS[1], 'POST', `/v3/classifiers?${VERSION}`, key, fields);
    expect(upload.status).toBe(200);
    const id = upload.body.classifier_id;
    note(`created ${id} (600 images) through ${APIS[1]}`);
    const found = await active;
    expect(found.code).toBe(0);
    const [jobKey, processedBy, progress] = found.stdout.trim().split('\n');
    const victim = hosts.get(processedBy.split('/')[0])!;
    expect(WORKERS).toContain(victim);
    const before = await state(victim);
    // Killing the node process from outside, as the kernel's OOM killer or a crash would: the container exits
    // and its restart policy (unless-stopped) starts it again. (podman kill/stop would count as a manual stop.)
    const nodePid = (await podmanOk(['top', victim, 'hpid', 'args']))
      .split('\n')
      .find((line) => /node dist\/workers/.test(line))!
      .trim()
      .split(/\s+/)[0];
    process.kill(Number(nodePid), 'SIGKILL');
    note(
      `training job ${jobKey} of ${id} in ${processedBy} (${victim}) at ${progress}%: SIGKILL to its node process (host pid ${nodePid})`,
    );

    const restarted = await waitFor(
      `${victim} to be restarted`,
      async () => {
        const s = await state(victim);
        return s.status === 'running' && s.restarts > before.restarts ? s : undefined;
      },
      60_000,
      500,
    );
    note(`${victim} restarted by its restart policy (restarts ${before.restarts} -> ${restarted.restarts})`);

    const done = await ready(id, APIS[0], 400_000);
    // BullMQ's job hash: pb = processedBy, stc = stalledCounter, atm = attemptsMade.
    const job = await redisCli('hmget', jobKey, 'pb', 'stc', 'atm', 'returnvalue');
    const [by, stalled, attempts, returned] = job.split('\n');
    note(
      `${id} ready (version ${done.evaluation?.version_id}); job ${jobKey}: processedBy ${by}, stalledCounter ${stalled}, attemptsMade ${attempts}, returned ${returned}`,
    );
    // Taken up again by BullMQ's stalled-job check, by either worker. (The restarted container has the same
    // host name and, in its new pid namespace, often the same pid: processedBy cannot tell the two apart.)
    expect(Number(stalled)).toBeGreaterThanOrEqual(1);
    expect(returned).toBe('"trained"');
    let finished = 0;
    for (const worker of WORKERS) {
      const lines = (await logs(worker))
        .split('\n')
        .filter((line) => /training run|training worker ready|re-queueing|stalled/.test(line));
      finished += lines.filter(
        (line) => line.includes(`"classifierId":"${id}"`) && line.includes('"training run finished"'),
      ).length;
      note(`${worker} log:\n  ${lines.join('\n  ')}`);
    }
    expect(finished).toBe(1); // the killed run never finished; the one taken up again did, once
    const stripes = (await classImages('green-stripes', 1, 78))[0];
    const classified = await call(
      port,
      'POST',
      `/v3/classify?${VERSION}`,
      key,
      formOf([
        ['images_file', { filename: 'stripes.jpg', bytes: stripes }],
        ['classifier_ids', id],
      ]),
    );
    expect(classified.body.images[0].classifiers[0].classes[0].class).toBe('stripes');
  });
});
