import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InferenceWorker } from '../../src/ml/inference-worker';
import { OnnxGraphBuilder } from '../../src/ml/onnx/onnx-graph-builder';

/**
 * One model thread serves classify requests and bulk work (upload embedding in the API). A classify
 * must wait for at most the one background run in progress, not for every background run queued.
 */
describe('inference priority lanes', () => {
  let dir: string;
  let worker: InferenceWorker;

  beforeAll(async () => {
    // A graph heavy enough that each run takes a few milliseconds: Y = X·W, X [n, 512], W [512, 512].
    const g = new OnnxGraphBuilder('priority_probe');
    const x = g.input('X', ['n', 512]);
    const w = g.initializer({ name: 'W', dims: [512, 512], data: new Float32Array(512 * 512).fill(0.001) });
    g.node('MatMul', [x, w], {}, 'Y');
    g.output('Y', ['n', 512]);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wvr-priority-'));
    fs.writeFileSync(path.join(dir, 'probe.onnx'), g.toBuffer());
    worker = await InferenceWorker.create(path.join(dir, 'probe.onnx'), { intraOpNumThreads: 1 });
  });
  afterAll(async () => {
    await worker?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const input = () => ({ data: new Float32Array(64 * 512).fill(1), dims: [64, 512] });

  it('runs an interactive request before every background request still waiting', async () => {
    const finished: string[] = [];
    const track = (name: string, p: Promise<unknown>) => p.then(() => finished.push(name));
    const all = [
      track('background-1', worker.run('X', input(), ['Y'], 'background')),
      track('background-2', worker.run('X', input(), ['Y'], 'background')),
      track('background-3', worker.run('X', input(), ['Y'], 'background')),
      track('interactive-1', worker.run('X', input(), ['Y'], 'interactive')),
      track('interactive-2', worker.run('X', input(), ['Y'])),
    ];
    await Promise.all(all);
    // background-1 was already on the thread; both interactive requests overtake the rest, in order.
    expect(finished).toEqual(['background-1', 'interactive-1', 'interactive-2', 'background-2', 'background-3']);
  });

  it('still answers every request with its own result', async () => {
    const a = worker.run('X', { data: new Float32Array(512).fill(1), dims: [1, 512] }, ['Y'], 'background');
    const b = worker.run('X', { data: new Float32Array(512).fill(2), dims: [1, 512] }, ['Y']);
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.Y.data[0]).toBeCloseTo(0.512, 4);
    expect(rb.Y.data[0]).toBeCloseTo(1.024, 4);
  });
});
