/**
 * Generates src/ml/imagenet/imagenet-classes.json: the 1000 ImageNet-1k classes in the
 * model zoo's logit order, each with its WordNet label and a Watson-style type_hierarchy.
 *
 *   npx ts-node --transpile-only scripts/generate-imagenet-hierarchy.ts
 *
 * Inputs (Debian packages, offline):
 * - darknet: /usr/share/darknet/data/imagenet.labels.list. Its first 1000 lines are the
 *   ILSVRC-2012 classes (devkit order), followed by the rest of ImageNet-21k. Sorted, they give
 *   the class-index order of the 1000 logits (n01440764 tench first … n15075141 toilet tissue last).
 * - wordnet-base: WordNet 3.0 data.noun (synsets and hypernym pointers; a wnid is 'n' + the
 *   8-digit synset offset) and cntlist.rev (how often each sense was tagged in the SemCor corpus).
 *
 * The hierarchy rule:
 * 1. Each class's path follows its FIRST hypernym ('@' or '@i') up to the root.
 * 2. Nodes in TOO_GENERIC (entity, object, whole, organism, artifact, instrumentality, …) are dropped.
 * 3. The most general remaining node (e.g. 'animal', 'device', 'food') and the class itself are always
 *    kept. While some class path is longer than MAX_DEPTH, the least familiar intermediate node on any
 *    over-long path (lowest SemCor tag count: 'chordate', 'placental' go before 'dog', 'car') is
 *    dropped from every path. Dropping is global, so the paths form one consistent tree: an ancestor
 *    always has the same path whichever class it is reached from. ImageNet classes that are ancestors
 *    of other classes are never dropped.
 * Names are WordNet's first lemma with '_' as ' '. Different synsets may share a name (the automobile
 * and the railway 'car'; two 'crane' and two 'maillot' classes): they stay distinct nodes.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The Debian files this reads (packages darknet and wordnet-base). */
export const IMAGENET_SOURCES = {
  darknetLabels: '/usr/share/darknet/data/imagenet.labels.list',
  wordnetDir: '/usr/share/wordnet',
};

const OUTPUT = join(__dirname, '..', 'src', 'ml', 'imagenet', 'imagenet-classes.json');
const IMAGENET_1K_COUNT = 1000;
const MAX_DEPTH = 6;
const MAX_GENERIC_DEPTH = 5;

/**
 * Top levels that say nothing about what is in a photo, by WordNet lemma (both senses of 'substance'
 * are children of 'matter'). Each must be an ancestor of some class within MAX_GENERIC_DEPTH levels of
 * the root (checked), so a name cannot silently drop a specific sense further down.
 */
const TOO_GENERIC = new Set([
  'entity',
  'physical_entity',
  'abstraction',
  'object',
  'whole',
  'living_thing',
  'organism',
  'artifact',
  'instrumentality',
  'matter',
  'solid',
  'substance',
  'part',
  'natural_object',
  'communication',
  'attribute',
]);

interface Synset {
  offset: string;
  lemmas: string[];
  /** Sense keys of the lemmas, to look up their tag counts. */
  senseKeys: string[];
  hypernyms: string[];
}

export interface ImagenetClassEntry {
  wnid: string;
  label: string;
  type_hierarchy: string;
}

function parseDataNoun(path: string): Map<string, Synset> {
  const synsets = new Map<string, Synset>();
  for (const line of readFileSync(path, 'latin1').split('\n')) {
    if (line === '' || line.startsWith('  ')) continue; // licence header lines start with two spaces
    const fields = line.split(' | ')[0].split(' ');
    const offset = fields[0];
    const lexFile = fields[1];
    const wordCount = parseInt(fields[3], 16);
    const lemmas: string[] = [];
    const senseKeys: string[] = [];
    for (let w = 0; w < wordCount; w += 1) {
      const lemma = fields[4 + 2 * w];
      const lexId = parseInt(fields[5 + 2 * w], 16);
      lemmas.push(lemma);
      senseKeys.push(`${lemma.toLowerCase()}%1:${lexFile}:${String(lexId).padStart(2, '0')}::`);
    }
    let cursor = 4 + 2 * wordCount;
    const pointerCount = parseInt(fields[cursor], 10);
    cursor += 1;
    const hypernyms: string[] = [];
    for (let p = 0; p < pointerCount; p += 1, cursor += 4) {
      const [symbol, target, pos] = fields.slice(cursor, cursor + 3);
      if ((symbol === '@' || symbol === '@i') && pos === 'n') hypernyms.push(target);
    }
    synsets.set(offset, { offset, lemmas, senseKeys, hypernyms });
  }
  return synsets;
}

function parseTagCounts(path: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of readFileSync(path, 'latin1').split('\n')) {
    const [senseKey, , count] = line.split(' ');
    if (senseKey && count) counts.set(senseKey, parseInt(count, 10));
  }
  return counts;
}

function readImagenet1kWnids(path: string): string[] {
  const wnids = readFileSync(path, 'utf8')
    .split('\n')
    .slice(0, IMAGENET_1K_COUNT)
    .map((l) => l.trim());
  const unique = new Set(wnids);
  if (unique.size !== IMAGENET_1K_COUNT || wnids.some((w) => !/^n\d{8}$/.test(w))) {
    throw new Error(`${path}: expected 1000 distinct wnids on its first 1000 lines`);
  }
  // The zoo's logits follow the sorted wnids.
  return [...unique].sort();
}

function readableLabel(synset: Synset): string {
  return synset.lemmas[0].replace(/_/g, ' ');
}

/** Root-first chain of synset offsets along first hypernyms, ending with the class itself. */
function firstHypernymChain(offset: string, synsets: Map<string, Synset>): string[] {
  const chain: string[] = [];
  for (let current: string | undefined = offset; current !== undefined;) {
    const synset = synsets.get(current);
    if (!synset) throw new Error(`data.noun has no synset ${current}`);
    if (chain.includes(current)) throw new Error(`hypernym cycle at ${current}`);
    chain.unshift(current);
    current = synset.hypernyms[0];
  }
  return chain;
}

/**
 * Offsets of the TOO_GENERIC names among the ancestors. Throws if a name matches nothing, or matches a
 * synset deeper than the top levels (it would then be dropping a meaningful, more specific sense).
 */
function resolveTooGeneric(chains: string[][], synsets: Map<string, Synset>): Set<string> {
  const offsets = new Set<string>();
  const matchedNames = new Set<string>();
  for (const chain of chains) {
    chain.forEach((offset, depth) => {
      const lemma = synsets.get(offset)!.lemmas[0];
      if (!TOO_GENERIC.has(lemma)) return;
      if (depth > MAX_GENERIC_DEPTH)
        throw new Error(`'${lemma}' (${offset}) is ${depth} levels below the root: not a top level`);
      offsets.add(offset);
      matchedNames.add(lemma);
    });
  }
  const unmatched = [...TOO_GENERIC].filter((name) => !matchedNames.has(name));
  if (unmatched.length > 0) throw new Error(`no class has these ancestors: ${unmatched.join(', ')}`);
  return offsets;
}

function buildImagenetClasses(
  wnids: string[],
  synsets: Map<string, Synset>,
  tagCounts: Map<string, number>,
): ImagenetClassEntry[] {
  const classOffsets = new Set(wnids.map((w) => w.slice(1)));
  const fullChains = wnids.map((wnid) => firstHypernymChain(wnid.slice(1), synsets));
  const tooGeneric = resolveTooGeneric(fullChains, synsets);
  const chains = fullChains.map((chain) => chain.filter((o) => !tooGeneric.has(o)));
  const familiarity = (offset: string): number =>
    synsets.get(offset)!.senseKeys.reduce((sum, key) => sum + (tagCounts.get(key) ?? 0), 0);

  const dropped = new Set<string>();
  const visible = (chain: string[]): string[] => chain.filter((o) => !dropped.has(o));
  // Intermediate nodes: neither a path's most general node nor an ImageNet class.
  const droppable = (chain: string[]): string[] =>
    visible(chain)
      .slice(1)
      .filter((o) => !classOffsets.has(o));
  for (;;) {
    const overLong = chains.filter((chain) => visible(chain).length > MAX_DEPTH);
    if (overLong.length === 0) break;
    const candidates = [...new Set(overLong.flatMap(droppable))];
    if (candidates.length === 0) throw new Error('a class path cannot be shortened to the maximum depth');
    // Least familiar first; ties broken by offset so the output is deterministic.
    candidates.sort((a, b) => familiarity(a) - familiarity(b) || b.localeCompare(a));
    dropped.add(candidates[0]);
  }

  return wnids.map((wnid, index) => {
    const path = visible(chains[index]).map((o) => readableLabel(synsets.get(o)!));
    if (path.some((segment) => segment.includes('/'))) throw new Error(`${wnid}: a label contains '/'`);
    return { wnid, label: readableLabel(synsets.get(wnid.slice(1))!), type_hierarchy: `/${path.join('/')}` };
  });
}

/** Reads the Debian sources and builds the class list; also used by the test that checks the committed file. */
export function generateImagenetClasses(sources = IMAGENET_SOURCES): ImagenetClassEntry[] {
  const wnids = readImagenet1kWnids(sources.darknetLabels);
  const synsets = parseDataNoun(join(sources.wordnetDir, 'data.noun'));
  const tagCounts = parseTagCounts(join(sources.wordnetDir, 'cntlist.rev'));
  return buildImagenetClasses(wnids, synsets, tagCounts);
}

/** The file's text: one class per line, so a change of rule gives a readable diff. */
export function formatImagenetClasses(classes: ImagenetClassEntry[]): string {
  return `[\n${classes.map((c) => `  ${JSON.stringify(c)}`).join(',\n')}\n]\n`;
}

function main(): void {
  const classes = generateImagenetClasses();
  writeFileSync(OUTPUT, formatImagenetClasses(classes));
  const depths = classes.map((c) => c.type_hierarchy.split('/').length - 1);
  const tops = new Set(classes.map((c) => c.type_hierarchy.split('/')[1]));
  console.log(`wrote ${classes.length} classes to ${OUTPUT}`);
  console.log(
    `path depth ${Math.min(...depths)}..${Math.max(...depths)}; ${tops.size} top-level categories: ${[...tops].sort().join(', ')}`,
  );
}

if (require.main === module) main();
