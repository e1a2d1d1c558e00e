import fs from 'node:fs';
import path from 'node:path';

/**
 * A fresh clone has nothing beside it: no file of the project may read the `shared` folder that sits
 * beside the developers' checkouts (what the tests need from outside comes from a documented variable,
 * e.g. COREML_SPEC_DIR). Only `.ci/run`, which CI runs with that folder beside the clone, may name it.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const FOLDERS = ['src', 'test', 'bench', 'scripts', 'workers', 'fixtures', 'console'];
/** The folder `shared` one level up, as a path (either slash) or as path segments; escaped, so this file does not match itself. */
const SHARED_BESIDE = [/\.\.[\\/]shared\b/, /['"`]\.\.['"`],\s*['"`]shared['"`]/];

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : filesUnder(full);
    return entry.isFile() ? [full] : [];
  });
}

describe('the repository is self-contained', () => {
  it('no file under src/, test/, bench/, scripts/, workers/, fixtures/ or console/, nor at the top level, names the shared folder beside the clone', () => {
    const topLevel = fs
      .readdirSync(ROOT, { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => path.join(ROOT, e.name));
    const files = [
      ...topLevel,
      ...FOLDERS.filter((f) => fs.existsSync(path.join(ROOT, f))).flatMap((f) => filesUnder(path.join(ROOT, f))),
    ];
    // The walk found the project (this file and the README among them), so an empty list below says something.
    expect(files).toEqual(expect.arrayContaining([__filename, path.join(ROOT, 'README.md')]));

    const naming = files.filter((file) => {
      const text = fs.readFileSync(file, 'latin1');
      return SHARED_BESIDE.some((pattern) => pattern.test(text));
    });
    expect(naming.map((file) => path.relative(ROOT, file))).toEqual([]);
  });
});
