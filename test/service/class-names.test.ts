import { classZip, trainingForm } from '../support/example-zips';
import { ALICE_KEY, basicAuth, bootService, VERSION, type TestService } from '../support/service-harness';

const BOUNDARY = 'rfc2231-test-boundary';

/** A multipart body written byte for byte: each part's Content-Disposition parameters as a client sent them. */
function rawForm(parts: Array<{ disposition: string; body: Buffer | string }>): Buffer {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    const file = /filename/.test(part.disposition);
    chunks.push(
      Buffer.from(
        `--${BOUNDARY}\r\nContent-Disposition: form-data; ${part.disposition}\r\n${file ? 'Content-Type: application/zip\r\n' : ''}\r\n`,
      ),
      Buffer.from(part.body),
      Buffer.from('\r\n'),
    );
  }
  chunks.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(chunks);
}

/**
 * Class names as users' tools send them: field names in RFC 2231 form (name*=, as some HTTP
 * libraries write non-ASCII names), and classes whose names differ only in case.
 */
describe('class names', () => {
  let t: TestService;
  let zips: Buffer[];

  const post = async (pathAndQuery: string, body: Buffer) => {
    const res = await fetch(`${t.url}${pathAndQuery}`, {
      method: 'POST',
      body,
      headers: { Authorization: basicAuth(ALICE_KEY), 'Content-Type': `multipart/form-data; boundary=${BOUNDARY}` },
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const classes = (answer: { body: { classes?: Array<{ class: string }> } }) =>
    answer.body.classes?.map((c) => c.class).sort();

  beforeAll(async () => {
    t = await bootService({ START_WORKER: 'false' });
    zips = [
      await classZip('red-circles', 10, 251),
      await classZip('blue-squares', 10, 252),
      await classZip('green-stripes', 10, 253),
    ];
  });
  afterAll(async () => {
    await t?.close();
  });

  it("reads field names sent only as name*=utf-8''…, UTF-8 class and classifier names intact", async () => {
    const named = await post(
      `/v3/classifiers?${VERSION}`,
      rawForm([
        { disposition: "name*=utf-8''name", body: 'Mülltrennung' },
        { disposition: 'name*=utf-8\'\'M%C3%BCll_positive_examples; filename="muell.zip"', body: zips[0] },
        {
          disposition: "name*=UTF-8'de'Gr%C3%BCnglas_positive_examples; filename*=UTF-8''gr%C3%BCn.zip",
          body: zips[1],
        },
        { disposition: 'name="Papier_positive_examples"; filename="papier.zip"', body: zips[2] },
      ]),
    );
    expect(named.status).toBe(200);
    expect(named.body.name).toBe('Mülltrennung');
    expect(classes(named)).toEqual(['Grünglas', 'Müll', 'Papier']);
    expect(named.body.upload.files.map((f: { file: string }) => f.file).sort()).toEqual([
      'Grünglas_positive_examples',
      'Müll_positive_examples',
      'Papier_positive_examples',
    ]);
  });

  it('takes name* over the ASCII fallback name sent beside it', async () => {
    const answer = await post(
      `/v3/classifiers?${VERSION}`,
      rawForm([
        { disposition: 'name="name"', body: 'fallback' },
        {
          disposition: 'name="M?ll_positive_examples"; name*=UTF-8\'\'M%C3%BCll_positive_examples; filename="m.zip"',
          body: zips[0],
        },
        {
          disposition:
            'name*=iso-8859-1\'\'Gl%E4ser_positive_examples; name="Gl?ser_positive_examples"; filename="g.zip"',
          body: zips[1],
        },
      ]),
    );
    expect(answer.status).toBe(200);
    expect(classes(answer)).toEqual(['Gläser', 'Müll']);
  });

  it('refuses a field name in a charset it cannot read, saying how to send it', async () => {
    const answer = await post(
      `/v3/classifiers?${VERSION}`,
      rawForm([
        { disposition: 'name="name"', body: 'sjis' },
        { disposition: 'name*=shift_jis\'\'%82%A0_positive_examples; filename="a.zip"', body: zips[0] },
        { disposition: 'name="b_positive_examples"; filename="b.zip"', body: zips[1] },
      ]),
    );
    expect(answer).toEqual({
      status: 400,
      body: {
        code: 400,
        error:
          "A form field name sent in RFC 2231 form (name*=) could not be read: 'shift_jis''%82%A0_positive_examples' is not UTF-8 or ISO-8859-1 in the form charset'language'percent-encoded-name. Send field names as UTF-8, as name=\"Müll_positive_examples\" or name*=utf-8''M%C3%BCll_positive_examples.",
      },
    });
  });

  it("warns, on the answer, about a class whose name differs from another only in case, and keeps both (Watson's class names are case-sensitive)", async () => {
    const created = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        { circles_positive_examples: zips[0], squares_positive_examples: zips[1] },
        { name: 'shapes' },
      ),
    });
    expect(created.status).toBe(200);
    expect(created.body.warnings).toBeUndefined();

    const updated = await t.call('POST', `/v3/classifiers/${created.body.classifier_id}?${VERSION}`, {
      body: trainingForm({ Circles_positive_examples: zips[2] }),
    });
    expect(updated.status).toBe(200);
    expect(classes(updated)).toEqual(['Circles', 'circles', 'squares'].sort());
    expect(updated.body.warnings).toEqual([
      {
        warning_id: 'class_names_differ_only_in_case',
        description:
          "The classes 'Circles' and 'circles' differ only in case. Class names are case-sensitive, so they are two classes. If you meant one, spell it the same way in every <class>_positive_examples field.",
      },
    ]);
    // Watson's fields are untouched: the warning is one more field beside them.
    const polled = await t.call('GET', `/v3/classifiers/${created.body.classifier_id}?${VERSION}`);
    // (Both also carry the upload report, an extension that changes once training has decoded the images.)
    const { warnings, upload, ...watsonFields } = updated.body;
    const { upload: polledUpload, ...polledWatsonFields } = polled.body;
    expect(upload).toBeDefined();
    expect(polledUpload).toBeDefined();
    expect({ ...watsonFields, updated: polled.body.updated }).toEqual({
      ...polledWatsonFields,
      training_progress: watsonFields.training_progress,
    });

    const both = await t.call('POST', `/v3/classifiers?${VERSION}`, {
      body: trainingForm(
        { Müll_positive_examples: zips[0], MÜLL_positive_examples: zips[1], müll_positive_examples: zips[2] },
        { name: 'waste' },
      ),
    });
    expect(both.status).toBe(200);
    expect(both.body.warnings.map((w: { description: string }) => w.description.split('.')[0])).toEqual([
      "The classes 'Müll' and 'MÜLL' differ only in case",
      "The classes 'Müll' and 'müll' differ only in case",
      "The classes 'MÜLL' and 'müll' differ only in case",
    ]);
  });
});
