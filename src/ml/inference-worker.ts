import fs from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { cutToOutputs } from './onnx/graph-cut';

/** A float tensor crossing the thread boundary. */
export interface WorkerTensor {
  data: Float32Array;
  dims: number[];
}

export interface InferenceWorkerOptions {
  intraOpNumThreads: number;
  /**
   * Output sets that runs often need alone (an embedding's taps without the heads after them). For
   * each, the model cut to those outputs is loaded beside the whole one, and a run asking for no
   * more than a cut's outputs runs the cut: ONNX Runtime computes every node of a graph whatever a
   * run fetches.
   */
  cuts?: string[][];
}

/**
 * The worker's whole program. onnxruntime-node's `run` is synchronous on the calling thread, so on
 * the main thread it would stall the event loop (HTTP requests, and the sharp decodes meant to
 * overlap inference) for the whole batch. Plain JavaScript evaluated in the worker, so it runs the
 * same under ts-node, jest and the compiled build; all pre- and post-processing stays in TypeScript.
 * Session 0 is the whole model, the others its cuts; one thread runs them one at a time.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortPath);
const message = (error) => (error && error.message) || String(error);
const options = {
  executionProviders: ['cpu'],
  intraOpNumThreads: workerData.intraOpNumThreads,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
  // Idle pool threads sleep instead of spinning: the spinning steals the cores sharp decodes on.
  extra: { session: { intra_op: { allow_spinning: '0' } } },
};
Promise.all([workerData.modelPath, ...workerData.cuts].map((model) => ort.InferenceSession.create(model, options))).then((sessions) => {
  parentPort.on('message', async (request) => {
    if (request.close) {
      for (const session of sessions) await session.release();
      parentPort.close();
      return;
    }
    try {
      const session = sessions[request.session];
      const results = await session.run({ [request.input]: new ort.Tensor('float32', request.data, request.dims) });
      const outputs = {};
      for (const name of request.outputs) outputs[name] = { data: results[name].data, dims: results[name].dims };
      for (const value of Object.values(results)) value.dispose();
      parentPort.postMessage({ id: request.id, outputs });
    } catch (error) {
      parentPort.postMessage({ id: request.id, error: message(error) });
    }
  });
  parentPort.postMessage({ ready: true, inputNames: sessions[0].inputNames, outputNames: sessions[0].outputNames });
}, (error) => parentPort.postMessage({ ready: false, error: message(error) }));
`;

type Reply =
  | { ready: true; inputNames: string[]; outputNames: string[] }
  | { ready: false; error: string }
  | { id: number; outputs: Record<string, WorkerTensor> }
  | { id: number; error: string };

/** Which requests go first on a model's thread: a person waiting (classify) or bulk work (uploads, training). */
export type InferencePriority = 'interactive' | 'background';

/** An ONNX Runtime session (CPU) living in its own thread. Requests run one after another. */
export class InferenceWorker {
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (outputs: Record<string, WorkerTensor>) => void; reject: (error: Error) => void }
  >();
  /**
   * Requests not yet handed to the thread, by lane. One request runs on the thread at a time and
   * the next is chosen only when it ends, so an interactive request (a classify) waits for at most
   * one background run (an upload's or a training's batch), never for a whole queue of them.
   */
  private readonly waiting: Record<InferencePriority, Array<() => void>> = { interactive: [], background: [] };
  private busy = false;
  private failure?: Error;

  private constructor(
    private readonly worker: Worker,
    readonly modelPath: string,
    readonly inputNames: string[],
    readonly outputNames: string[],
    private readonly cuts: string[][],
  ) {
    worker.on('message', (reply: Reply) => {
      if (!('id' in reply)) return;
      const request = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if ('error' in reply) request?.reject(new Error(`${modelPath}: inference failed: ${reply.error}`));
      else request?.resolve(reply.outputs);
      this.busy = false;
      this.startNext();
    });
    worker.on('error', (error) => this.fail(new Error(`${modelPath}: inference worker crashed: ${error.message}`)));
    worker.on('exit', (code) => this.fail(new Error(`${modelPath}: inference worker exited (code ${code})`)));
  }

  /** @throws MissingOutputsError when a cut names an output the model lacks */
  static async create(modelPath: string, options: InferenceWorkerOptions): Promise<InferenceWorker> {
    const cuts = options.cuts ?? [];
    const whole = cuts.length > 0 ? await fs.readFile(modelPath) : undefined;
    const cutModels = cuts.map((outputs) => cutToOutputs(whole!, outputs));
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      // Plain JavaScript needs none of the process's preloads: under ts-node (`-r ts-node/register`, as the
      // worker process runs from source) each thread would load ts-node again, ~0.6 s of CPU per thread at start.
      execArgv: [],
      workerData: {
        ortPath: require.resolve('onnxruntime-node'),
        modelPath,
        cuts: cutModels,
        intraOpNumThreads: options.intraOpNumThreads,
      },
    });
    return new Promise((resolve, reject) => {
      const onExit = (code: number): void =>
        reject(new Error(`${modelPath}: inference worker exited (code ${code}) while loading the model`));
      worker.once('error', reject);
      worker.once('exit', onExit);
      worker.once('message', (reply: Reply) => {
        worker.off('error', reject);
        worker.off('exit', onExit);
        if ('ready' in reply && reply.ready) {
          resolve(new InferenceWorker(worker, modelPath, reply.inputNames, reply.outputNames, cuts));
        } else {
          void worker.terminate();
          reject(
            new Error(`${modelPath}: cannot load the model: ${'error' in reply ? reply.error : 'unexpected reply'}`),
          );
        }
      });
    });
  }

  /**
   * Runs the model on one float input; `input.data`'s buffer is handed to the worker (not copied).
   * Interactive requests go before every waiting background one (FIFO within a lane). The first cut
   * that yields every output asked for runs, else the whole model.
   */
  run(
    inputName: string,
    input: WorkerTensor,
    outputs: string[],
    priority: InferencePriority = 'interactive',
  ): Promise<Record<string, WorkerTensor>> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const session = this.cuts.findIndex((cut) => outputs.every((name) => cut.includes(name))) + 1;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.waiting[priority].push(() =>
        this.worker.postMessage({ id, session, input: inputName, data: input.data, dims: input.dims, outputs }, [
          input.data.buffer as ArrayBuffer,
        ]),
      );
      this.startNext();
    });
  }

  private startNext(): void {
    if (this.busy || this.failure) return;
    const send = this.waiting.interactive.shift() ?? this.waiting.background.shift();
    if (!send) return;
    this.busy = true;
    send();
  }

  /** False once the session's thread crashed, exited or was closed. */
  get alive(): boolean {
    return this.failure === undefined;
  }

  async close(): Promise<void> {
    if (this.failure) return;
    this.failure = new Error(`${this.modelPath}: the embedder is closed`);
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage({ close: true });
    await exited;
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.waiting.interactive.length = 0;
    this.waiting.background.length = 0;
    for (const request of this.pending.values()) request.reject(error);
    this.pending.clear();
  }
}
