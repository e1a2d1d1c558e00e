import { StartupError } from '../errors';

/**
 * Ends a process whose start failed. A StartupError's message is printed as it is, after `knownPrefix`
 * (it already says what was wrong and what to do); anything else is a bug, printed with its stack.
 */
export function exitAfterFailedStart(error: unknown, unexpectedPrefix: string, knownPrefix = ''): never {
  if (error instanceof StartupError) {
    console.error(`${knownPrefix}${error.message}`);
  } else {
    console.error(unexpectedPrefix, error);
  }
  process.exit(1);
}
