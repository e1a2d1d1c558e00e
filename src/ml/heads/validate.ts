import { HeadTrainingError } from './errors';
import type { TrainingSet } from './types';

/** Checks a training set and returns its embedding dimension; throws HeadTrainingError saying what to fix. */
export function validateTrainingSet(set: TrainingSet): number {
  const { classes, embeddings, positives } = set;
  if (classes.length === 0) throw new HeadTrainingError('no classes: a classifier needs at least one class');
  const seen = new Set<string>();
  for (const name of classes) {
    if (name.length === 0) throw new HeadTrainingError('a class has an empty name');
    if (seen.has(name)) throw new HeadTrainingError(`class "${name}" is listed twice`);
    seen.add(name);
  }
  if (embeddings.length !== positives.length) {
    throw new HeadTrainingError(
      `${embeddings.length} embeddings but ${positives.length} label lists: there must be one label list per example`,
    );
  }
  if (embeddings.length === 0) throw new HeadTrainingError('no examples: add example images');

  const dim = embeddings[0].length;
  if (dim === 0) throw new HeadTrainingError('example 0 has an empty embedding');
  const positiveCounts = new Array<number>(classes.length).fill(0);
  embeddings.forEach((embedding, i) => {
    if (embedding.length !== dim) {
      throw new HeadTrainingError(
        `example ${i} has a ${embedding.length}-value embedding but example 0 has ${dim}: all examples must be embedded by the same model pack`,
      );
    }
    for (let k = 0; k < dim; k++) {
      if (!Number.isFinite(embedding[k]))
        throw new HeadTrainingError(`example ${i} has a NaN or infinite value in its embedding (position ${k})`);
    }
    for (const c of new Set(positives[i])) {
      if (!Number.isInteger(c) || c < 0 || c >= classes.length) {
        throw new HeadTrainingError(
          `example ${i} names class index ${c}, but there are only ${classes.length} classes (0..${classes.length - 1})`,
        );
      }
      positiveCounts[c]++;
    }
  });
  classes.forEach((name, c) => {
    if (positiveCounts[c] === 0)
      throw new HeadTrainingError(`class "${name}" has no positive examples: add at least one image of it`);
    if (positiveCounts[c] === embeddings.length) {
      throw new HeadTrainingError(
        `class "${name}" has no negative examples (every example is one of its positives): add negative examples or examples of other classes`,
      );
    }
  });
  return dim;
}
