/** A model cannot be exported: an op the target format (or this exporter) cannot express, or a malformed graph. */
export class ModelExportError extends Error {
  override readonly name = 'ModelExportError';

  constructor(
    readonly reason: string,
    readonly node?: { name: string; opType: string },
  ) {
    super(
      node
        ? `cannot export node ${node.name || '(unnamed)'} (${node.opType}): ${reason}`
        : `cannot export the model: ${reason}`,
    );
  }
}

/** The model pack (or detector pack) a head was trained with is not installed here, or not in the version the head names. */
export class PackUnavailableError extends Error {
  override readonly name = 'PackUnavailableError';

  constructor(readonly packKey: string) {
    super(`model pack ${packKey} is not installed`);
  }
}
