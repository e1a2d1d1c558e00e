/** A training set the trainer cannot use; the message says what to change. */
export class HeadTrainingError extends Error {
  override readonly name = 'HeadTrainingError';
}

/** A head file that cannot be read back: wrong format, unknown version, truncated or corrupt. */
export class HeadFileError extends Error {
  override readonly name = 'HeadFileError';

  constructor(
    readonly source: string,
    readonly reason: string,
  ) {
    super(`${source}: ${reason}`);
  }
}
