import os from 'node:os';

/**
 * Training yields the CPU to serving: with a retrain running, classify latency on 2 cores stayed
 * within its targets only at a lower priority (bench:classify, p99 105 ms → 58 ms). Threads started
 * later (onnxruntime, libvips) inherit the niceness, which is why this runs before they load.
 */
const TRAINING_NICENESS = 10;

try {
  os.setPriority(0, Math.max(os.getPriority(0), TRAINING_NICENESS));
} catch {
  // Not permitted here (some containers): training then simply runs at normal priority.
}
