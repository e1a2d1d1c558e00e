import { z } from 'zod';
import { createDocument, type ZodOpenApiOperationObject, type ZodOpenApiResponseObject } from 'zod-openapi';
import type { Config } from '../../config';
import {
  activateQuerySchema,
  callbackSecretSchema,
  classifierListSchema,
  classifierSchema,
  classifyFieldsSchema,
  classifyResponseSchema,
  modelQuerySchema,
  uploadedClassifierSchema,
  emptyObjectSchema,
  errorBodySchema,
  changedClassifierSchema,
  exampleChangesSchema,
  exampleListQuerySchema,
  exampleListSchema,
  exampleMoveSchema,
  examplePathSchema,
  MAX_EXAMPLE_CHANGES,
  mistakeListSchema,
  mistakesQuerySchema,
  healthSchema,
  listQuerySchema,
  readinessSchema,
  tokenRequestSchema,
  tokenResponseSchema,
  trainingFormSchema,
  userDataQuerySchema,
  versionListSchema,
  versionPathSchema,
  versionQuerySchema,
} from '../../domain/api-schemas';

const MB = 1024 * 1024;
const json = (schema: z.ZodType) => ({ 'application/json': { schema } });
const error = (description: string) => ({ description, content: json(errorBodySchema) });

const classifierPath = z.object({
  classifier_id: z.string().meta({ description: 'The classifier id', example: 'dogs_1941945966' }),
});

/** Watson's data label on the uploads that store examples (create and update). */
const watsonMetadataHeader = z.object({
  'X-Watson-Metadata': z
    .string()
    .optional()
    .meta({
      description:
        'Labels the examples this request uploads with a customer id, for DELETE /v3/user_data: `customer_id=<id>` (1 to 1000 characters, ' +
        "none of ';', '=', ',' or a control character; spaces around it and a trailing ';' are ignored). One header, one customer_id field: " +
        'another field, the field twice or the header twice is a 400 and nothing is stored. An image already stored in the same class keeps the label it had.',
      example: 'customer_id=customer-4711',
    }),
});

/** Which of the common failures an operation can answer with, besides its own statuses. */
interface Failures {
  /** Behind the key and ?version checks (every /v3 call). */
  v3?: boolean;
  /** A multipart upload (413, 415, 507). */
  multipart?: boolean;
  /** Counted by RATE_LIMIT_PER_MINUTE (429). */
  rateLimited?: boolean;
  /** Names a classifier (404). */
  classifier?: boolean;
}

type Responses = Record<`${1 | 2 | 3 | 4 | 5}${string}`, ZodOpenApiResponseObject>;

function operation(
  { query, ...op }: Omit<ZodOpenApiOperationObject, 'responses'> & { responses: Responses; query?: z.ZodObject },
  failures: Failures,
): ZodOpenApiOperationObject {
  const responses: Responses = { ...op.responses };
  const add = (status: `${4 | 5}${string}`, description: string) => {
    responses[status] ??= error(description);
  };
  if (failures.v3) {
    add('400', "Bad input, or a missing or malformed 'version' query parameter");
    add('401', 'No API key, or a key that is not valid');
  }
  if (failures.classifier) add('404', "No such classifier among the caller's (another owner's id answers the same)");
  if (failures.multipart) {
    add('413', 'The whole request body is over its limit');
    add('415', 'The request is not multipart/form-data');
    add('507', "The server's disk is full; nothing from the request was stored");
  }
  if (failures.rateLimited)
    add('429', 'Too many uploads and classify calls for this account this minute (RATE_LIMIT_PER_MINUTE)');
  add('500', 'A fault of the server (logged; no internals in the body)');
  return {
    ...op,
    ...(failures.v3 ? { security: [{ basicAuth: [] }, { bearerAuth: [] }] } : { security: [] }),
    requestParams: {
      ...op.requestParams,
      ...(failures.v3 || query
        ? { query: z.object({ ...(failures.v3 ? versionQuerySchema.shape : {}), ...query?.shape }) }
        : {}),
    },
    responses,
  };
}

function modelDownload(operationId: string, summary: string) {
  return {
    operationId,
    tags: ['classifiers'],
    summary,
    requestParams: { path: classifierPath },
    query: modelQuerySchema,
    responses: {
      '200': {
        description: 'The model file (Content-Disposition names it)',
        content: {
          'application/octet-stream': { schema: z.string().meta({ override: { type: 'string', format: 'binary' } }) },
        },
      },
      '400': error('version_id is not a positive integer'),
      '404': error('No such classifier, or no such version of it'),
      '409': error('Nothing to export yet (never trained, or failed), or the model pack it was trained with is gone'),
      '410': error(
        'The version was pruned by the retention setting (KEEP_VERSIONS), or removed because customer data it was trained on was deleted (DELETE /v3/user_data)',
      ),
      '501': error('The exporter cannot express an operation of this model in the format; the message names it'),
    },
  } satisfies Parameters<typeof operation>[0];
}

function multipart(schema: z.ZodType) {
  return { required: true, content: { 'multipart/form-data': { schema } } };
}

export type OpenApiDocument = ReturnType<typeof createDocument>;

/**
 * The OpenAPI 3.1 document of the API (Watson v3 plus this service's extensions), generated from the
 * zod schemas in domain/api-schemas.ts that also validate the requests and type the responses.
 */
export function openApiDocument(config: Config, serviceVersion: string): OpenApiDocument {
  const { limits } = config;
  const zipLimits = `Each zip: ${limits.minImagesPerZip} to ${limits.maxImagesPerZip} images, at most ${Math.round(limits.maxZipBytes / MB)} MB; one call at most ${Math.round(limits.maxRequestBytes / MB)} MB.`;
  const classifyInput = `images_file: one image (JPEG, PNG, GIF, TIFF, WebP; at most ${Math.round(limits.maxClassifyImageBytes / MB)} MB) or a zip of at most ${limits.maxClassifyZipImages} images.`;
  const classifyResponses: Responses = {
    '200': {
      description: 'Scores per image; an image that failed carries its own error',
      content: json(classifyResponseSchema),
    },
    '400': {
      description:
        'Bad input (Error), or no valid classifier at all: the normal answer shape with an error per image (ClassifyResponse)',
      content: json(z.union([errorBodySchema, classifyResponseSchema])),
    },
  };

  return createDocument({
    openapi: '3.1.0',
    info: {
      title: 'Watson Visual Recognition v3 (self-hosted)',
      version: serviceVersion,
      description:
        'IBM Watson Visual Recognition v3 custom classifiers, as this self-hosted service speaks them (API version 2018-03-19). ' +
        'Extensions: training_progress and evaluation on the Classifier object, GET /v3/classifiers/{classifier_id}/versions, ' +
        'POST /identity/token, and the operations endpoints /health, /healthz, /readyz and /metrics. ' +
        'Authenticate with HTTP Basic, user `apikey` and your key as password, or `Authorization: Bearer <key or token>`.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    components: {
      securitySchemes: {
        basicAuth: { type: 'http', scheme: 'basic', description: "User 'apikey', password: your API key" },
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description: 'Your API key, or a token from POST /identity/token',
        },
      },
    },
    tags: [
      { name: 'classifiers', description: 'Create, train, poll, retrain and delete custom classifiers' },
      { name: 'examples', description: "A classifier's examples: browse, find mistakes, remove or move (extension)" },
      { name: 'classify', description: 'Classify images with custom and built-in classifiers' },
      { name: 'identity', description: 'IAM-style token exchange for SDK clients' },
      { name: 'operations', description: 'Health, readiness, metrics and this document (no key needed)' },
    ],
    paths: {
      '/v3/classifiers': {
        post: operation(
          {
            operationId: 'createClassifier',
            tags: ['classifiers'],
            summary: 'Create a classifier and start training it',
            description: `Fields {class}_positive_examples (one zip per class) and at most one negative_examples zip; at least two example sets. ${zipLimits} Answers 200 with status training.`,
            requestParams: { header: watsonMetadataHeader },
            requestBody: multipart(trainingFormSchema(true)),
            responses: {
              '200': { description: 'The new classifier, status training', content: json(uploadedClassifierSchema) },
              '503': error('The training queue is not available; nothing was stored'),
            },
          },
          { v3: true, multipart: true, rateLimited: true },
        ),
        get: operation(
          {
            operationId: 'listClassifiers',
            tags: ['classifiers'],
            summary: "List the caller's classifiers",
            query: listQuerySchema,
            responses: { '200': { description: "The caller's classifiers", content: json(classifierListSchema) } },
          },
          { v3: true },
        ),
      },
      '/v3/classifiers/{classifier_id}': {
        get: operation(
          {
            operationId: 'getClassifier',
            tags: ['classifiers'],
            summary: 'Poll a classifier',
            requestParams: { path: classifierPath },
            responses: { '200': { description: 'The classifier', content: json(classifierSchema) } },
          },
          { v3: true, classifier: true },
        ),
        post: operation(
          {
            operationId: 'updateClassifier',
            tags: ['classifiers'],
            summary: 'Add classes or examples and retrain',
            description: `Any number of {class}_positive_examples zips and/or one negative_examples zip; at least one file. ${zipLimits} The previous version keeps answering until the retraining finishes.`,
            requestParams: { path: classifierPath, header: watsonMetadataHeader },
            requestBody: multipart(trainingFormSchema(false)),
            responses: {
              '200': { description: 'The classifier, status retraining', content: json(uploadedClassifierSchema) },
              '503': error('The training queue is not available; nothing was changed'),
            },
          },
          { v3: true, classifier: true, multipart: true, rateLimited: true },
        ),
        delete: operation(
          {
            operationId: 'deleteClassifier',
            tags: ['classifiers'],
            summary: 'Delete a classifier, its versions and examples',
            requestParams: { path: classifierPath },
            responses: { '200': { description: 'Deleted', content: json(emptyObjectSchema) } },
          },
          { v3: true, classifier: true },
        ),
      },
      '/v3/classifiers/{classifier_id}/core_ml_model': {
        get: operation(
          modelDownload('getCoreMlModel', 'The Core ML .mlmodel of the current version (or of version_id)'),
          { v3: true, classifier: true },
        ),
      },
      '/v3/classifiers/{classifier_id}/onnx_model': {
        get: operation(modelDownload('getOnnxModel', 'Extension: the same version as one self-contained ONNX model'), {
          v3: true,
          classifier: true,
        }),
      },
      '/v3/classifiers/{classifier_id}/versions': {
        get: operation(
          {
            operationId: 'listVersions',
            tags: ['classifiers'],
            summary: 'Every version of a classifier with its evaluation (extension)',
            requestParams: { path: classifierPath },
            responses: { '200': { description: 'The versions, oldest first', content: json(versionListSchema) } },
          },
          { v3: true, classifier: true },
        ),
      },
      '/v3/classifiers/{classifier_id}/versions/{version_id}/activate': {
        post: operation(
          {
            operationId: 'activateVersion',
            tags: ['classifiers'],
            summary: 'Make a version current: roll back or forward (extension)',
            description:
              "The training set becomes that version's examples plus the pending ones (unless discard_pending=true); pending examples start a retraining at once.",
            requestParams: { path: classifierPath.extend(versionPathSchema.shape) },
            query: activateQuerySchema,
            responses: {
              '200': {
                description: 'The classifier: ready, or retraining when pending examples were queued',
                content: json(classifierSchema),
              },
              '404': error('No such classifier, or no such version of it'),
              '410': error(
                'The version was pruned by the retention setting (KEEP_VERSIONS), or was trained on customer data deleted with DELETE /v3/user_data (removed, or serving only until its replacement is ready)',
              ),
            },
          },
          { v3: true, classifier: true, rateLimited: true },
        ),
      },
      '/v3/classifiers/{classifier_id}/examples': {
        get: operation(
          {
            operationId: 'listExamples',
            tags: ['examples'],
            summary: "A page of the classifier's examples, newest first (extension)",
            description:
              "All examples, one class's (class=…) or the negatives (negative=true), each with the serving version's out-of-fold prediction when it evaluated it. " +
              'Page on with the next_page_token of the answer.',
            requestParams: { path: classifierPath },
            query: exampleListQuerySchema,
            responses: {
              '200': { description: 'A page of examples', content: json(exampleListSchema) },
              '400': error(
                'limit out of 1-200, a page_token this list did not give, an unknown class, or both class and negative=true',
              ),
            },
          },
          { v3: true, classifier: true },
        ),
      },
      '/v3/classifiers/{classifier_id}/examples/mistakes': {
        get: operation(
          {
            operationId: 'listExampleMistakes',
            tags: ['examples'],
            summary: 'Examples the serving version gets wrong, and near-duplicates in two classes (extension)',
            description:
              'mislabeled: the model cross-validated without the example predicts another class (or none) for it; cross_class_duplicate: two pictures ' +
              'whose embeddings are almost the same, labelled differently. Most confident first; empty while no version serves.',
            requestParams: { path: classifierPath },
            query: mistakesQuerySchema,
            responses: {
              '200': { description: 'A page of mistakes', content: json(mistakeListSchema) },
              '400': error('limit out of 1-200, or a page_token this list did not give'),
            },
          },
          { v3: true, classifier: true },
        ),
      },
      '/v3/classifiers/{classifier_id}/examples/{example_id}/thumbnail': {
        get: operation(
          {
            operationId: 'getExampleThumbnail',
            tags: ['examples'],
            summary: 'A small JPEG of one example (extension)',
            description: 'At most 160 px on the longest side. Send the ETag back as If-None-Match to get a 304.',
            requestParams: { path: classifierPath.extend(examplePathSchema.shape) },
            responses: {
              '200': {
                description: 'The thumbnail (ETag and Cache-Control: private)',
                content: {
                  'image/jpeg': { schema: z.string().meta({ override: { type: 'string', format: 'binary' } }) },
                },
              },
              '304': { description: 'Unchanged since the ETag sent as If-None-Match' },
              '404': error("No such classifier, or no such example of it (another owner's answers the same)"),
            },
          },
          { v3: true, classifier: true },
        ),
      },
      '/v3/classifiers/{classifier_id}/examples/changes': {
        post: operation(
          {
            operationId: 'changeExamples',
            tags: ['examples'],
            summary: 'Remove and move examples, applied as the next version (extension)',
            description:
              `Up to ${MAX_EXAMPLE_CHANGES} changes, applied together or not at all, and trained as the next version (collapsed with any other pending retraining); ` +
              'the current version serves until then. A removed example is forgotten: no later version trains on it, its image and cached embedding go unless ' +
              'another example uses the same picture, and every version trained on it is removed once the retraining without it publishes. A moved example ' +
              'keeps its image and embedding. GET …/versions shows, on the new version, how many were removed and moved.',
            requestParams: { path: classifierPath },
            requestBody: { required: true, content: json(exampleChangesSchema) },
            responses: {
              '200': {
                description: 'The classifier, retraining, and what changed',
                content: json(changedClassifierSchema),
              },
              '400': error(
                'An empty or oversized list, the same example twice, a move to a class that does not exist or to its own class, or a change that leaves a class (or the negatives of a one-class classifier) below the minimum',
              ),
              '404': error('No such classifier, or an example id that is not one of its examples'),
            },
          },
          { v3: true, classifier: true, rateLimited: true },
        ),
      },
      '/v3/classifiers/{classifier_id}/examples/{example_id}': {
        delete: operation(
          {
            operationId: 'removeExample',
            tags: ['examples'],
            summary: 'Remove one example (extension; as POST …/examples/changes with remove: [example_id])',
            requestParams: { path: classifierPath.extend(examplePathSchema.shape) },
            responses: {
              '200': {
                description: 'The classifier, retraining, and what changed',
                content: json(changedClassifierSchema),
              },
              '400': error('The class (or the negatives of a one-class classifier) would fall below the minimum'),
              '404': error('No such classifier, or no such example of it'),
            },
          },
          { v3: true, classifier: true },
        ),
      },
      '/v3/classifiers/{classifier_id}/examples/{example_id}/move': {
        post: operation(
          {
            operationId: 'moveExample',
            tags: ['examples'],
            summary: 'Move one example to another class or to the negatives (extension)',
            requestParams: { path: classifierPath.extend(examplePathSchema.shape) },
            requestBody: { required: true, content: json(exampleMoveSchema) },
            responses: {
              '200': {
                description: 'The classifier, retraining, and what changed',
                content: json(changedClassifierSchema),
              },
              '400': error(
                'No class or negative:true, a class that does not exist or is its own, or a class left below the minimum',
              ),
              '404': error('No such classifier, or no such example of it'),
            },
          },
          { v3: true, classifier: true, rateLimited: true },
        ),
      },
      '/v3/callback_secret': {
        get: operation(
          {
            operationId: 'getCallbackSecret',
            tags: ['classifiers'],
            summary: "The caller's key for training-end callback signatures (extension; made on first use)",
            responses: { '200': { description: 'The secret', content: json(callbackSecretSchema) } },
          },
          { v3: true },
        ),
        post: operation(
          {
            operationId: 'rotateCallbackSecret',
            tags: ['classifiers'],
            summary: 'Replace the callback secret (extension); every delivery from then on is signed with the new one',
            responses: { '200': { description: 'The new secret', content: json(callbackSecretSchema) } },
          },
          { v3: true, rateLimited: true },
        ),
      },
      '/v3/classify': {
        post: operation(
          {
            operationId: 'classify',
            tags: ['classify'],
            summary: 'Classify an image, a zip of images, or an image URL',
            description: `${classifyInput} Or url. No image and no url: 400.`,
            requestBody: multipart(
              classifyFieldsSchema.extend({
                images_file: z
                  .string()
                  .optional()
                  .meta({ description: 'An image or a zip of images', override: { type: 'string', format: 'binary' } }),
              }),
            ),
            responses: classifyResponses,
          },
          { v3: true, multipart: true, rateLimited: true },
        ),
        get: operation(
          {
            operationId: 'classifyUrl',
            tags: ['classify'],
            summary: 'Classify the image at a URL',
            query: classifyFieldsSchema,
            responses: classifyResponses,
          },
          { v3: true, rateLimited: true },
        ),
      },
      '/v3/user_data': {
        delete: operation(
          {
            operationId: 'deleteUserData',
            tags: ['classifiers'],
            summary: 'Delete every example and classifier labelled with a customer id',
            description:
              "Deletes, among the caller's classifiers, every classifier created with `X-Watson-Metadata: customer_id=<id>` and every example uploaded with it, " +
              'with the classes left without examples. Every version trained on a deleted example is removed: its head file, its evaluation and its entry ' +
              'in GET …/versions; a pin of it answers 400 like an unknown version, an export or activation 410. Non-current ones go at once; a current one serves ' +
              'until the retraining without the data (queued by this call) publishes, and goes in that same transaction (or at once, when what is left cannot ' +
              'train: the classifier is then failed, its explanation saying what to upload). No training run that read the examples before the deletion can ' +
              'publish. Image files and cached embeddings go unless another example, of any owner, still uses the same image. ' +
              "What it cannot do: a model exported earlier (GET …/core_ml_model or …/onnx_model) is the caller's copy and stays theirs; logs and backups " +
              'the operator keeps are outside the service.',
            query: userDataQuerySchema,
            responses: {
              '202': {
                description:
                  'Deleted: the labelled classifiers, examples, versions trained on them (the current one once its retraining is ready), image files and cached embeddings no other example uses. ' +
                  "Also when nothing carried the id. Models exported earlier are the caller's and stay theirs.",
              },
              '400': error(
                "No customer_id, more than one, or one no label can carry (empty, over 1000 characters, ';', '=', ',' or a control character)",
              ),
              '507': error("The server's disk is full; nothing was deleted. Try again once space is freed"),
            },
          },
          { v3: true },
        ),
      },
      '/identity/token': {
        post: operation(
          {
            operationId: 'getAccessToken',
            tags: ['identity'],
            summary: 'Exchange an API key for a bearer token (IBM IAM style)',
            requestBody: {
              required: true,
              content: { 'application/x-www-form-urlencoded': { schema: tokenRequestSchema } },
            },
            responses: {
              '200': { description: 'A token to send as Authorization: Bearer', content: json(tokenResponseSchema) },
              '400': error('Not the API-key grant, or no key'),
              '401': error('The key is not valid'),
              '413': error('The form is over 16 kB'),
            },
          },
          {},
        ),
      },
      '/v3/openapi.json': {
        get: operation(
          {
            operationId: 'getOpenApiDocument',
            tags: ['operations'],
            summary: 'This document',
            responses: {
              '200': {
                description: 'OpenAPI 3.1',
                content: { 'application/json': { schema: z.object({ openapi: z.string() }).loose() } },
              },
            },
          },
          {},
        ),
      },
      '/health': {
        get: operation(
          {
            operationId: 'health',
            tags: ['operations'],
            summary: 'Liveness (kept for existing health checks; same as /healthz)',
            responses: { '200': { description: 'The process answers', content: json(healthSchema) } },
          },
          {},
        ),
      },
      ...operationsPaths(config),
    },
  });
}

/** /healthz, /readyz and /metrics, where this port serves them (not when turned off or moved to OPS_PORT). */
function operationsPaths(config: Config) {
  const here = config.ops.port === undefined;
  const health = {
    '/healthz': {
      get: operation(
        {
          operationId: 'healthz',
          tags: ['operations'],
          summary: 'Liveness: the API process answers',
          responses: { '200': { description: 'Alive', content: json(healthSchema) } },
        },
        {},
      ),
    },
    '/readyz': {
      get: operation(
        {
          operationId: 'readyz',
          tags: ['operations'],
          summary: 'Readiness: database, Redis and models',
          responses: {
            '200': { description: 'Ready', content: json(readinessSchema) },
            '503': { description: 'Not ready; the failed checks carry the reason', content: json(readinessSchema) },
          },
        },
        {},
      ),
    },
  };
  const metrics = {
    '/metrics': {
      get: operation(
        {
          operationId: 'metrics',
          tags: ['operations'],
          summary: 'Prometheus metrics of the API and its training workers',
          description:
            'Prometheus text format, merging the API process and every training worker that published to Redis lately.',
          responses: { '200': { description: 'Metrics', content: { 'text/plain': { schema: z.string() } } } },
        },
        {},
      ),
    },
  };
  return { ...(here && config.ops.health ? health : {}), ...(here && config.ops.metrics ? metrics : {}) };
}

/**
 * Maps a request path to its route template among the document's paths (`/v3/classifiers/{classifier_id}`),
 * or `other`: what request metrics are labelled with, so that no id ever becomes a label value.
 */
export function routeTemplateOf(
  document: { paths?: Record<string, unknown> },
  extra: string[] = [],
): (path: string) => string {
  const templates = [...Object.keys(document.paths ?? {}), ...extra].map((template) => ({
    template,
    pattern: new RegExp(
      `^${template
        .split(/\{[^}]+\}/)
        .map(escapeRegExp)
        .join('[^/]+')}/?$`,
    ),
  }));
  return (path) => templates.find((t) => t.pattern.test(path))?.template ?? 'other';
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
