/**
 * Fetching, unpacking or preparing a model pack failed. `source` names what failed (a URL, a file
 * or an archive entry), `reason` says what happened and what to do about it.
 */
export class ModelPackError extends Error {
  constructor(
    readonly source: string,
    readonly reason: string,
  ) {
    super(`${source}: ${reason}`);
    this.name = 'ModelPackError';
  }
}
