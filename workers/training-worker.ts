// The training worker's executable (`npm run worker`, and the child `npm start` supervises); the
// process itself is src/processes/training-worker.ts.
// First import: lowers this process's priority before sharp and onnxruntime start their threads.
import '../src/processes/lower-priority';
import { StartupError } from '../src/errors';
import { runTrainingWorker } from '../src/processes/training-worker';

runTrainingWorker().catch((err) => {
  if (err instanceof StartupError) {
    console.error(`training worker failed to start: ${err.message}`);
  } else {
    console.error('training worker failed to start:', err);
  }
  process.exit(1);
});
