import { onnx } from 'onnx-proto';

/** Outputs asked of a graph that it does not produce. */
export class MissingOutputsError extends Error {
  constructor(readonly missing: string[]) {
    super(`the model has no output ${missing.join(', ')}`);
    this.name = 'MissingOutputsError';
  }
}

/**
 * The model cut to `outputs`: only the nodes those outputs depend on, and the weights those nodes
 * read. ONNX Runtime's inference builds run every node of a graph whatever outputs a call fetches
 * (partial execution exists in its training builds only), so a caller that needs part of a network
 * runs a graph holding only that part. The kept nodes are the same nodes with the same weights, so
 * they compute the same values.
 */
export function cutToOutputs(model: Uint8Array, outputs: readonly string[]): Uint8Array {
  const proto = onnx.ModelProto.decode(model);
  const graph = proto.graph;
  const declared = new Set((graph?.output ?? []).map((o) => o.name));
  const missing = outputs.filter((name) => !declared.has(name));
  if (!graph || missing.length > 0) throw new MissingOutputsError(graph ? missing : [...outputs]);

  const needed = new Set(outputs);
  const kept: onnx.INodeProto[] = [];
  // Nodes are stored in topological order: walking back, a node is needed once a later needed node reads one of its outputs.
  for (const node of [...(graph.node ?? [])].reverse()) {
    if (!(node.output ?? []).some((name) => needed.has(name))) continue;
    kept.push(node);
    for (const input of node.input ?? []) if (input) needed.add(input);
  }
  graph.node = kept.reverse();
  graph.output = (graph.output ?? []).filter((o) => outputs.includes(o.name ?? ''));
  const weights = new Set((graph.initializer ?? []).map((t) => t.name));
  graph.initializer = (graph.initializer ?? []).filter((t) => needed.has(t.name ?? ''));
  // The feeds stay the same; only inputs that name dropped weights (older IR versions list them) go.
  graph.input = (graph.input ?? []).filter((i) => needed.has(i.name ?? '') || !weights.has(i.name));
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => needed.has(v.name ?? ''));
  return onnx.ModelProto.encode(proto).finish();
}
