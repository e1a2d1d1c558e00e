// The training worker's executable (`npm run worker`, and the child `npm start` supervises); the
// process itself is src/processes/training-worker.ts.
// First import: lowers this process's priority before sharp and onnxruntime start their threads.
import '../src/processes/lower-priority';
import { runTrainingWorker } from '../src/processes/training-worker';

runTrainingWorker().catch((err) => {
  console.error(`training worker failed to start: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
});
