import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { OpenApiContract } from '../support/openapi-contract';
import { ALICE_KEY, bootService, VERSION, type TestService } from '../support/service-harness';

const VALIDATOR_CLI = path.join(
  path.dirname(require.resolve('@seriousme/openapi-schema-validator/package.json')),
  'bin',
  'validate-api-cli.js',
);

describe('the OpenAPI document and the docs page', () => {
  let t: TestService;
  let document: any;

  beforeAll(async () => {
    t = await bootService({ START_WORKER: 'false' });
    const res = await t.call('GET', '/v3/openapi.json', { key: null });
    expect(res.status).toBe(200);
    document = res.body;
  });
  afterAll(async () => {
    await t?.close();
  });

  it('is a valid OpenAPI 3.1 document (@seriousme/openapi-schema-validator)', async () => {
    expect(document.openapi).toBe('3.1.0');
    const file = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'wvr-openapi-')), 'openapi.json');
    await fs.writeFile(file, JSON.stringify(document));
    try {
      // The validator is an ES module: run its CLI rather than load it into jest's CommonJS.
      const { stdout } = await promisify(execFile)(process.execPath, [VALIDATOR_CLI, file]);
      expect(JSON.parse(stdout)).toEqual({ valid: true });
    } finally {
      await fs.rm(path.dirname(file), { recursive: true, force: true });
    }
  });

  it('covers every endpoint of the contract and the extensions, with their statuses', () => {
    const statuses = (method: string, p: string) => Object.keys(document.paths[p]?.[method]?.responses ?? {}).sort();
    expect(statuses('post', '/v3/classifiers')).toEqual([
      '200',
      '400',
      '401',
      '413',
      '415',
      '429',
      '500',
      '503',
      '507',
    ]);
    expect(statuses('get', '/v3/classifiers')).toEqual(['200', '400', '401', '500']);
    expect(statuses('get', '/v3/classifiers/{classifier_id}')).toEqual(['200', '400', '401', '404', '500']);
    expect(statuses('post', '/v3/classifiers/{classifier_id}')).toEqual([
      '200',
      '400',
      '401',
      '404',
      '413',
      '415',
      '429',
      '500',
      '503',
      '507',
    ]);
    expect(statuses('delete', '/v3/classifiers/{classifier_id}')).toEqual(['200', '400', '401', '404', '500']);
    for (const model of ['core_ml_model', 'onnx_model']) {
      expect(statuses('get', `/v3/classifiers/{classifier_id}/${model}`)).toEqual([
        '200',
        '400',
        '401',
        '404',
        '409',
        '410',
        '500',
        '501',
      ]);
    }
    expect(statuses('get', '/v3/classifiers/{classifier_id}/versions')).toEqual(['200', '400', '401', '404', '500']);
    expect(statuses('post', '/v3/classifiers/{classifier_id}/versions/{version_id}/activate')).toEqual([
      '200',
      '400',
      '401',
      '404',
      '410',
      '429',
      '500',
    ]);
    // Issue 23: a classifier's examples.
    expect(statuses('get', '/v3/classifiers/{classifier_id}/examples')).toEqual(['200', '400', '401', '404', '500']);
    expect(statuses('get', '/v3/classifiers/{classifier_id}/examples/mistakes')).toEqual([
      '200',
      '400',
      '401',
      '404',
      '500',
    ]);
    expect(statuses('get', '/v3/classifiers/{classifier_id}/examples/{example_id}/thumbnail')).toEqual([
      '200',
      '304',
      '400',
      '401',
      '404',
      '500',
    ]);
    for (const [method, p] of [
      ['post', '/v3/classifiers/{classifier_id}/examples/changes'],
      ['post', '/v3/classifiers/{classifier_id}/examples/{example_id}/move'],
    ])
      expect(statuses(method, p)).toEqual(['200', '400', '401', '404', '429', '500']);
    expect(statuses('delete', '/v3/classifiers/{classifier_id}/examples/{example_id}')).toEqual([
      '200',
      '400',
      '401',
      '404',
      '500',
    ]);
    expect(statuses('get', '/v3/callback_secret')).toEqual(['200', '400', '401', '500']);
    expect(statuses('post', '/v3/callback_secret')).toEqual(['200', '400', '401', '429', '500']);
    expect(statuses('post', '/v3/classify')).toEqual(['200', '400', '401', '413', '415', '429', '500', '507']);
    expect(statuses('get', '/v3/classify')).toEqual(['200', '400', '401', '429', '500']);
    expect(statuses('delete', '/v3/user_data')).toEqual(['202', '400', '401', '500', '507']);
    expect(statuses('post', '/identity/token')).toEqual(['200', '400', '401', '413', '500']);
    for (const p of ['/health', '/healthz', '/metrics', '/v3/openapi.json'])
      expect(statuses('get', p)).toEqual(['200', '500']);
    expect(statuses('get', '/readyz')).toEqual(['200', '500', '503']);

    const schemas = document.components.schemas;
    expect(Object.keys(schemas.Classifier.properties).sort()).toEqual([
      'callback_url',
      'classes',
      'classifier_id',
      'core_ml_enabled',
      'created',
      'evaluation',
      'explanation',
      'name',
      'owner',
      'retrained',
      'status',
      'training_progress',
      'updated',
      'upload',
    ]);
    expect(schemas.Classifier.properties.status.enum).toEqual(['ready', 'training', 'retraining', 'failed']);
    expect(Object.keys(schemas.ClassifyResponse.properties).sort()).toEqual([
      'custom_classes',
      'images',
      'images_processed',
      'warnings',
    ]);
    expect(Object.keys(schemas.ClassifiedImage.properties).sort()).toEqual([
      'classifiers',
      'error',
      'image',
      'resolved_url',
      'source_url',
    ]);
    expect(schemas.Error.required.sort()).toEqual(['code', 'error']);

    // Request parameters come from the schemas that validate them.
    const params = (method: string, p: string) =>
      document.paths[p][method].parameters.map((x: { name: string }) => x.name).sort();
    expect(params('get', '/v3/classify')).toEqual([
      'classifier_ids',
      'owners',
      'parameters',
      'threshold',
      'url',
      'version',
    ]);
    expect(params('delete', '/v3/user_data')).toEqual(['customer_id', 'version']);
    expect(params('get', '/v3/classifiers')).toEqual(['verbose', 'version']);
    const createForm = document.paths['/v3/classifiers'].post.requestBody.content['multipart/form-data'].schema;
    expect(createForm.required).toEqual(['name']);
    expect(Object.keys(createForm.patternProperties)).toEqual(['^.+_positive_examples$']);
    expect(document.paths['/v3/classifiers'].get.security).toEqual([{ basicAuth: [] }, { bearerAuth: [] }]);
    expect(document.paths['/v3/openapi.json'].get.security).toEqual([]);
  });

  it('says what DELETE /v3/user_data does and cannot do, and how data is labelled (issue 21)', async () => {
    const deletion = document.paths['/v3/user_data'].delete;
    const text = `${deletion.description} ${deletion.responses['202'].description}`;
    for (const promise of [
      /X-Watson-Metadata/,
      /version.*trained on/,
      /embedding/,
      /410/,
      /exported earlier.*(theirs|yours)/,
    ])
      expect(text).toMatch(promise);
    for (const [method, p] of [
      ['post', '/v3/classifiers'],
      ['post', '/v3/classifiers/{classifier_id}'],
    ]) {
      const header = document.paths[p][method].parameters.find((x: { in: string; name: string }) => x.in === 'header');
      expect(header.name).toBe('X-Watson-Metadata');
      expect(header.required ?? false).toBe(false);
      expect(header.description).toMatch(/customer_id=/);
    }
    expect(document.components.schemas.Classifier.properties.core_ml_enabled.description).not.toMatch(/always false/i);
    for (const model of ['core_ml_model', 'onnx_model']) {
      const responses = document.paths[`/v3/classifiers/{classifier_id}/${model}`].get.responses;
      expect(responses['410'].description).toMatch(/customer data/);
      expect(responses['501'].description).toMatch(/cannot express/);
    }
    const readme = await fs.readFile(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
    for (const needle of ['DELETE /v3/user_data', 'X-Watson-Metadata: customer_id=', '410'])
      expect(readme).toContain(needle);
  });

  it('holds no key and no path of this server', () => {
    const text = JSON.stringify(document);
    expect(text).not.toContain(ALICE_KEY);
    expect(text).not.toContain(t.dataDir);
  });

  it('catches answers it does not document (the check every component test runs)', async () => {
    const contract = new OpenApiContract(document);
    expect(
      contract.problems('GET', `/v3/classifiers?${VERSION}`, 200, 'application/json', { classifiers: [] }),
    ).toEqual([]);
    expect(
      contract.problems('GET', `/v3/classifiers?${VERSION}`, 418, 'application/json', { code: 418, error: 'x' })[0],
    ).toMatch(/status 418 is not documented/);
    expect(
      contract.problems('GET', `/v3/classifiers/x_1?${VERSION}`, 200, 'application/json', { classifier_id: 'x_1' })[0],
    ).toMatch(/does not match its schema/);
    expect(contract.problems('GET', '/nowhere', 200, 'application/json', {})[0]).toMatch(/not in the OpenAPI document/);
    expect(contract.problems('GET', '/nowhere', 404, 'application/json', { code: 404, error: 'no' })).toEqual([]);
    expect(contract.problems('DELETE', `/v3/user_data?${VERSION}`, 202, null, '')).toEqual([]);
  });

  it('documents the token exchange as it answers (the harness checks the bodies)', async () => {
    const form = (apikey: string) => ({
      body: new URLSearchParams({ grant_type: 'urn:ibm:params:oauth:grant-type:apikey', apikey }).toString(),
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      key: null,
    });
    const token = await t.call('POST', '/identity/token', form(ALICE_KEY));
    expect(token.status).toBe(200);
    expect(token.body.token_type).toBe('Bearer');
    expect((await t.call('POST', '/identity/token', form('not-a-key-at-all'))).status).toBe(401);
    expect((await t.call('POST', '/identity/token', { ...form(ALICE_KEY), body: 'grant_type=password' })).status).toBe(
      400,
    );
    const bearer = await t.call('GET', `/v3/classifiers?${VERSION}`, {
      key: null,
      headers: { Authorization: `Bearer ${token.body.access_token}` },
    });
    expect(bearer).toEqual({ status: 200, body: { classifiers: [] } });
  });

  it('serves interactive docs from the package, offline, under a CSP that allows this origin only', async () => {
    const page = await fetch(`${t.url}/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toMatch(/https?:|\*/);
    const html = await page.text();
    const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(assets.length).toBeGreaterThanOrEqual(3);
    for (const asset of assets) {
      expect(asset).toMatch(/^\/docs\//); // nothing from another origin
      expect((await fetch(`${t.url}${asset}`)).status).toBe(200);
    }
    expect(await (await fetch(`${t.url}/docs/init.js`)).text()).toContain("url: '/v3/openapi.json'");
    // Only the files the page needs, not the package's demo pages.
    expect((await fetch(`${t.url}/docs/index.html`)).status).toBe(404);
  });
});
