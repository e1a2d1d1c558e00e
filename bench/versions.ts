/**
 * bench:versions — what versions you can use cost in the database, on a temp SQLite file (the
 * same repository code the service runs, no network, no model):
 * - what a classify request reads of its versions (one read snapshot; its lease is in Redis, not
 *   measured here), against the plain read of classifier and version (per request, microseconds);
 * - publishing a version that records its training set, activating (rolling back) and pruning,
 *   for a classifier of EXAMPLES examples (default 10,000) with VERSIONS versions (default 12).
 * Figures are medians of repeated runs; on a shared machine expect noise. Last line: one JSON object.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ClassifierRepository } from '../src/data-access/db/classifier-repository';
import { VersionRepository } from '../src/data-access/db/version-repository';
import { Database } from '../src/data-access/db/database';

const EXAMPLES = Number(process.env.EXAMPLES ?? 10_000);
const VERSIONS = Number(process.env.VERSIONS ?? 12);
const RESOLVE_ROUNDS = 2000;

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const round = (v: number, digits = 1) => Math.round(v * 10 ** digits) / 10 ** digits;
const hash = (s: string) => crypto.createHash('sha256').update(s).digest('hex');
let tick = 0;
const now = () => new Date(Date.UTC(2026, 0, 1) + tick++ * 1000).toISOString();

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-versions-'));
  const db = await Database.open({ sqliteFile: path.join(dir, 'service.sqlite') });
  const repo = new ClassifierRepository(db);
  const versions = new VersionRepository(db);
  try {
    const perVersion = Math.floor(EXAMPLES / VERSIONS);
    const batch = (v: number) =>
      Array.from({ length: perVersion }, (_, i) => ({ className: `class${v % 5}`, imageHash: hash(`${v}-${i}`) }));
    await repo.create({
      id: 'bench_1',
      ownerId: 'alice',
      name: 'bench',
      examples: batch(0),
      customerId: null,
      now: now(),
    });
    const publishMs: number[] = [];
    for (let v = 0; v < VERSIONS; v++) {
      if (v > 0) await repo.addExamples({ id: 'bench_1', examples: batch(v), customerId: null, now: now() });
      const snap = (await repo.trainingSnapshot('bench_1'))!;
      const start = performance.now();
      await versions.publishVersion({
        classifierId: 'bench_1',
        generation: snap.classifier.generation,
        headFile: `bench_1/${v}.head`,
        classes: snap.classifier.classes,
        packKey: 'bench',
        evaluation: {},
        examples: snap.examples.length,
        exampleIds: snap.examples.map((e) => e.id),
        now: now(),
      });
      publishMs.push(performance.now() - start);
    }
    const versionIds = (await versions.listVersions('bench_1')).map((v) => v.id);
    const trainingSet = (await repo.trainingSnapshot('bench_1'))!.examples.length;

    const resolveUs: number[] = [];
    const readUs: number[] = [];
    for (let i = 0; i < RESOLVE_ROUNDS; i++) {
      let start = performance.now();
      await versions.resolve('alice', [{ classifierId: 'bench_1' }]);
      resolveUs.push((performance.now() - start) * 1000);
      // The classifier and its current version, read outside a snapshot.
      start = performance.now();
      const c = (await repo.findOwned('bench_1', 'alice'))!;
      await versions.findVersion(c.currentVersionId!);
      readUs.push((performance.now() - start) * 1000);
    }

    const activateMs: number[] = [];
    for (let i = 0; i < 6; i++) {
      const target = i % 2 === 0 ? versionIds[0] : versionIds[versionIds.length - 1];
      const start = performance.now();
      await versions.activateVersion({ classifierId: 'bench_1', versionId: target, discardPending: false, now: now() });
      activateMs.push(performance.now() - start);
    }
    const start = performance.now();
    const pruned = await versions.pruneVersions('bench_1', 2, now(), new Set());
    const pruneMs = performance.now() - start;

    const figures = {
      examples: trainingSet,
      versions: VERSIONS,
      resolve_us_median: round(median(resolveUs)),
      plain_read_us_median: round(median(readUs)),
      publish_ms_median: round(median(publishMs)),
      publish_ms_last: round(publishMs[publishMs.length - 1]),
      activate_ms_median: round(median(activateMs)),
      prune_ms: round(pruneMs),
      pruned_versions: pruned.pruned.length,
    };
    console.log(`training set ${trainingSet} examples over ${VERSIONS} versions`);
    console.log(
      `classify's version read ${figures.resolve_us_median} µs vs plain read ${figures.plain_read_us_median} µs per request`,
    );
    console.log(
      `publish ${figures.publish_ms_median} ms (last ${figures.publish_ms_last} ms), activate ${figures.activate_ms_median} ms, prune ${figures.prune_ms} ms`,
    );
    console.log(JSON.stringify(figures));
  } finally {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
