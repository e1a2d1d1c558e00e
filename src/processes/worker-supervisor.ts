import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Logger } from '../logger';

const ROOT = path.resolve(__dirname, '..', '..');
// Compiled, this file is dist/src/processes/*.js and the worker's executable dist/workers/*.js;
// under ts-jest or ts-node it is the .ts source, and the worker runs through ts-node too.
const RUNNING_FROM_SOURCE = __filename.endsWith('.ts');
/** The time stop() gives a run to finish: a tutorial-sized training, not a 10,000-image one (which resumes after). */
const DEFAULT_STOP_GRACE_MS = 30_000;

/**
 * Runs the training worker as a child process and restarts it if it dies,
 * so a crashed worker's run is picked up again (BullMQ's stalled-job check).
 */
export class WorkerSupervisor {
  private child?: ChildProcess;
  private stopping = false;

  /**
   * @param stopGraceMs how long stop() lets the worker finish its current run before it kills it
   *   (ms). A killed run is not lost: its job's lock lapses and the next worker takes it up again,
   *   and the embeddings it computed are already in the cache.
   */
  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly logger: Logger,
    private readonly stopGraceMs = DEFAULT_STOP_GRACE_MS,
  ) {}

  /** Starts the worker and resolves once it reports ready. */
  start(): Promise<void> {
    this.stopping = false;
    const script = RUNNING_FROM_SOURCE
      ? path.join(ROOT, 'workers', 'training-worker.ts')
      : path.join(ROOT, 'workers', 'training-worker.js');
    const execArgv = RUNNING_FROM_SOURCE ? ['-r', 'ts-node/register/transpile-only'] : [];
    const child = fork(script, [], { env: this.env, execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child = child;
    return new Promise((resolve, reject) => {
      child.on('message', (m: { type?: string }) => {
        if (m?.type === 'ready') resolve();
      });
      child.once('exit', (code, signal) => {
        reject(new Error(`training worker exited before it was ready (code ${code}, signal ${signal})`));
        if (this.stopping || this.child !== child) return;
        this.logger.error({ code, signal }, 'training worker died; restarting it');
        setTimeout(() => {
          if (!this.stopping) this.start().catch((err) => this.logger.error({ err }, 'training worker restart failed'));
        }, 1000);
      });
    });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * Asks the worker to finish its current run and exit; kills it (SIGKILL) if it has not exited
   * after stopGraceMs, so a stuck or frozen worker never holds up the shutdown.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // A stopped process (SIGSTOP: a debugger, a frozen container) only acts on SIGTERM once continued.
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      this.logger.warn(
        { pid: child.pid, graceMs: this.stopGraceMs },
        'training worker did not stop in time; killing it',
      );
      child.kill('SIGKILL');
    }, this.stopGraceMs);
    await exited;
    clearTimeout(timer);
  }
}
