// The training worker's executable (`npm run worker`, and the child `npm start` supervises); the
// process itself is src/processes/training-worker.ts.
// First import: lowers this process's priority before sharp and onnxruntime start their threads.
import '../src/processes/lower-priority';
import { exitAfterFailedStart } from '../src/processes/start-failure';
import { runTrainingWorker } from '../src/processes/training-worker';

runTrainingWorker().catch((err) =>
  exitAfterFailedStart(err, 'training worker failed to start:', 'training worker failed to start: '),
);
