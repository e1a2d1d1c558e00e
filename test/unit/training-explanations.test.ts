import { trainClassifier, TrainingDataError, type TrainingContext } from '../../src/domain/train-classifier';
import type { TrainingSnapshot } from '../../src/data-access/db/classifier-repository';

/** A training run over `snapshot` with every image's embedding cached; returns the explanation recorded. */
async function explanationOf(snapshot: Omit<TrainingSnapshot, 'classifier'> & { classes: string[] }): Promise<string> {
  const recorded: string[] = [];
  const ctx = {
    classifiers: {
      trainingSnapshot: async () => ({
        classifier: { id: 'k_1', classes: snapshot.classes, generation: 2, trainedGeneration: 1 },
        examples: snapshot.examples,
      }),
      latestUploadReport: async () => undefined,
    },
    versions: {
      markFailed: async (_id: string, _generation: number, explanation: string) => {
        recorded.push(explanation);
        return { recorded: true, removedHeadFiles: [] };
      },
    },
    // No kept zip waits for extraction: the images are in the store.
    pendingZips: { ofClassifier: async () => [] },
    cache: { getMany: async (hashes: string[]) => new Map(hashes.map((h) => [h, new Float32Array([1, 0])])) },
    embedder: { packKey: 'p@1' },
    now: () => '2026-01-01T00:00:00.000Z',
  } as unknown as TrainingContext;
  await expect(trainClassifier(ctx, 'k_1', { finalAttempt: true })).rejects.toBeInstanceOf(TrainingDataError);
  expect(recorded).toHaveLength(1);
  return recorded[0];
}

describe('training explanations', () => {
  const example = (id: number, className: string | null) => ({
    id,
    className,
    imageHash: `${id}`.padStart(64, '0'),
    entryName: `${className}/${id}.jpg`,
  });

  it('finding 4: a class with no example left says so and what to send, never an empty list', async () => {
    const explanation = await explanationOf({
      classes: ['cars', 'leopard'],
      examples: [example(1, 'cars'), example(2, null)],
    });
    expect(explanation).not.toContain('()');
    expect(explanation).toMatch(/'leopard' has no example images/);
    expect(explanation).toMatch(/POST \/v3\/classifiers\/k_1/);
  });
});
