import { sql } from 'kysely';
import { bootService, BOB_KEY, VERSION, waitForStatus, type TestService } from '../support/service-harness';
import { classZip, trainingForm } from '../support/example-zips';
import { classImages } from '../../fixtures/images';

/**
 * Issue 8, reproduction 1: a deleted classifier's version id was handed out again (an SQLite rowid)
 * and the head cache, keyed by that id alone, answered a new classifier of another owner with the
 * deleted one's classes and scores.
 */
describe('ids are never reused', () => {
  let t: TestService;
  let zips: { a: Buffer; b: Buffer };
  let probe: Buffer;

  beforeAll(async () => {
    t = await bootService({ OBJECT_DETECTION: 'false' });
    zips = { a: await classZip('red-circles', 10, 1), b: await classZip('blue-squares', 10, 2) };
    [probe] = await classImages('red-circles', 1, 99);
  });
  afterAll(async () => {
    await t?.close();
  });

  const classify = async (id: string, key?: string) => {
    const form = new FormData();
    form.append('images_file', new Blob([new Uint8Array(probe)]), 'probe.jpg');
    form.append('classifier_ids', id);
    form.append('threshold', '0');
    return t.call('POST', `/v3/classify?${VERSION}`, { body: form, key });
  };

  it("a new owner's classifier never answers with a deleted classifier's model", async () => {
    const alice = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm({ light_positive_examples: zips.a, dark_positive_examples: zips.b }, { name: 'shades' }),
    });
    expect(alice.status).toBe(200);
    await waitForStatus(t, alice.body.classifier_id, ['ready']);
    const aliceAnswer = await classify(alice.body.classifier_id);
    expect(aliceAnswer.body.images[0].classifiers[0].classes.map((c: { class: string }) => c.class).sort()).toEqual([
      'dark',
      'light',
    ]);
    const aliceVersion = (await t.call('GET', `/v3/classifiers/${alice.body.classifier_id}/versions?${VERSION}`)).body
      .current_version_id;
    expect((await t.call('DELETE', `/v3/classifiers/${alice.body.classifier_id}?${VERSION}`)).status).toBe(200);

    const bob = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      key: BOB_KEY,
      body: trainingForm({ bright_positive_examples: zips.a, dim_positive_examples: zips.b }, { name: 'shades' }),
    });
    expect(bob.status).toBe(200);
    const ready = await waitFor(bob.body.classifier_id);
    expect(ready.classes).toEqual([{ class: 'bright' }, { class: 'dim' }]);
    const bobVersion = (
      await t.call('GET', `/v3/classifiers/${bob.body.classifier_id}/versions?${VERSION}`, { key: BOB_KEY })
    ).body.current_version_id;
    expect(bobVersion).toBeGreaterThan(aliceVersion);

    const answer = await classify(bob.body.classifier_id, BOB_KEY);
    expect(answer.status).toBe(200);
    const classes = answer.body.images[0].classifiers[0].classes.map((c: { class: string }) => c.class).sort();
    expect(classes).toEqual(['bright', 'dim']);
  });

  async function waitFor(id: string) {
    const saved = t.call.bind(t);
    // waitForStatus polls with alice's key; bob's classifier needs bob's.
    return waitForStatus({ ...t, call: (m, p, init = {}) => saved(m, p, { ...init, key: BOB_KEY }) }, id, ['ready']);
  }

  it("answers a forged id (another owner's, a deleted one, one past the last) exactly like an unknown one, everywhere", async () => {
    const form = () =>
      trainingForm({ light_positive_examples: zips.a, dark_positive_examples: zips.b }, { name: 'forged' });
    const bobs = (await t.call('POST', `/v3/classifiers?${VERSION}`, { key: BOB_KEY, body: form() })).body
      .classifier_id as string;
    const gone = (await t.call('POST', `/v3/classifiers?${VERSION}`, { body: form() })).body.classifier_id as string;
    expect((await t.call('DELETE', `/v3/classifiers/${gone}?${VERSION}`)).status).toBe(200);
    const [stem, serial] = [gone.slice(0, gone.lastIndexOf('_')), Number(gone.slice(gone.lastIndexOf('_') + 1))];
    const forged = {
      otherOwner: bobs,
      deleted: gone,
      nextNumber: `${stem}_${serial + 1}`,
      unknown: 'no_such_classifier_42',
    };

    const requests: Array<[string, (id: string) => Promise<{ status: number; body: any }>]> = [
      ['GET', (id) => t.call('GET', `/v3/classifiers/${id}?${VERSION}`)],
      [
        'POST',
        (id) =>
          t.call('POST', `/v3/classifiers/${id}?${VERSION}`, {
            body: trainingForm({ more_positive_examples: zips.a }),
          }),
      ],
      ['DELETE', (id) => t.call('DELETE', `/v3/classifiers/${id}?${VERSION}`)],
      ['versions', (id) => t.call('GET', `/v3/classifiers/${id}/versions?${VERSION}`)],
      ['core_ml_model', (id) => t.call('GET', `/v3/classifiers/${id}/core_ml_model?${VERSION}`)],
      ['onnx_model', (id) => t.call('GET', `/v3/classifiers/${id}/onnx_model?version_id=1&${VERSION}`)],
      ['classify', (id) => classify(id)],
    ];
    for (const [endpoint, request] of requests) {
      const answers = new Map<string, string>();
      for (const [kind, id] of Object.entries(forged)) {
        const res = await request(id);
        answers.set(kind, JSON.stringify({ status: res.status, body: res.body }).split(id).join('<id>'));
      }
      const distinct = new Set(answers.values());
      expect({ endpoint, answers: distinct.size === 1 ? 'identical' : Object.fromEntries(answers) }).toEqual({
        endpoint,
        answers: 'identical',
      });
      expect(answers.get('unknown')).toMatch(endpoint === 'classify' ? /classifier_not_found/ : /"status":404/);
    }
    // Bob's classifier is untouched by alice's forged calls.
    expect((await t.call('GET', `/v3/classifiers/${bobs}?${VERSION}`, { key: BOB_KEY })).status).toBe(200);
  });

  it('keeps every version, example and key id unique after the largest row is deleted', async () => {
    const db = await t.openDatabase();
    try {
      if (db.dialect === 'sqlite') {
        for (const table of ['versions', 'examples', 'api_keys']) {
          const { rows } = await sql<{
            sql: string;
          }>`SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ${table}`.execute(db.kysely);
          expect(rows[0].sql).toMatch(/AUTOINCREMENT/i);
        }
      } else {
        // An identity column's sequence never goes back: a deleted largest id is not issued again.
        for (const table of ['versions', 'examples', 'api_keys']) {
          const { rows } = await sql<{
            is_identity: string;
          }>`SELECT is_identity FROM information_schema.columns WHERE table_name = ${table} AND column_name = 'id'`.execute(
            db.kysely,
          );
          expect(rows[0].is_identity).toBe('YES');
        }
      }
      // Every classifier id ever issued is remembered, deleted ones included, so none is issued twice.
      const count = async (table: 'issued_classifier_ids' | 'classifiers') =>
        Number(
          (
            await db.kysely
              .selectFrom(table)
              .select((eb) => eb.fn.countAll().as('n'))
              .executeTakeFirstOrThrow()
          ).n,
        );
      expect(await count('issued_classifier_ids')).toBeGreaterThan(await count('classifiers'));
    } finally {
      await db.close();
    }
  });
});
