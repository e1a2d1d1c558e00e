import fs from 'node:fs';

/** Bytes and count of the objects of one kind in a V8 heap snapshot. */
export interface HeapGroup {
  kind: string;
  count: number;
  bytes: number;
}

interface HeapSnapshotFile {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/**
 * A .heapsnapshot file (as `--heapsnapshot-signal` writes it) summed by kind: objects by constructor
 * name, native memory (ArrayBuffer backing stores: "system / JSArrayBufferData") by its name, and
 * strings, arrays, code and closures each as one kind. Self sizes: what each object holds itself.
 */
export function summariseHeapSnapshot(file: string): Map<string, HeapGroup> {
  const heap = JSON.parse(fs.readFileSync(file, 'utf8')) as HeapSnapshotFile;
  const fields = heap.snapshot.meta.node_fields;
  const types = heap.snapshot.meta.node_types[0];
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const groups = new Map<string, HeapGroup>();
  for (let i = 0; i < heap.nodes.length; i += fields.length) {
    const type = types[heap.nodes[i + typeAt]];
    const kind = type === 'object' || type === 'native' ? heap.strings[heap.nodes[i + nameAt]] : `(${type})`;
    const group = groups.get(kind) ?? { kind, count: 0, bytes: 0 };
    group.count++;
    group.bytes += heap.nodes[i + sizeAt];
    groups.set(kind, group);
  }
  return groups;
}

/** The kinds that grew most in bytes from one snapshot to another, largest growth first. */
export function heapGrowth(before: Map<string, HeapGroup>, after: Map<string, HeapGroup>, top = 10): HeapGroup[] {
  return [...after.values()]
    .map((group) => ({
      kind: group.kind,
      count: group.count - (before.get(group.kind)?.count ?? 0),
      bytes: group.bytes - (before.get(group.kind)?.bytes ?? 0),
    }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, top);
}
