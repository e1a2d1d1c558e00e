import crypto from 'node:crypto';
import fs from 'node:fs';
import type { Writable } from 'node:stream';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import multer from 'multer';
import { ApiError } from '../../errors';
import { ExtendedFieldNames, multipartBoundary } from './extended-field-names';

const MB = 1024 * 1024;
const MAX_FIELD_BYTES = MB;
const MAX_TEXT_FIELDS = 100;

/** The API's file fields. One sent as text is almost always curl's -F without '@'. */
const FILE_FIELD = /^(images_file|negative_examples|.*_positive_examples)$/;

// multer 2 feeds busboy through this option; @types/multer does not list it yet.
type StreamHandler = (req: Request, busboy: Writable) => void;

function requestTooLarge(maxRequestBytes: number, what: string): ApiError {
  return new ApiError(
    413,
    `The request is ${what}; at most ${Math.round(maxRequestBytes / MB)} MB are accepted in one call. Split the examples over several update calls.`,
  );
}

/**
 * Pipes the body into busboy while counting it: a chunked upload (what the Watson SDKs send) has no
 * Content-Length to check up front, so the request limit is enforced on the bytes as they arrive.
 * On the way, field names sent in RFC 2231 form become plain ones (ExtendedFieldNames).
 */
function countingStreamHandler(maxRequestBytes: number): StreamHandler {
  return (req, busboy) => {
    const boundary = multipartBoundary(req.headers['content-type']);
    const names = boundary === undefined ? undefined : new ExtendedFieldNames(boundary);
    const stop = (error: Error) => {
      if (busboy.destroyed) return;
      req.unpipe();
      names?.unpipe();
      busboy.destroy(error);
    };
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > maxRequestBytes)
        stop(requestTooLarge(maxRequestBytes, `over ${Math.round(maxRequestBytes / MB)} MB`));
    });
    if (names) {
      names.on('error', stop);
      req.pipe(names).pipe(busboy);
    } else {
      req.pipe(busboy);
    }
  };
}

/** A route's handler of a multipart request: its uploaded files are on disk until it settles. */
export type UploadHandler = (req: Request, res: Response) => Promise<void>;

/** Wraps a route's handler in the upload's parsing and clean-up: the middleware list to mount. */
export type UploadRoute = (handler: UploadHandler) => RequestHandler[];

/**
 * multer writing every uploaded file to a temp file on disk (never whole requests in memory).
 * The files are removed once the handler has settled, whatever happened, or at once when the form is
 * refused; not when the client hangs up, since a handler still reading them (a create storing its
 * zips) must finish what it accepted, and multer may not have listed them yet.
 */
export function multipartUpload(options: {
  tmpDir: string;
  maxFileBytes: number;
  maxRequestBytes: number;
}): UploadRoute {
  fs.mkdirSync(options.tmpDir, { recursive: true });
  const multerOptions: multer.Options & { streamHandler: StreamHandler } = {
    storage: multer.diskStorage({
      destination: options.tmpDir,
      filename: (_req, _file, cb) => cb(null, `upload-${crypto.randomBytes(12).toString('hex')}`),
    }),
    limits: { fileSize: options.maxFileBytes, fieldSize: MAX_FIELD_BYTES, fields: MAX_TEXT_FIELDS, parts: 20_000 },
    defParamCharset: 'utf8',
    streamHandler: countingStreamHandler(options.maxRequestBytes),
  };
  const upload = multer(multerOptions).any();

  const checkRequest = (req: Request, res: Response, next: NextFunction) => {
    if (!req.is('multipart/form-data')) {
      throw new ApiError(
        415,
        'The request must be multipart/form-data. Send the fields and files as a form (curl --form / -F).',
      );
    }
    const length = Number(req.headers['content-length'] ?? 0);
    if (length > options.maxRequestBytes) {
      res.setHeader('Connection', 'close');
      throw requestTooLarge(options.maxRequestBytes, `${(length / MB).toFixed(1)} MB`);
    }
    next();
  };

  const parse = (req: Request, res: Response, next: NextFunction) => {
    upload(req, res, (error: unknown) => {
      const refusal = error ? translateMulterError(error, options.maxFileBytes) : fileSentAsText(req);
      if (!refusal) return next();
      removeUploadedFiles(req);
      next(refusal);
    });
  };
  return (handler) => [
    checkRequest,
    parse,
    async (req, res) => {
      try {
        await handler(req, res);
      } finally {
        removeUploadedFiles(req);
      }
    },
  ];
}

/** Refuses a file field that arrived as a text field, rather than letting it look missing. */
function fileSentAsText(req: Request): ApiError | undefined {
  const field = Object.keys(req.body ?? {}).find((name) => FILE_FIELD.test(name));
  if (field === undefined) return undefined;
  return new ApiError(
    400,
    `The field '${field}' arrived as text, not as a file. Send it as a file part with a file name (with curl: -F "${field}=@<file>", note the @).`,
  );
}

function removeUploadedFiles(req: Request) {
  const files = Array.isArray(req.files) ? req.files : [];
  // A file still arriving when the client hung up has no path yet: multer removes it itself.
  for (const f of files) if (f.path) fs.rm(f.path, { force: true }, () => undefined);
}

function translateMulterError(error: unknown, maxFileBytes: number): unknown {
  if (error instanceof ApiError) return error;
  if (error instanceof multer.MulterError) {
    if (error.code === 'LIMIT_FILE_SIZE') {
      return new ApiError(
        400,
        `The file in the field '${error.field}' is larger than ${Math.round(maxFileBytes / MB)} MB, the limit for one file. Split it into smaller zips.`,
      );
    }
    if (error.code === 'LIMIT_FIELD_VALUE') {
      return new ApiError(
        400,
        `The text field '${error.field}' is longer than ${MAX_FIELD_BYTES / MB} MB, the limit for a text field. Send a shorter value; images and zips go in file fields.`,
      );
    }
    if (error.code === 'LIMIT_FIELD_COUNT') {
      return new ApiError(
        400,
        `The form has more than ${MAX_TEXT_FIELDS} text fields, the limit per request. Send only the fields the API reads.`,
      );
    }
    return new ApiError(
      400,
      `The multipart form was refused: ${error.message}${error.field ? ` (field '${error.field}')` : ''}.`,
    );
  }
  // Failures to write the temp file (a full disk) are the server's, not the request's.
  if ((error as NodeJS.ErrnoException)?.syscall !== undefined) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ApiError(
    400,
    `The multipart body could not be read (${message}). Send a complete multipart/form-data request.`,
  );
}
