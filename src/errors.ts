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
