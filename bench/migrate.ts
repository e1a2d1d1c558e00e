/**
 * bench:migrate — what `npm run migrate` costs on a large instance: a synthetic SQLite instance of
 * EMBEDDINGS cached embeddings (default 20,000, 15,360 bytes each like a real one, ≈300 MB) and
 * EXAMPLES examples (default 20,000, each in one version's training set) is copied to a new
 * PostgreSQL database on BENCH_POSTGRES_URL's server (default the local postgres role), verified,
 * and dropped again. The copy runs in a child process of its own, so its peak resident memory is
 * the copy's (plus Node's baseline, reported beside it): it must stay flat as the instance grows.
 * One run (the copy is long enough not to need a median); on a shared machine expect noise.
 * Last line: one JSON object.
 */
import { fork } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { dataLayout } from '../src/data-access/files/data-layout';
import { Database } from '../src/data-access/db/database';
import { moveToPostgres } from '../src/domain/move-to-postgres';

const EMBEDDINGS = Number(process.env.EMBEDDINGS ?? 20_000);
const EXAMPLES = Number(process.env.EXAMPLES ?? 20_000);
const VECTOR_BYTES = 15_360;
const ADMIN_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const MB = 1024 * 1024;

interface CopyFigures {
  seconds: number;
  rows: number;
  baselineRssMb: number;
  peakRssMb: number;
}

/** The child: the copy alone, reporting its time and peak memory. */
async function copyInChild(dataDir: string, targetUrl: string): Promise<void> {
  const baselineRssMb = process.resourceUsage().maxRSS / 1024;
  const report = await moveToPostgres({
    dataDir,
    targetUrl,
    redisUrl: 'redis://127.0.0.1:6379',
    queuePrefix: 'bench-migrate',
    log: () => undefined,
  });
  process.send!({
    seconds: report.seconds,
    rows: report.tables.reduce((sum, t) => sum + t.rows, 0),
    baselineRssMb,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  } satisfies CopyFigures);
  process.disconnect?.();
}

async function makeInstance(dataDir: string): Promise<number> {
  const db = await Database.open({ sqliteFile: dataLayout(dataDir).database });
  const now = new Date().toISOString();
  await db.write(async (q) => {
    await q.insertInto('owners').values({ id: 'alice', created: now }).execute();
    await q
      .insertInto('classifiers')
      .values({
        id: 'bench_1',
        owner_id: 'alice',
        name: 'bench',
        status: 'ready',
        explanation: null,
        created: now,
        updated: now,
        retrained: null,
        generation: 1,
        current_version_id: null,
        customer_id: null,
      })
      .execute();
    await q.insertInto('issued_classifier_ids').values({ id: 'bench_1', owner_id: 'alice', issued: now }).execute();
    for (let start = 0; start < EXAMPLES; start += 1000) {
      const rows = Array.from({ length: Math.min(1000, EXAMPLES - start) }, (_, i) => ({
        classifier_id: 'bench_1',
        class_name: `class${(start + i) % 5}`,
        image_hash: crypto
          .createHash('sha256')
          .update(String(start + i))
          .digest('hex'),
        generation: 1,
        customer_id: null,
        created: now,
        entry_name: `class/${start + i}.jpg`,
      }));
      await q.insertInto('examples').values(rows).execute();
    }
    const version = await q
      .insertInto('versions')
      .values({
        classifier_id: 'bench_1',
        generation: 1,
        head_file: 'bench_1/1.head',
        classes: '[]',
        pack_key: 'p',
        evaluation: '{}',
        examples: EXAMPLES,
        created: now,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const ids = await q.selectFrom('examples').select('id').execute();
    for (let start = 0; start < ids.length; start += 1000) {
      await q
        .insertInto('version_examples')
        .values(
          ids
            .slice(start, start + 1000)
            .map((e) => ({ classifier_id: 'bench_1', version_id: version.id, example_id: e.id })),
        )
        .execute();
    }
    for (let start = 0; start < EMBEDDINGS; start += 200) {
      const rows = Array.from({ length: Math.min(200, EMBEDDINGS - start) }, () => ({
        hash: crypto.randomBytes(32).toString('hex'),
        pack_key: 'p',
        vector: crypto.randomBytes(VECTOR_BYTES),
      }));
      await q.insertInto('embeddings').values(rows).execute();
    }
  });
  await db.close();
  return fs.statSync(dataLayout(dataDir).database).size;
}

async function admin(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

async function main() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-migrate-'));
  const name = `bench_migrate_${crypto.randomBytes(4).toString('hex')}`;
  const target = new URL(ADMIN_URL);
  target.pathname = `/${name}`;
  try {
    const bytes = await makeInstance(dataDir);
    await admin(`CREATE DATABASE ${name}`);
    const child = fork(__filename, ['--copy', dataDir, target.toString()], { execArgv: process.execArgv });
    const figures = await new Promise<CopyFigures>((resolve, reject) => {
      child.once('message', (m) => resolve(m as CopyFigures));
      child.once('exit', (code) => reject(new Error(`the copy exited with code ${code} before reporting`)));
    });
    const result = {
      embeddings: EMBEDDINGS,
      examples: EXAMPLES,
      sqlite_mb: Math.round(bytes / MB),
      rows: figures.rows,
      seconds: Math.round(figures.seconds * 10) / 10,
      mb_per_second: Math.round((bytes / MB / figures.seconds) * 10) / 10,
      rows_per_second: Math.round(figures.rows / figures.seconds),
      baseline_rss_mb: Math.round(figures.baselineRssMb),
      peak_rss_mb: Math.round(figures.peakRssMb),
    };
    console.log(
      `copied and verified ${result.rows} rows (${result.sqlite_mb} MB of SQLite) in ${result.seconds} s: ${result.mb_per_second} MB/s`,
    );
    console.log(
      `peak resident memory ${result.peak_rss_mb} MB (a Node process with the modules loaded: ${result.baseline_rss_mb} MB)`,
    );
    console.log(JSON.stringify(result));
  } finally {
    await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--copy') {
  copyInChild(process.argv[3], process.argv[4]).catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
} else {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
