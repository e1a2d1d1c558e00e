/**
 * The one error type the HTTP layer maps to Watson's error body
 * `{"code": status, "error": message}`. The message says what was wrong and what to do.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const badRequest = (message: string) => new ApiError(400, message);
export const notFound = (message: string) => new ApiError(404, message);

/**
 * A refusal to start whose message already says what is wrong and what to do (a bad variable, a
 * foreign data directory, Redis out of reach): a process's start-up prints it as it is, without a
 * stack, and exits. Anything else failing at start is a bug and is shown with its stack.
 */
export class StartupError extends Error {}
