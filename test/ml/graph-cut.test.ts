import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onnx } from 'onnx-proto';
import { InferenceWorker } from '../../src/ml/inference-worker';
import { cutToOutputs, MissingOutputsError } from '../../src/ml/onnx/graph-cut';
import { OnnxGraphBuilder } from '../../src/ml/onnx/onnx-graph-builder';

/**
 * Two branches from one input: A = relu(X·W), and B, which reshapes X to 7 values and so fails at run
 * time for any X of 4 values. A run that asks for A alone succeeds only if B's nodes are not run.
 */
function twoBranchModel(): Uint8Array {
  const g = new OnnxGraphBuilder('two_branches');
  const x = g.input('X', ['n', 4]);
  const w = g.initializer({ name: 'W', dims: [4, 2], data: Float32Array.of(1, -1, 2, -2, 3, -3, 4, -4) });
  g.node('Relu', [g.node('MatMul', [x, w])], {}, 'A');
  const seven = g.initializer({ name: 'seven', dims: [1], data: BigInt64Array.of(7n) });
  g.node('Neg', [g.node('Reshape', [x, seven])], {}, 'B');
  g.output('A', ['n', 2]);
  g.output('B', [7]);
  return g.toBuffer();
}

describe('cutToOutputs', () => {
  it('keeps only the nodes and weights the outputs depend on', () => {
    const cut = onnx.ModelProto.decode(cutToOutputs(twoBranchModel(), ['A']));
    expect(cut.graph!.node!.map((n) => n.opType)).toEqual(['MatMul', 'Relu']);
    expect(cut.graph!.initializer!.map((t) => t.name)).toEqual(['W']);
    expect(cut.graph!.output!.map((o) => o.name)).toEqual(['A']);
    expect(cut.graph!.input!.map((i) => i.name)).toEqual(['X']);
  });

  it('refuses an output the graph does not produce, naming it', () => {
    expect(() => cutToOutputs(twoBranchModel(), ['A', 'C'])).toThrow(MissingOutputsError);
    expect(() => cutToOutputs(twoBranchModel(), ['A', 'C'])).toThrow('the model has no output C');
  });
});

describe('an inference worker with a cut', () => {
  let dir: string;
  let worker: InferenceWorker;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-graph-cut-'));
    fs.writeFileSync(path.join(dir, 'two.onnx'), twoBranchModel());
    worker = await InferenceWorker.create(path.join(dir, 'two.onnx'), { intraOpNumThreads: 1, cuts: [['A']] });
  });
  afterAll(async () => {
    await worker?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const input = () => ({ data: Float32Array.of(1, 1, 1, 1), dims: [1, 4] });

  it('runs the cut when asked for its outputs only, and the whole model otherwise', async () => {
    const { A } = await worker.run('X', input(), ['A']);
    expect(Array.from(A.data)).toEqual([10, 0]);
    // The whole model runs B's reshape, which cannot succeed.
    await expect(worker.run('X', input(), ['A', 'B'])).rejects.toThrow('inference failed');
    expect(worker.outputNames).toEqual(['A', 'B']);
  });
});
