import crypto from 'node:crypto';
import VisualRecognitionV3 from 'ibm-watson/visual-recognition/v3';
import { BasicAuthenticator } from 'ibm-watson/auth';
import { ALICE_KEY, bootService, basicAuth } from '../support/service-harness';
import { classZip } from '../support/example-zips';

it('scratch: request limit with chunked SDK upload', async () => {
  const t = await bootService({ MAX_REQUEST_MB: '1', MAX_ZIP_MB: '1' });
  try {
    const c = new VisualRecognitionV3({ version: '2018-03-19', serviceUrl: t.url, authenticator: new BasicAuthenticator({ username: 'apikey', password: ALICE_KEY }) });
    const a = crypto.randomBytes(700_000), b = crypto.randomBytes(700_000);
    const r = await c.createClassifier({ name: 'x', positiveExamples: { a, b } }).then((x) => ({ status: x.status, body: x.result }), (e) => ({ status: e.status, body: e.body }));
    console.log('SDK chunked', r);
    const form = new FormData();
    form.append('name', 'x');
    form.append('a_positive_examples', new Blob([a]), 'a.zip');
    form.append('b_positive_examples', new Blob([b]), 'b.zip');
    const res = await fetch(`${t.url}/v3/classifiers?version=2018-03-19`, { method: 'POST', body: form, headers: { Authorization: basicAuth(ALICE_KEY) } });
    console.log('fetch with length', res.status, await res.text());
    const c3 = crypto.randomBytes(300_000);
    const r2 = await c.createClassifier({ name: 'x', positiveExamples: { a: await classZip('red-circles', 12, 1), b: await classZip('blue-squares', 12, 1) }, negativeExamples: c3 }).then((x) => ({ status: x.status, body: x.result }), (e) => ({ status: e.status, body: e.body }));
    console.log('SDK chunked small', r2);
    await new Promise((r) => setTimeout(r, 300));
    console.log('tmp files', require('fs').readdirSync(require('path').join(t.dataDir, 'tmp')));
    const z = await classZip('red-circles', 12, 1);
    console.log('zip size', z.length);
  } finally {
    await t.close();
  }
});
