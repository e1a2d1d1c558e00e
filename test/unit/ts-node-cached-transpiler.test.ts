import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ts from 'typescript';

/**
 * The transpile cache of the processes tests start from source (test/support/ts-node-cached-transpiler.js): the
 * same output as TypeScript's transpileModule, from the cache once a source was seen, afresh when the source
 * changes, and syntax errors reported, never cached. And ts-node finds it through test/tsconfig.ts-node.json.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const { create } = require('../support/ts-node-cached-transpiler.js');
const compilerOptions = ts.parseJsonConfigFileContent(
  ts.readConfigFile(path.join(ROOT, 'tsconfig.json'), ts.sys.readFile).config,
  ts.sys,
  ROOT,
).options;

describe('the tests’ ts-node transpile cache', () => {
  let cacheDir: string;
  beforeEach(() => {
    cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ts-cache-test-'));
  });
  afterEach(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

  const transpiler = () =>
    create({ service: { config: { options: compilerOptions }, projectLocalResolveHelper: require.resolve }, cacheDir });
  const fileName = path.join(ROOT, 'src', 'example.ts');
  const source = "import path from 'node:path';\nexport const n: number = path.sep.length;\n";

  it('gives transpileModule’s output, then the cached entry, and transpiles an edited source afresh', () => {
    const expected = ts.transpileModule(source, { fileName, compilerOptions });
    const first = transpiler().transpile(source, { fileName });
    expect(first).toEqual({ outputText: expected.outputText, sourceMapText: expected.sourceMapText });
    const [entry] = fs.readdirSync(cacheDir);
    // A second process reads the entry: marked, so a read shows it came from the cache.
    const cached = JSON.parse(fs.readFileSync(path.join(cacheDir, entry), 'utf8'));
    fs.writeFileSync(path.join(cacheDir, entry), JSON.stringify({ ...cached, outputText: `${cached.outputText}//c` }));
    expect(transpiler().transpile(source, { fileName }).outputText).toBe(`${expected.outputText}//c`);

    const edited = source.replace('length', 'length + 1');
    expect(transpiler().transpile(edited, { fileName }).outputText).toContain('length + 1');
    expect(fs.readdirSync(cacheDir)).toHaveLength(2);
  });

  it('hands syntax errors to ts-node and caches nothing', () => {
    const result = transpiler().transpile('export const = ;', { fileName });
    expect(result.diagnostics.length).toBeGreaterThan(0);
    expect(fs.readdirSync(cacheDir)).toEqual([]);
  });

  it('is what ts-node uses with TS_NODE_PROJECT=test/tsconfig.ts-node.json', () => {
    const out = execFileSync(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        '-e',
        "const tsNode = require('ts-node'); console.log(process[tsNode.REGISTER_INSTANCE].options.transpiler)",
      ],
      { cwd: ROOT, env: { ...process.env, TS_NODE_PROJECT: path.join(ROOT, 'test', 'tsconfig.ts-node.json') } },
    ).toString();
    expect(out).toContain('ts-node-cached-transpiler.js');
  });
});
