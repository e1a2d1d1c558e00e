import os from 'node:os';

/**
 * Training yields the CPU to serving: with a retrain running, classify latency on 2 cores stayed
 * within its targets only at a lower priority (bench:classify, p99 105 ms → 58 ms). Threads started
 * later (onnxruntime, libvips) inherit the niceness, which is why this runs before they load.
 * Relative to the API's own niceness, so a service started under `nice` keeps the gap.
 */
const TRAINING_NICENESS_STEP = 10;
const LOWEST_PRIORITY = 19;

try {
  os.setPriority(0, Math.min(LOWEST_PRIORITY, os.getPriority(0) + TRAINING_NICENESS_STEP));
} catch {
  // Not permitted here (some containers): training then simply runs at the API's priority.
}
