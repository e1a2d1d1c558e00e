import { copyFileSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import IORedis from 'ioredis';
import pg from 'pg';
import { classImages } from '../../fixtures/images';
import { dataLayout } from '../../src/data-access/files/data-layout';
import { classZip, trainingForm } from '../support/example-zips';
import { fileState, runMigrate } from '../support/migrate-cli';
import { createTestDatabase, testsUsePostgres, type TestDatabase } from '../support/postgres';
import { bootService, VERSION, waitForStatus, type TestService } from '../support/service-harness';

function imageForm(bytes: Buffer, fields: Record<string, string>): FormData {
  const form = new FormData();
  form.append('images_file', new Blob([new Uint8Array(bytes)]), 'image.jpg');
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  return form;
}

async function tablesIn(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string }>(
      'SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()',
    );
    return rows.map((r) => r.name);
  } finally {
    await client.end();
  }
}

// The source is SQLite by definition: under npm run test:postgres this file would only repeat itself.
const describeOnSqlite = testsUsePostgres() ? describe.skip : describe;

/**
 * Issue 12, deliver 4: an instance with trained, rolled-back, retraining and deleted classifiers
 * moves from SQLite to PostgreSQL with `npm run migrate` (a real process) and answers identically.
 */
describeOnSqlite('npm run migrate: moving an instance from SQLite to PostgreSQL loses nothing', () => {
  let onSqlite: TestService;
  let onPostgres: TestService | undefined;
  let target: TestDatabase;
  let dataDir: string;
  let sqliteFile: string;
  let queuePrefix: string;
  let instanceId: string;
  let alpha: string;
  let beta: string;
  let gamma: string;
  let alphaV1: number;
  let alphaV2: number;
  let gammaVersion: number;
  let probes: Buffer[];
  let before: Awaited<ReturnType<typeof answers>>;
  let sourceBefore: ReturnType<typeof fileState>;
  const extraDirs: string[] = [];

  /** Everything a client sees of alpha and beta: listings, versions and classify scores (several images, pinned and current). */
  async function answers(t: TestService) {
    const get = async (p: string) => {
      const res = await t.call('GET', `${p}${p.includes('?') ? '&' : '?'}${VERSION}`);
      expect(res.status).toBe(200);
      return res.body;
    };
    const classified = [];
    for (const image of probes) {
      const res = await t.call('POST', `/v3/classify?${VERSION}`, {
        body: imageForm(image, { threshold: '0.0', classifier_ids: `${alpha},${beta},${alpha}@${alphaV2}` }),
      });
      expect(res.status).toBe(200);
      classified.push(res.body);
    }
    return {
      list: await get('/v3/classifiers?verbose=true'),
      alpha: await get(`/v3/classifiers/${alpha}`),
      beta: await get(`/v3/classifiers/${beta}`),
      alphaVersions: await get(`/v3/classifiers/${alpha}/versions`),
      betaVersions: await get(`/v3/classifiers/${beta}/versions`),
      classified,
    };
  }

  /** The service again, on the moved database, with the same data directory, Redis and QUEUE_PREFIX. */
  async function bootOnPostgres(overrides: Record<string, string> = {}): Promise<TestService> {
    const t = await bootService({
      DATA_DIR: dataDir,
      QUEUE_PREFIX: queuePrefix,
      DATABASE_URL: target.url,
      ...overrides,
    });
    extraDirs.push(t.dataDir); // the harness's own temp dir, unused here
    return t;
  }

  beforeAll(async () => {
    target = await createTestDatabase();
    onSqlite = await bootService();
    dataDir = onSqlite.dataDir;
    sqliteFile = dataLayout(dataDir).database;
    queuePrefix = onSqlite.service.config.queuePrefix;
    instanceId = onSqlite.service.instanceId;
    const zips = {
      circles: await classZip('red-circles', 10, 71),
      squares: await classZip('blue-squares', 10, 72),
      stripes: await classZip('green-stripes', 10, 73),
      triangles: await classZip('yellow-triangles', 10, 74),
      noise: await classZip('noise', 10, 75),
    };
    probes = [
      ...(await classImages('red-circles', 1, 76)),
      ...(await classImages('green-stripes', 1, 77)),
      ...(await classImages('yellow-triangles', 1, 78)),
    ];
    const create = async (name: string, files: Record<string, Buffer>) => {
      const res = await onSqlite.call('POST', `/v3/classifiers?${VERSION}`, { body: trainingForm(files, { name }) });
      expect(res.status).toBe(200);
      return res.body.classifier_id as string;
    };
    const update = async (id: string, files: Record<string, Buffer>) => {
      const res = await onSqlite.call('POST', `/v3/classifiers/${id}?${VERSION}`, { body: trainingForm(files) });
      expect(res.status).toBe(200);
      return res.body;
    };
    const currentVersion = async (id: string) =>
      (await onSqlite.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)).body.current_version_id as number;

    alpha = await create('alpha', { circles_positive_examples: zips.circles, squares_positive_examples: zips.squares });
    beta = await create('beta', { stripes_positive_examples: zips.stripes, negative_examples: zips.noise });
    await waitForStatus(onSqlite, alpha, ['ready']);
    await waitForStatus(onSqlite, beta, ['ready']);
    alphaV1 = await currentVersion(alpha);
    await update(alpha, { stripes_positive_examples: zips.stripes });
    await waitForStatus(onSqlite, alpha, ['ready']);
    alphaV2 = await currentVersion(alpha);
    // A rollback: alpha serves its older version.
    expect(
      (await onSqlite.call('POST', `/v3/classifiers/${alpha}/versions/${alphaV1}/activate?${VERSION}`)).status,
    ).toBe(200);

    // gamma is trained last, given examples, then deleted: the largest version, example and event ids
    // ever issued now belong to no row (sqlite_sequence > MAX(id)), and must never come back.
    gamma = await create('gamma', {
      squares_positive_examples: zips.squares,
      triangles_positive_examples: zips.triangles,
    });
    await waitForStatus(onSqlite, gamma, ['ready']);
    gammaVersion = await currentVersion(gamma);
    expect(gammaVersion).toBeGreaterThan(alphaV2);

    // No worker from here on: beta's retraining is queued in Redis, not run, when the instance moves.
    await onSqlite.service.worker!.stop();
    expect((await update(beta, { triangles_positive_examples: zips.triangles })).status).toBe('retraining');
    expect((await update(gamma, { circles_positive_examples: zips.circles })).status).toBe('retraining');
    expect((await onSqlite.call('DELETE', `/v3/classifiers/${gamma}?${VERSION}`)).status).toBe(200);

    before = await answers(onSqlite);
    // Real answers to compare: every probe scored by alpha's current (v1), beta's and alpha's pinned v2.
    for (const body of before.classified) {
      const [alphaCurrent, betaCurrent, alphaPinned] = body.images[0].classifiers;
      expect([
        alphaCurrent.classifier_id,
        alphaCurrent.version_id,
        betaCurrent.classifier_id,
        alphaPinned.version_id,
      ]).toEqual([alpha, alphaV1, beta, alphaV2]);
      for (const c of [alphaCurrent, betaCurrent, alphaPinned]) expect(c.classes.length).toBeGreaterThan(0);
    }
    expect(before.beta.status).toBe('retraining');
    expect(before.alphaVersions.current_version_id).toBe(alphaV1);
  });

  afterAll(async () => {
    await onPostgres?.service.close();
    await onSqlite?.service.close().catch(() => undefined);
    await target?.drop();
    for (const dir of [dataDir, ...extraDirs]) if (dir) await fs.rm(dir, { recursive: true, force: true });
    if (queuePrefix) {
      const redis = new IORedis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
      const keys = await redis.keys(`${queuePrefix}:*`);
      if (keys.length) await redis.del(...keys);
      await redis.quit();
    }
  });

  it('refuses while the service runs, and leaves the target untouched', async () => {
    const run = await runMigrate(['--to', target.url], { DATA_DIR: dataDir, QUEUE_PREFIX: queuePrefix });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      new RegExp(
        `^The instance ${instanceId} is running \\(its database ${sqliteFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} on .*\\)\\. Stop every API and worker process`,
      ),
    );
    expect(await tablesIn(target.url)).toEqual([]);
  });

  it('copies and verifies every table in one go, skipping only upload claims, and leaves the SQLite file as it was', async () => {
    await onSqlite.service.close();
    sourceBefore = fileState(sqliteFile);
    const run = await runMigrate(['--to', target.url], { DATA_DIR: dataDir, QUEUE_PREFIX: queuePrefix });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    for (const table of [
      'owners',
      'api_keys',
      'classifiers',
      'classes',
      'examples',
      'versions',
      'version_examples',
      'version_events',
      'embeddings',
      'instance',
      'issued_classifier_ids',
      'secrets',
    ]) {
      expect(run.stdout).toMatch(new RegExp(`^  ${table} +\\d+ rows .* sha256 [0-9a-f]{16}…$`, 'm'));
    }
    expect(run.stdout).toMatch(/^ {2}image_claims +\d+ rows {2}not copied: claims of uploads in flight/m);
    expect(run.stdout).toMatch(new RegExp(`versions from ${gammaVersion + 1}\\b`));
    expect(run.stdout).toMatch(/Done: \d+ tables, \d+ rows in [\d.]+ s, each table's row count and SHA-256/);
    expect(run.stdout).toMatch(/Next: start the service on PostgreSQL with the same data directory/);
    expect(fileState(sqliteFile)).toEqual(sourceBefore);

    // Run again on the same target: it holds the instance now, and is not touched.
    const again = await runMigrate(['--to', target.url], { DATA_DIR: dataDir, QUEUE_PREFIX: queuePrefix });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(
      new RegExp(`already holds this instance \\(${instanceId}\\): it was moved there before`),
    );
    expect(fileState(sqliteFile)).toEqual(sourceBefore);
  });

  it('answers exactly as before from PostgreSQL: listings, versions, classify scores of current and pinned versions', async () => {
    onPostgres = await bootOnPostgres({ START_WORKER: 'false' });
    expect(onPostgres.service.instanceId).toBe(instanceId);
    expect(onPostgres.service.queueNamespace).toBe(onSqlite.service.queueNamespace);
    const after = await answers(onPostgres);
    expect(after).toEqual(before);
    expect((await onPostgres.call('GET', `/v3/classifiers/${gamma}?${VERSION}`)).status).toBe(404);
  });

  it('finishes the retraining queued before the move, and never hands out an id the SQLite instance issued', async () => {
    await onPostgres!.service.close();
    onPostgres = await bootOnPostgres();
    const retrained = await waitForStatus(onPostgres, beta, ['ready', 'failed'], 180_000);
    expect(retrained.status).toBe('ready');
    expect(retrained.classes.map((c: { class: string }) => c.class).sort()).toEqual(['stripes', 'triangles']);
    const betaVersions = (await onPostgres.call('GET', `/v3/classifiers/${beta}/versions?${VERSION}`)).body;
    // The versions from before are all still there, and the new one follows the largest id ever issued.
    expect(betaVersions.versions.slice(0, -1)).toEqual(before.betaVersions.versions);
    expect(betaVersions.current_version_id).toBeGreaterThan(gammaVersion);

    // A new classifier named like the deleted one: another id, and ids above every old one.
    const created = await onPostgres.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        {
          stripes_positive_examples: await classZip('green-stripes', 10, 79),
          noise_positive_examples: await classZip('noise', 10, 80),
        },
        { name: 'gamma' },
      ),
    });
    expect(created.status).toBe(200);
    expect(created.body.classifier_id).not.toBe(gamma);
    await waitForStatus(onPostgres, created.body.classifier_id, ['ready']);
    const newVersion = (
      await onPostgres.call('GET', `/v3/classifiers/${created.body.classifier_id}/versions?${VERSION}`)
    ).body.current_version_id;
    expect(newVersion).toBeGreaterThan(betaVersions.current_version_id);

    const client = new pg.Client({ connectionString: target.url });
    await client.connect();
    try {
      // gamma's examples were the newest ever issued on SQLite: the new ones come after them.
      const { rows } = await client.query<{ first: number }>(
        'SELECT MIN(id) AS first FROM examples WHERE classifier_id = $1',
        [created.body.classifier_id],
      );
      const issued = await client.query<{ id: string }>('SELECT id FROM issued_classifier_ids WHERE id = $1', [gamma]);
      expect(issued.rows).toHaveLength(1);
      const gammaExamples = await client.query('SELECT 1 FROM examples WHERE classifier_id = $1', [gamma]);
      expect(gammaExamples.rows).toHaveLength(0);
      const examples = sqliteLastIssued(sqliteFile, 'examples');
      expect(examples.seq).toBeGreaterThan(examples.max);
      expect(rows[0].first).toBeGreaterThan(examples.seq);
    } finally {
      await client.end();
    }
    // The service on PostgreSQL never touched the SQLite file.
    expect(fileState(sqliteFile)).toEqual(sourceBefore);
    await fs.access(path.join(dataDir, 'instance-id'));
  });
});

/** sqlite_sequence's value and MAX(id) of a table in the SQLite file (read from a copy, so the file stays as it is). */
function sqliteLastIssued(file: string, table: string): { seq: number; max: number } {
  const copy = path.join(os.tmpdir(), `wvr-migrate-${process.pid}-${Date.now()}.sqlite`);
  copyFileSync(file, copy);
  const db = new BetterSqlite3(copy);
  try {
    const seq = (db.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?').get(table) as { seq: number }).seq;
    const max = (db.prepare(`SELECT MAX(id) AS max FROM ${table}`).get() as { max: number }).max;
    return { seq, max };
  } finally {
    db.close();
    for (const suffix of ['', '-wal', '-shm']) rmSync(copy + suffix, { force: true });
  }
}
