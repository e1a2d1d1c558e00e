import * as ort from 'onnxruntime-node';

/**
 * Sessions for this module's small graphs, one per graph and thread count,
 * created once and shared: they hold no state between runs and onnxruntime
 * allows concurrent runs on one session.
 */
const sessions = new Map<string, Promise<ort.InferenceSession>>();

export function cachedSession(graph: string, threads: number, build: () => Uint8Array): Promise<ort.InferenceSession> {
  if (!Number.isInteger(threads) || threads < 1)
    throw new RangeError(`threads must be a positive integer, got ${threads}`);
  const key = `${graph}/${threads}`;
  let session = sessions.get(key);
  if (!session) {
    session = ort.InferenceSession.create(build(), {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      // Idle intra-op threads sleep instead of spinning: between runs the trainer works in JavaScript
      // (L-BFGS steps, batches), and a spinning thread takes one of a 2-core machine's cores from it.
      // bench:train n10000 (load 3–4): 6.5–6.9 → 5.3–5.4 CPU s, 4.7–5.5 → 3.4–3.5 s wall.
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    });
    // A failed creation must not be cached.
    session.catch(() => sessions.delete(key));
    sessions.set(key, session);
  }
  return session;
}
