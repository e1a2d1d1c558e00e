import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { ClassifierRepository, type TrainingSnapshot } from '../../src/data-access/classifier-repository';
import { openDatabase, type Database } from '../../src/data-access/database';

const hash = (s: string) => crypto.createHash('sha256').update(s).digest('hex');
const examples = (className: string | null, prefix: string, n = 3) =>
  Array.from({ length: n }, (_, i) => ({ className, imageHash: hash(`${prefix}-${i}`) }));

let clock = 0;
const now = () => new Date(Date.UTC(2026, 0, 1) + clock++ * 1000).toISOString();

/** The worker's part of a run, split so a test can act between its snapshot and its publish. */
function publish(repo: ClassifierRepository, snap: TrainingSnapshot): boolean {
  return repo.publishVersion({
    classifierId: snap.classifier.id,
    generation: snap.classifier.generation,
    headFile: `${snap.classifier.id}/${snap.classifier.generation}-${clock}.head`,
    classes: snap.classifier.classes,
    packKey: 'bundled@1',
    evaluation: {},
    examples: snap.examples.length,
    exampleIds: snap.examples.map((e) => e.id),
    now: now(),
  });
}
const train = (repo: ClassifierRepository, id: string) => publish(repo, repo.trainingSnapshot(id)!);
const hashesOf = (snap: TrainingSnapshot) => snap.examples.map((e) => `${e.className}:${e.imageHash}`).sort();

describe('ClassifierRepository: versions you can use', () => {
  let dir: string;
  let db: Database;
  let repo: ClassifierRepository;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'versions-'));
    db = openDatabase(path.join(dir, 'service.sqlite'));
    repo = new ClassifierRepository(db);
  });
  afterEach(() => {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** v1: a, b. v2: a, b, c (an update adding class c). */
  function twoVersions() {
    repo.create({ id: 'k_1', ownerId: 'alice', name: 'k', examples: [...examples('a', 'a'), ...examples('b', 'b')], customerId: null, now: now() });
    train(repo, 'k_1');
    const v1 = repo.find('k_1')!.currentVersionId!;
    const v1Set = hashesOf(repo.trainingSnapshot('k_1')!);
    repo.addExamples({ id: 'k_1', examples: examples('c', 'c'), customerId: null, now: now() });
    train(repo, 'k_1');
    const v2 = repo.find('k_1')!.currentVersionId!;
    return { v1, v2, v1Set };
  }

  it('rolls back to the examples of the activated version, and the next retrain starts from them', () => {
    const { v1, v2, v1Set } = twoVersions();
    const result = repo.activateVersion({ classifierId: 'k_1', versionId: v1, discardPending: false, now: now() });
    expect(result).toMatchObject({ outcome: 'activated', pendingExamples: 0 });
    const c = repo.find('k_1')!;
    expect(c).toMatchObject({ currentVersionId: v1, status: 'ready', classes: ['a', 'b'] });
    expect(c.trainedGeneration).toBe(c.generation); // nothing to train: a queued run finds it up to date
    expect(hashesOf(repo.trainingSnapshot('k_1')!)).toEqual(v1Set);

    // The next update trains on v1's examples plus the new ones; class c stays gone.
    repo.addExamples({ id: 'k_1', examples: examples('d', 'd'), customerId: null, now: now() });
    const snap = repo.trainingSnapshot('k_1')!;
    expect(snap.classifier.classes).toEqual(['a', 'b', 'd']);
    expect(hashesOf(snap)).toEqual([...v1Set, ...examples('d', 'd').map((e) => `d:${e.imageHash}`)].sort());
    expect(publish(repo, snap)).toBe(true);

    // Rolling forward to v2 brings class c's examples back (they were retired, not deleted).
    repo.activateVersion({ classifierId: 'k_1', versionId: v2, discardPending: false, now: now() });
    expect(repo.find('k_1')!.classes).toEqual(['a', 'b', 'c']);
    expect(repo.trainingSnapshot('k_1')!.examples.filter((e) => e.className === 'c')).toHaveLength(3);

    const events = repo.listVersionEvents('k_1').map((e) => [e.cause, e.versionId, e.previousVersionId]);
    expect(events).toEqual([
      ['trained', v1, null],
      ['trained', v2, v1],
      ['activated', v1, v2],
      ['trained', v2 + 1, v1],
      ['activated', v2, v2 + 1],
    ]);
  });

  it('a rollback while a retrain runs loses neither: the stale run cannot publish, its new examples train on the rolled-back set', () => {
    const { v1, v2, v1Set } = twoVersions();
    repo.addExamples({ id: 'k_1', examples: examples('e', 'e'), customerId: null, now: now() });
    const running = repo.trainingSnapshot('k_1')!; // the worker has started the run on a, b, c, e

    const result = repo.activateVersion({ classifierId: 'k_1', versionId: v1, discardPending: false, now: now() });
    expect(result).toMatchObject({ outcome: 'activated', pendingExamples: 3 });
    expect(repo.find('k_1')).toMatchObject({ currentVersionId: v1, status: 'retraining', classes: ['a', 'b', 'e'] });

    // The run ends: it must not publish over the rollback (it still holds class c).
    expect(publish(repo, running)).toBe(false);
    expect(repo.find('k_1')!.currentVersionId).toBe(v1);
    // A failure of the stale run is not recorded either.
    expect(repo.markFailed('k_1', running.classifier.generation, 'boom', now())).toBe(false);

    // The queued run trains v1's examples plus the update's: nothing of either is lost.
    const next = repo.trainingSnapshot('k_1')!;
    expect(next.classifier.trainedGeneration).toBeLessThan(next.classifier.generation);
    expect(hashesOf(next)).toEqual([...v1Set, ...examples('e', 'e').map((e) => `e:${e.imageHash}`)].sort());
    expect(publish(repo, next)).toBe(true);
    const c = repo.find('k_1')!;
    expect(c.status).toBe('ready');
    expect(c.currentVersionId).not.toBe(v2);
    expect(repo.findVersion(c.currentVersionId!)!.classes).toEqual(['a', 'b', 'e']);
  });

  it('discard_pending drops an update that no version holds; activating the current version alone changes nothing', () => {
    const { v2 } = twoVersions();
    repo.addExamples({ id: 'k_1', examples: examples('bad', 'bad'), customerId: null, now: now() });
    repo.markFailed('k_1', repo.find('k_1')!.generation, 'The class bad has no image that could be read.', now());
    expect(repo.activateVersion({ classifierId: 'k_1', versionId: v2, discardPending: false, now: now() }).outcome).toBe('unchanged');
    const result = repo.activateVersion({ classifierId: 'k_1', versionId: v2, discardPending: true, now: now() });
    expect(result).toMatchObject({ outcome: 'activated', pendingExamples: 0 });
    expect(repo.find('k_1')).toMatchObject({ status: 'ready', classes: ['a', 'b', 'c'], explanation: null });
    // The discarded examples no version holds are deleted at the next prune.
    const { imageHashes } = repo.pruneVersions('k_1', 10, now());
    expect(imageHashes.sort()).toEqual(examples('bad', 'bad').map((e) => e.imageHash).sort());
    expect(repo.unreferencedImages(imageHashes)).toEqual(imageHashes);
  });

  it('an example retired by a rollback and sent again joins the training set again', () => {
    const { v1 } = twoVersions();
    repo.activateVersion({ classifierId: 'k_1', versionId: v1, discardPending: false, now: now() });
    repo.addExamples({ id: 'k_1', examples: examples('c', 'c').slice(0, 1), customerId: null, now: now() });
    const snap = repo.trainingSnapshot('k_1')!;
    expect(snap.classifier.classes).toEqual(['a', 'b', 'c']);
    expect(snap.examples.filter((e) => e.className === 'c')).toHaveLength(1);
  });

  it('refuses a version of another classifier, an unknown one and a pruned one', () => {
    const { v1 } = twoVersions();
    repo.create({ id: 'other_2', ownerId: 'alice', name: 'o', examples: examples('x', 'x'), customerId: null, now: now() });
    train(repo, 'other_2');
    const otherVersion = repo.find('other_2')!.currentVersionId!;
    expect(repo.activateVersion({ classifierId: 'k_1', versionId: otherVersion, discardPending: false, now: now() }).outcome).toBe('no-version');
    expect(repo.activateVersion({ classifierId: 'k_1', versionId: 999, discardPending: false, now: now() }).outcome).toBe('no-version');
    expect(repo.activateVersion({ classifierId: 'gone_1', versionId: v1, discardPending: false, now: now() }).outcome).toBe('no-classifier');
    repo.pruneVersions('k_1', 1, now());
    expect(repo.findVersion(v1)!.pruned).not.toBeNull();
    expect(repo.activateVersion({ classifierId: 'k_1', versionId: v1, discardPending: false, now: now() }).outcome).toBe('pruned');
  });

  it('retention keeps the newest N, the current one and versions leased by requests in flight', () => {
    repo.create({ id: 'r_1', ownerId: 'alice', name: 'r', examples: examples('a', 'a'), customerId: null, now: now() });
    train(repo, 'r_1');
    const ids = [repo.find('r_1')!.currentVersionId!];
    for (let i = 0; i < 4; i++) {
      repo.addExamples({ id: 'r_1', examples: examples('a', `more${i}`), customerId: null, now: now() });
      train(repo, 'r_1');
      ids.push(repo.find('r_1')!.currentVersionId!);
    }
    // v1 is current again (a rollback), v2 is pinned by a request in flight.
    repo.activateVersion({ classifierId: 'r_1', versionId: ids[0], discardPending: false, now: now() });
    const { resolved, leaseIds } = repo.resolveAndLease('alice', [{ classifierId: 'r_1', versionId: ids[1] }], new Date(Date.now() + 60_000).toISOString());
    expect(resolved[0].outcome).toBe('ok');

    const { headFiles } = repo.pruneVersions('r_1', 2, now());
    expect(headFiles).toEqual([repo.findVersion(ids[2])!.headFile]);
    const pruned = repo.listVersions('r_1').filter((v) => v.pruned).map((v) => v.id);
    expect(pruned).toEqual([ids[2]]);

    // Once the request is done, the next prune takes v2 too; a pin of a pruned version is refused.
    repo.releaseLeases(leaseIds);
    expect(repo.pruneVersions('r_1', 2, now()).headFiles).toEqual([repo.findVersion(ids[1])!.headFile]);
    expect(repo.resolveAndLease('alice', [{ classifierId: 'r_1', versionId: ids[1] }], now()).resolved[0].outcome).toBe('pruned');
    expect(repo.resolveAndLease('bob', [{ classifierId: 'r_1', versionId: ids[3] }], now()).resolved[0].outcome).toBe('no-classifier');
    expect(repo.find('r_1')!.currentVersionId).toBe(ids[0]);
  });

  it('still resolves a request\'s versions, unleased, when the database cannot be written (a full disk)', () => {
    const { v1 } = twoVersions();
    const readOnly = new BetterSqlite3(path.join(dir, 'service.sqlite'), { readonly: true });
    try {
      const { resolved, leaseIds } = new ClassifierRepository(readOnly).resolveAndLease(
        'alice',
        [{ classifierId: 'k_1' }, { classifierId: 'k_1', versionId: v1 }],
        now(),
      );
      expect(resolved.map((r) => r.outcome)).toEqual(['ok', 'ok']);
      expect(leaseIds).toEqual([]);
    } finally {
      readOnly.close();
    }
  });

  it('records a callback in the outbox when a run leaves the classifier ready or failed, not for intermediate runs', () => {
    repo.create({ id: 'cb_1', ownerId: 'alice', name: 'cb', examples: examples('a', 'a'), customerId: null, callbackUrl: 'https://example.com/hook', now: now() });
    const outbox = () => db.prepare('SELECT body FROM callback_outbox ORDER BY created').all().map((r) => JSON.parse((r as { body: string }).body));
    const first = repo.trainingSnapshot('cb_1')!;
    repo.addExamples({ id: 'cb_1', examples: examples('b', 'b'), customerId: null, now: now() });
    expect(publish(repo, first)).toBe(true); // more examples arrived meanwhile: still training, no callback
    expect(outbox()).toEqual([]);
    train(repo, 'cb_1');
    const v = repo.find('cb_1')!.currentVersionId;
    expect(outbox()).toMatchObject([{ classifier_id: 'cb_1', status: 'ready', version_id: v, explanation: null }]);
    expect(outbox()[0].retrained).toEqual(repo.find('cb_1')!.retrained);
    expect(outbox()[0].delivery_id).toMatch(/^[0-9a-f-]{36}$/);

    repo.addExamples({ id: 'cb_1', examples: examples('c', 'c'), customerId: null, now: now() });
    repo.markFailed('cb_1', repo.find('cb_1')!.generation, 'no readable image', now());
    expect(outbox()[1]).toMatchObject({ status: 'failed', version_id: v, explanation: 'no readable image' });

    // Without a callback URL nothing is recorded; deleting the classifier drops what waits.
    repo.setCallbackUrl('cb_1', null, now());
    repo.addExamples({ id: 'cb_1', examples: examples('d', 'd'), customerId: null, now: now() });
    train(repo, 'cb_1');
    expect(outbox()).toHaveLength(2);
    repo.delete('cb_1');
    expect(outbox()).toHaveLength(0);
  });
});

describe('the versions migration', () => {
  it('records, for versions trained before it, the examples each trained on and a trained event', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'versions-migration-'));
    const file = path.join(dir, 'service.sqlite');
    try {
      // Build the state an older release left: two versions, no side tables.
      let db = openDatabase(file);
      const repo = new ClassifierRepository(db);
      repo.create({ id: 'old_1', ownerId: 'alice', name: 'old', examples: examples('a', 'a'), customerId: null, now: now() });
      train(repo, 'old_1');
      repo.addExamples({ id: 'old_1', examples: examples('b', 'b'), customerId: null, now: now() });
      train(repo, 'old_1');
      const [v1, v2] = repo.listVersions('old_1').map((v) => v.id);
      const schema = db.pragma('user_version', { simple: true }) as number;
      // The versions migration and the one after it (examples.entry_name) are undone.
      db.exec(`DROP TABLE version_examples; DROP TABLE retired_examples; DROP TABLE version_events; DROP TABLE pruned_versions;
               DROP TABLE version_leases; DROP TABLE classifier_callbacks; DROP TABLE callback_secrets; DROP TABLE callback_outbox;
               ALTER TABLE examples DROP COLUMN entry_name;`);
      db.pragma(`user_version = ${schema - 2}`);
      db.close();

      db = openDatabase(file);
      try {
        const migrated = new ClassifierRepository(db);
        expect(migrated.listVersionEvents('old_1').map((e) => [e.cause, e.versionId, e.previousVersionId])).toEqual([
          ['trained', v1, null],
          ['trained', v2, v1],
        ]);
        // Activating the first version brings back exactly its examples.
        migrated.activateVersion({ classifierId: 'old_1', versionId: v1, discardPending: false, now: now() });
        expect(migrated.trainingSnapshot('old_1')!.examples.map((e) => e.className)).toEqual(['a', 'a', 'a']);
        expect(migrated.find('old_1')!.classes).toEqual(['a']);
      } finally {
        db.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
