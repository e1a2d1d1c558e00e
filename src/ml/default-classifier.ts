import { BUNDLED_IMAGENET_CLASSES, type ImagenetClass } from './imagenet/imagenet-labels';
import type { BuiltinClass } from './types';

export { loadImagenetClasses, type ImagenetClass } from './imagenet/imagenet-labels';

/**
 * Attach to `default` results when no object source is available (neither the object detector nor the
 * ImageNet pack), so the client learns why objects are absent.
 */
export const DEFAULT_MISSING_OBJECTS_WARNING =
  'The default classifier returned colour classes only: naming objects (dog, car, person, …) needs the optional ' +
  'ImageNet model pack, which is not installed on this server. An operator installs it once with `npm run models:fetch` ' +
  '(downloads about 13.5 MB) and restarts the service.';

export interface DefaultClassifierInput {
  colors: BuiltinClass[];
  /** The ImageNet pack's 1000 logits for the image; absent when the pack is not installed. */
  imagenetLogits?: Float32Array;
  /** The object detector's COCO classes and their supercategories for the image (see objectClasses). */
  objects?: BuiltinClass[];
}

/**
 * The classes of Watson's `default` classifier for one image: the colour classes, the detected objects
 * when given, plus, when ImageNet logits are given, every ImageNet class and every ancestor in their
 * type_hierarchy. The 1000 ImageNet classes are mutually exclusive (softmax), so an ancestor's score is
 * the sum of its descendants' probabilities: the probability that the photo shows any kind of it. That
 * is at least its best child's score and at least the noisy-OR 1 - Π(1 - child). Each class name
 * appears once (the higher score wins when two nodes share a name, like the bird and the machine
 * 'crane', or when the detector and ImageNet both name a 'dog'), sorted by score, highest first.
 */
export function defaultClasses(
  input: DefaultClassifierInput,
  labels: readonly ImagenetClass[] = BUNDLED_IMAGENET_CLASSES,
): BuiltinClass[] {
  const candidates = [...input.colors, ...(input.objects ?? [])];
  if (input.imagenetLogits) candidates.push(...hierarchyClasses(softmax(input.imagenetLogits, labels.length), labels));

  const byName = new Map<string, BuiltinClass>();
  for (const candidate of candidates) {
    const kept = byName.get(candidate.class);
    if (!kept || candidate.score > kept.score) byName.set(candidate.class, candidate);
  }
  return [...byName.values()].sort((a, b) => b.score - a.score || (a.class < b.class ? -1 : a.class > b.class ? 1 : 0));
}

interface HierarchyNode {
  path: string;
  label: string;
}

interface Hierarchy {
  nodes: HierarchyNode[];
  /** For each class index, the indices of its own node and of all its ancestors' nodes. */
  nodesOfClass: number[][];
}

const hierarchies = new WeakMap<readonly ImagenetClass[], Hierarchy>();

/** Every node of the classes' hierarchy, once, and which nodes each class counts towards. */
function hierarchyOf(labels: readonly ImagenetClass[]): Hierarchy {
  const cached = hierarchies.get(labels);
  if (cached) return cached;
  const nodes: HierarchyNode[] = [];
  const nodeIndex = new Map<string, number>();
  const nodesOfClass = labels.map(({ type_hierarchy }) => {
    const segments = type_hierarchy.split('/').slice(1);
    return segments.map((label, depth) => {
      const path = `/${segments.slice(0, depth + 1).join('/')}`;
      let index = nodeIndex.get(path);
      if (index === undefined) {
        index = nodes.push({ path, label }) - 1;
        nodeIndex.set(path, index);
      }
      return index;
    });
  });
  const hierarchy = { nodes, nodesOfClass };
  hierarchies.set(labels, hierarchy);
  return hierarchy;
}

function hierarchyClasses(probabilities: Float64Array, labels: readonly ImagenetClass[]): BuiltinClass[] {
  const { nodes, nodesOfClass } = hierarchyOf(labels);
  const scores = new Float64Array(nodes.length);
  nodesOfClass.forEach((nodeIndices, classIndex) => {
    for (const node of nodeIndices) scores[node] += probabilities[classIndex];
  });
  // Rounding can push a sum a hair above 1.
  return nodes.map((node, i) => ({ class: node.label, score: Math.min(1, scores[i]), type_hierarchy: node.path }));
}

function softmax(logits: Float32Array, classCount: number): Float64Array {
  if (logits.length !== classCount) {
    throw new RangeError(`ImageNet logits have ${logits.length} values but the class list has ${classCount} classes`);
  }
  const max = logits.reduce((m, v) => Math.max(m, v), -Infinity);
  const exps = Float64Array.from(logits, (v) => Math.exp(v - max));
  const sum = exps.reduce((s, v) => s + v, 0);
  return exps.map((v) => v / sum);
}
