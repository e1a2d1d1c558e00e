import { z } from 'zod';
import { badRequest } from '../errors';
import { customerIdProblem, MAX_CUSTOMER_ID_LENGTH } from './customer-id';

/**
 * The wire format of the API as zod schemas: the request schemas validate what the routes read, the
 * response schemas give the types the use cases return, and the OpenAPI document
 * (entry-points/http/openapi.ts) is generated from both, so the three cannot drift apart.
 * `.meta({ id })` names a schema as an OpenAPI component.
 */

/** Parses `input` with `schema`, or throws a 400 ApiError carrying the first problem's message. */
export function parseRequest<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  // The schemas' own messages are whole sentences; zod's defaults are not, so they get the field's name.
  throw badRequest(
    issue.message.endsWith('.')
      ? issue.message
      : `The parameter '${issue.path.join('.')}' is not valid: ${issue.message}.`,
  );
}

const isoTime = z.iso
  .datetime()
  .meta({ description: 'ISO 8601 UTC time with milliseconds', example: '2018-03-17T19:01:30.536Z' });

// ---------------------------------------------------------------- errors

export const errorBodySchema = z
  .object({
    code: z.number().int().meta({ description: 'The HTTP status code', example: 400 }),
    error: z
      .string()
      .meta({ description: 'What was wrong and what to do', example: "Missing required parameter 'name'." }),
  })
  .meta({
    id: 'Error',
    description: 'Every error answer: the status and a message saying what was wrong and what to do.',
  });

// ---------------------------------------------------------------- classifiers

export const CLASSIFIER_STATUSES = ['ready', 'training', 'retraining', 'failed'] as const;

export const classEvaluationSchema = z
  .object({
    class: z.string(),
    precision: z.number().min(0).max(1).meta({ description: 'At score 0.5, on out-of-sample scores' }),
    recall: z.number().min(0).max(1),
    f1: z.number().min(0).max(1),
    roc_auc: z
      .number()
      .min(0)
      .max(1)
      .nullable()
      .meta({ description: 'null when the evaluated examples hold only one label' }),
    support: z.number().int().min(0).meta({ description: 'Positives of the class among the evaluated examples' }),
  })
  .meta({ id: 'ClassEvaluation' });

/** A trained head's cross-validated evaluation (extension). */
export const headEvaluationSchema = z
  .object({
    method: z.enum(['k-fold', 'holdout']),
    folds: z.number().int().min(1).meta({ description: 'Cross-validation folds; 1 for a holdout split' }),
    examples: z.number().int().min(0).meta({ description: 'Examples scored out of sample' }),
    classes: z.array(classEvaluationSchema),
    accuracy: z
      .number()
      .min(0)
      .max(1)
      .optional()
      .meta({ description: 'Top-1 accuracy over examples with exactly one positive class' }),
    confusion_matrix: z
      .object({
        labels: z
          .array(z.string().nullable())
          .meta({ description: 'Rows and columns: the classes in order, then null for "none"' }),
        counts: z.array(z.array(z.number().int().min(0))).meta({ description: 'counts[actual][predicted]' }),
      })
      .optional()
      .meta({ description: 'Out-of-sample predictions against the truth, for examples of at most one class' }),
  })
  .meta({ id: 'HeadEvaluation', description: 'Cross-validated evaluation of one version (extension).' });

export const evaluationSchema = headEvaluationSchema
  .extend({ version_id: z.number().int().meta({ description: 'The version evaluated' }), created: isoTime })
  .meta({ id: 'Evaluation', description: 'Evaluation of the version now serving (extension).' });

const classNameSchema = z.object({ class: z.string().meta({ example: 'beagle' }) });

export const classifierSchema = z
  .object({
    classifier_id: z.string().meta({ example: 'dogs_1941945966' }),
    name: z.string().meta({ example: 'dogs' }),
    owner: z.string().meta({ description: 'The owner of the key that created it' }),
    status: z.enum(CLASSIFIER_STATUSES),
    core_ml_enabled: z
      .boolean()
      .meta({ description: 'true when the classifier has a trained version to export (GET …/core_ml_model)' }),
    explanation: z.string().optional().meta({ description: 'Why it failed, when status is failed' }),
    created: isoTime,
    updated: isoTime.meta({ description: 'Last change of definition (create, each retrain request)' }),
    retrained: isoTime.optional().meta({ description: 'When the last retraining finished (absent until one has)' }),
    classes: z.array(classNameSchema),
    training_progress: z
      .number()
      .int()
      .min(0)
      .max(100)
      .optional()
      .meta({ description: 'Extension: progress of the running training, 0-100' }),
    evaluation: evaluationSchema.optional(),
    callback_url: z.string().optional().meta({ description: 'Extension: where the training-end callback goes' }),
  })
  .meta({
    id: 'Classifier',
    description: 'The Watson Classifier object; training_progress and evaluation are extensions.',
  });

export const uploadSummarySchema = z
  .object({
    training_examples: z
      .number()
      .int()
      .min(0)
      .meta({ description: "Distinct images the classifier's next version trains on" }),
    files: z.array(
      z.object({
        file: z.string().meta({ description: 'The form field' }),
        entries: z
          .number()
          .int()
          .min(0)
          .meta({ description: 'Entries in the archive, folders and skipped files included' }),
        images: z.number().int().min(0).meta({ description: 'Entries that are pictures by their content' }),
        decodable: z.number().int().min(0),
        distinct: z.number().int().min(0).meta({ description: 'Decodable images counted once' }),
        accepted: z.number().int().min(0).meta({ description: 'Images recorded as examples' }),
        not_used: z
          .array(z.object({ entry: z.string(), reason: z.string() }))
          .meta({ description: 'Up to five entries that will not train, with the reason' }),
        not_used_count: z.number().int().min(0),
      }),
    ),
  })
  .meta({ id: 'UploadSummary', description: 'Extension: what became of each uploaded zip.' });

export const warningSchema = z.object({ warning_id: z.string(), description: z.string() }).meta({ id: 'Warning' });

/** The answer to a create or update: the Classifier object plus what became of the zips, and warnings. */
export const uploadedClassifierSchema = classifierSchema
  .extend({
    upload: uploadSummarySchema.optional().meta({ description: 'Absent when an update only changed callback_url' }),
    warnings: z.array(warningSchema).optional().meta({
      description:
        "Extension, only when there are any: what the request did that may not be what was meant. warning_id class_names_differ_only_in_case: a class sent has a name that differs from another class's only in case; class names are case-sensitive, so both are kept as two classes.",
    }),
  })
  .meta({ id: 'ClassifierWithUpload' });

export const modelQuerySchema = z.object({
  version_id: z.string().optional().meta({ description: 'Extension: export this version instead of the current one' }),
});

export const briefClassifierSchema = z
  .object({
    classifier_id: z.string(),
    name: z.string(),
    status: z.enum(CLASSIFIER_STATUSES),
    explanation: z.string().optional(),
  })
  .meta({ id: 'ClassifierBrief', description: 'An entry of GET /v3/classifiers without verbose=true.' });

export const classifierListSchema = z
  .object({ classifiers: z.array(z.union([briefClassifierSchema, classifierSchema])) })
  .meta({
    id: 'ClassifierList',
    description: "The caller's classifiers: brief entries, or full objects with verbose=true.",
  });

/** What one example-changes request, or all of them between two versions, changed (issue 23). */
export const exampleChangeCountsSchema = z
  .object({ removed: z.number().int().min(0), moved: z.number().int().min(0) })
  .meta({ id: 'ExampleChangeCounts' });

export const versionListSchema = z
  .object({
    classifier_id: z.string(),
    current_version_id: z
      .number()
      .int()
      .nullable()
      .meta({ description: 'The version serving now; null before the first training finished' }),
    versions: z.array(
      z.object({
        version_id: z.number().int(),
        created: isoTime,
        classes: z.array(classNameSchema),
        examples: z.number().int().meta({ description: 'Example images the version was trained on' }),
        pack: z.string().meta({ description: 'The model pack whose embedding it was trained on' }),
        evaluation: headEvaluationSchema,
        activated: z.array(isoTime).meta({ description: 'When it was made current by an activation' }),
        pruned: isoTime
          .optional()
          .meta({ description: 'When retention (KEEP_VERSIONS) removed its head: no longer usable' }),
        changes: exampleChangeCountsSchema.optional().meta({
          description:
            'Examples removed and moved (POST …/examples/changes) since the version before it; absent when none were',
        }),
      }),
    ),
    history: z
      .array(
        z.object({
          version_id: z.number().int(),
          previous_version_id: z.number().int().nullable(),
          event: z.enum(['trained', 'activated']),
          created: isoTime,
        }),
      )
      .meta({
        description:
          'Every change of the current version, oldest first (ids and times; it keeps naming a version removed since)',
      }),
  })
  .meta({
    id: 'VersionList',
    description:
      'Extension: every version of a classifier with its evaluation, oldest first, and the history of the current version.',
  });

export const callbackSecretSchema = z
  .object({
    callback_secret: z.string().meta({ description: 'Key of the HMAC-SHA256 signature of training-end callbacks' }),
    created: isoTime,
  })
  .meta({ id: 'CallbackSecret' });

export const activateQuerySchema = z.object({
  discard_pending: z
    .enum(['true', 'false', ''], { error: "The parameter 'discard_pending' must be true or false." })
    .optional()
    .transform((v) => v === 'true')
    .meta({
      description: 'true: drop the examples accepted since the current version, instead of training them on top',
    }),
});

export const versionPathSchema = z.object({
  version_id: z.string().meta({ description: 'A version id (positive integer)', example: '3' }),
});

export const emptyObjectSchema = z.object({}).meta({ id: 'Empty' });

export type ClassifierView = z.infer<typeof classifierSchema>;
export type BriefClassifierView = z.infer<typeof briefClassifierSchema>;
export type HeadEvaluationView = z.infer<typeof headEvaluationSchema>;
export type VersionListView = z.infer<typeof versionListSchema>;

// ---------------------------------------------------------------- examples (issue 23)

/** Examples per page of GET …/examples and …/examples/mistakes. */
export const EXAMPLE_PAGE = { default: 50, max: 200 } as const;
/** Example ids one POST …/examples/changes may name. */
export const MAX_EXAMPLE_CHANGES = 500;

const exampleIdSchema = z
  .string()
  .meta({ description: 'An example id: stable while the example exists, never reused', example: 'ex_1042' });

export const exampleEvaluationSchema = z
  .object({
    predicted_class: z.string().nullable().meta({
      description:
        'The class with the highest out-of-fold score if it reached 0.5; null when none did (right for a negative example)',
    }),
    score: z.number().min(0).max(1).meta({
      description:
        "The out-of-fold score of predicted_class; when it is null, of the example's own class (for a negative, its highest score)",
    }),
    correct: z.boolean().meta({
      description: "Whether predicted_class is the example's class (for a negative: whether it is null)",
    }),
  })
  .meta({
    id: 'ExampleEvaluation',
    description:
      "From the serving version's cross-validation: how the model that did not train on this example scored it.",
  });

export const exampleSchema = z
  .object({
    example_id: exampleIdSchema,
    class: z.string().optional().meta({ description: 'The class; absent for a negative example', example: 'beagle' }),
    negative: z.boolean().meta({ description: 'true for a negative example' }),
    file_name: z
      .string()
      .nullable()
      .meta({ description: 'The zip entry it was uploaded as; null for examples stored before names were kept' }),
    created: isoTime.meta({ description: 'When it was uploaded' }),
    evaluation: exampleEvaluationSchema
      .optional()
      .meta({ description: 'Absent when the serving version did not evaluate it (none yet, or newer than it)' }),
  })
  .meta({ id: 'Example', description: 'Extension: one training example of a classifier.' });

const pageTokenError =
  "The parameter 'page_token' is not valid. Send the next_page_token of the previous answer as it was.";

const pagingShape = {
  limit: z
    .string({ error: `The parameter 'limit' must be a whole number from 1 to ${EXAMPLE_PAGE.max}.` })
    .regex(/^\s*\d{1,6}\s*$/, { error: `The parameter 'limit' must be a whole number from 1 to ${EXAMPLE_PAGE.max}.` })
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(1, { error: `The parameter 'limit' must be a whole number from 1 to ${EXAMPLE_PAGE.max}.` })
        .max(EXAMPLE_PAGE.max, {
          error: `The parameter 'limit' must be a whole number from 1 to ${EXAMPLE_PAGE.max}.`,
        }),
    )
    .optional()
    .meta({ description: `Entries per page, 1 to ${EXAMPLE_PAGE.max} (default ${EXAMPLE_PAGE.default})` }),
  page_token: z
    .string({ error: pageTokenError })
    .min(1, { error: pageTokenError })
    .max(200, { error: pageTokenError })
    .optional()
    .meta({ description: 'The next_page_token of the previous page' }),
};

export const exampleListQuerySchema = z.object({
  class: z
    .string({ error: "The parameter 'class' must be sent once, as the name of one class." })
    .min(1, { error: "The parameter 'class' is empty. Send a class name, or negative=true, or neither for all." })
    .optional()
    .meta({ description: 'Only the examples of this class (case-sensitive)' }),
  negative: z
    .enum(['true', 'false'], { error: "The parameter 'negative' must be true or false." })
    .optional()
    .transform((v) => v === 'true')
    .meta({ description: 'true: only the negative examples' }),
  ...pagingShape,
});

export const mistakesQuerySchema = z.object({ ...pagingShape });

export const exampleListSchema = z
  .object({
    examples: z.array(exampleSchema).meta({ description: 'Newest first' }),
    next_page_token: z.string().optional().meta({ description: 'Absent on the last page' }),
    version_id: z
      .number()
      .int()
      .optional()
      .meta({ description: 'The version the evaluations come from; absent when none serves' }),
  })
  .meta({ id: 'ExampleList', description: "Extension: a page of a classifier's examples." });

export const mistakeSchema = z
  .discriminatedUnion('kind', [
    z
      .object({
        kind: z.literal('mislabeled'),
        confidence: z.number().min(0).max(1).meta({
          description:
            'How sure the out-of-fold model was: the score of predicted_class, or 1 − the score of the own class when none reached 0.5',
        }),
        example: exampleSchema,
        predicted_class: z
          .string()
          .nullable()
          .meta({ description: 'What the model that did not train on it predicted; null: none of the classes' }),
      })
      .meta({ id: 'MislabeledExample' }),
    z
      .object({
        kind: z.literal('cross_class_duplicate'),
        confidence: z.number().min(0).max(1).meta({ description: '1 − distance' }),
        examples: z.array(exampleSchema).length(2),
        distance: z.number().min(0).max(2).meta({
          description:
            "Cosine distance of the two embeddings, centred on the training set's mean (0: the same picture)",
        }),
      })
      .meta({ id: 'CrossClassDuplicate' }),
  ])
  .meta({ id: 'Mistake' });

export const mistakeListSchema = z
  .object({
    mistakes: z.array(mistakeSchema).meta({ description: 'Most confident first' }),
    next_page_token: z.string().optional().meta({ description: 'Absent on the last page' }),
    version_id: z
      .number()
      .int()
      .optional()
      .meta({ description: 'The version the out-of-fold predictions come from; absent when none serves' }),
  })
  .meta({
    id: 'MistakeList',
    description:
      'Extension: examples the serving version gets wrong out of fold, and near-duplicate pictures labelled differently.',
  });

const moveTargetShape = {
  class: z
    .string({ error: "'class' must be a class name." })
    .min(1, { error: "'class' must not be empty." })
    .optional(),
  negative: z
    .literal(true, { error: "'negative' can only be true (to move the example to the negatives)." })
    .optional(),
};

const moveTargetRefine = (v: { class?: string; negative?: true }) =>
  (v.class === undefined) !== (v.negative === undefined);
const MOVE_TARGET_ERROR =
  'Each move names where to: either "class": "<an existing class>" or "negative": true, not both.';

export const exampleMoveSchema = z
  .object(moveTargetShape, { error: 'The body must be a JSON object: {"class": "<class>"} or {"negative": true}.' })
  .strict()
  .refine(moveTargetRefine, { error: MOVE_TARGET_ERROR })
  .meta({ id: 'ExampleMove', description: 'Where to move one example: to an existing class, or to the negatives.' });

export const exampleChangesSchema = z
  .object(
    {
      remove: z
        .array(exampleIdSchema, { error: "'remove' must be a list of example ids." })
        .optional()
        .meta({ description: 'Examples to remove (forgotten: no later version trains on them)' }),
      move: z
        .array(
          z
            .object({ example_id: exampleIdSchema, ...moveTargetShape }, { error: 'Each move must be an object.' })
            .strict()
            .refine(moveTargetRefine, { error: MOVE_TARGET_ERROR }),
          { error: '\'move\' must be a list of {"example_id", "class" or "negative"} objects.' },
        )
        .optional()
        .meta({ description: 'Examples to move to another class or to the negatives' }),
    },
    { error: 'The body must be a JSON object: {"remove": [ids], "move": [{"example_id", "class" | "negative"}]}.' },
  )
  .strict()
  .meta({
    id: 'ExampleChanges',
    description: `Extension: up to ${MAX_EXAMPLE_CHANGES} removals and moves, applied together as the next version.`,
  });

export const changedClassifierSchema = classifierSchema
  .extend({ changes: exampleChangeCountsSchema.meta({ description: 'What this request changed' }) })
  .meta({ id: 'ClassifierWithChanges', description: 'The classifier (retraining) and what the request changed.' });

export const examplePathSchema = z.object({ example_id: exampleIdSchema });

export type ExampleView = z.infer<typeof exampleSchema>;
export type ExampleListView = z.infer<typeof exampleListSchema>;
export type MistakeView = z.infer<typeof mistakeSchema>;
export type MistakeListView = z.infer<typeof mistakeListSchema>;
export type ExampleChanges = z.infer<typeof exampleChangesSchema>;
export type ChangedClassifierView = z.infer<typeof changedClassifierSchema>;

// ---------------------------------------------------------------- classify

export const classResultSchema = z
  .object({
    class: z.string(),
    score: z.number().min(0).max(1),
    type_hierarchy: z.string().optional().meta({
      description: 'Built-in classes: /-separated path from the most general',
      example: '/animal/domestic animal/dog',
    }),
  })
  .meta({ id: 'ClassResult' });

export const imageErrorSchema = z
  .object({ code: z.number().int(), description: z.string(), error_id: z.string().meta({ example: 'input_error' }) })
  .meta({ id: 'ImageError', description: 'Why one image could not be classified; the others still are.' });

export const classifiedImageSchema = z
  .object({
    image: z.string().optional().meta({ description: 'File name; inside a zip "<zip name>/<path in zip>"' }),
    source_url: z.string().optional().meta({ description: 'For a url input: the url sent' }),
    resolved_url: z.string().optional().meta({ description: 'For a url input: the url after redirects' }),
    classifiers: z
      .array(
        z.object({
          classifier_id: z.string(),
          name: z.string(),
          version_id: z
            .number()
            .int()
            .optional()
            .meta({ description: 'Extension: the version of a custom classifier that answered' }),
          classes: z.array(classResultSchema),
        }),
      )
      .optional(),
    error: imageErrorSchema.optional(),
  })
  .meta({ id: 'ClassifiedImage' });

export const classifyResponseSchema = z
  .object({
    images: z.array(classifiedImageSchema),
    images_processed: z.number().int().min(0),
    custom_classes: z
      .number()
      .int()
      .min(0)
      .meta({ description: 'All classes of the custom classifiers applied, whatever the threshold' }),
    warnings: z.array(warningSchema).optional(),
  })
  .meta({ id: 'ClassifyResponse' });

export type ClassifyResponse = z.infer<typeof classifyResponseSchema>;
export type ClassifiedImage = z.infer<typeof classifiedImageSchema>;
export type ImageError = z.infer<typeof imageErrorSchema>;
export type Warning = z.infer<typeof warningSchema>;

// ---------------------------------------------------------------- identity and operations

export const tokenResponseSchema = z
  .object({
    access_token: z.string(),
    refresh_token: z.string().meta({ description: 'Refreshing is not supported: ask for a new token' }),
    token_type: z.literal('Bearer'),
    expires_in: z.number().int().meta({ description: 'Seconds' }),
    expiration: z.number().int().meta({ description: 'Unix time in seconds' }),
  })
  .meta({ id: 'AccessToken' });

const TOKEN_FORM_ERROR =
  'Send grant_type=urn:ibm:params:oauth:grant-type:apikey and apikey=<your key> as an application/x-www-form-urlencoded body.';

/** POST /identity/token's form (IBM IAM's API-key grant). */
export const tokenRequestSchema = z.object({
  grant_type: z.literal('urn:ibm:params:oauth:grant-type:apikey', { error: TOKEN_FORM_ERROR }),
  apikey: z
    .string({ error: TOKEN_FORM_ERROR })
    .min(1, { error: TOKEN_FORM_ERROR })
    .meta({ description: 'Your API key' }),
});

export const healthSchema = z.object({ status: z.literal('ok') }).meta({ id: 'Health' });

export const readinessCheckSchema = z.object({
  ok: z.boolean(),
  reason: z.string().optional().meta({ description: 'Why the check failed' }),
});

export const readinessSchema = z
  .object({
    status: z.enum(['ready', 'not ready']),
    checks: z.object({ database: readinessCheckSchema, redis: readinessCheckSchema, models: readinessCheckSchema }),
  })
  .meta({ id: 'Readiness' });

export type Readiness = z.infer<typeof readinessSchema>;

// ---------------------------------------------------------------- web console

/**
 * The upload limits the server writes into the console's page (a meta tag, not an API answer), so the
 * console checks what this server enforces; the console's type of it is generated from this schema.
 */
export const consoleLimitsSchema = z
  .object({
    maxZipBytes: z.number().int(),
    maxRequestBytes: z.number().int(),
    minImagesPerZip: z.number().int(),
    maxImagesPerZip: z.number().int(),
    maxClassifyImageBytes: z.number().int(),
  })
  .meta({ id: 'ConsoleLimits' });

export type ConsoleLimits = z.infer<typeof consoleLimitsSchema>;

// ---------------------------------------------------------------- requests

const DATE = /^\d{4}-\d{2}-\d{2}$/;

export const versionQuerySchema = z.object({
  version: z
    .string({
      error: (iss) =>
        iss.input === undefined || iss.input === ''
          ? "Missing 'version' query parameter. Add ?version=2018-03-19 to the URL."
          : `The 'version' query parameter '${String(iss.input)}' is not a date in the form YYYY-MM-DD. Use, for example, version=2018-03-19.`,
    })
    .min(1, { error: "Missing 'version' query parameter. Add ?version=2018-03-19 to the URL." })
    .refine((v) => DATE.test(v) && !Number.isNaN(Date.parse(v)), {
      error: (iss) =>
        `The 'version' query parameter '${String(iss.input)}' is not a date in the form YYYY-MM-DD. Use, for example, version=2018-03-19.`,
    })
    .meta({ description: 'API version date, YYYY-MM-DD', example: '2018-03-19' }),
});

export const listQuerySchema = z.object({
  verbose: z
    .string()
    .optional()
    .transform((v) => v === 'true')
    .meta({ description: 'true: full Classifier objects; otherwise brief entries' }),
});

const MISSING_CUSTOMER_ID =
  "Missing required parameter 'customer_id'. Add ?customer_id=<the id you sent in X-Watson-Metadata>.";

export const userDataQuerySchema = z.object({
  customer_id: z
    .string({
      error: (iss) =>
        Array.isArray(iss.input)
          ? "The parameter 'customer_id' was sent more than once. Send it once: one DELETE deletes the data of one customer id."
          : MISSING_CUSTOMER_ID,
    })
    .trim()
    .refine((v) => v !== '', { error: MISSING_CUSTOMER_ID, abort: true })
    .superRefine((v, ctx) => {
      const problem = customerIdProblem(v);
      if (problem) {
        ctx.addIssue({
          code: 'custom',
          message: `The parameter 'customer_id' ${problem}, so no upload can carry it as its X-Watson-Metadata: customer_id=<id> label; nothing was deleted.`,
        });
      }
    })
    .meta({
      description: `The customer id uploads were labelled with (X-Watson-Metadata: customer_id=<id>): 1 to ${MAX_CUSTOMER_ID_LENGTH} characters, none of them ';', '=', ',' or a control character`,
    }),
});

export const MAX_CLASSIFIER_NAME_LENGTH = 1024;
const MISSING_NAME = "Missing required parameter 'name'. Send the classifier's name as the form field 'name'.";

export const classifierNameSchema = z
  .string({
    error: (iss) => {
      if (iss.input === undefined) return MISSING_NAME;
      const what = Array.isArray(iss.input) ? `${iss.input.length} values` : 'a structured value';
      return `The field 'name' arrived as ${what}. Send the classifier's name once, as plain text.`;
    },
  })
  .trim()
  .min(1, { error: MISSING_NAME })
  .max(MAX_CLASSIFIER_NAME_LENGTH, {
    error: (iss) =>
      `The classifier name is ${String(iss.input).length} characters long; at most ${MAX_CLASSIFIER_NAME_LENGTH} are allowed.`,
  })
  .meta({ description: "The classifier's name", example: 'dogs' });

const zipFile = z
  .string()
  .meta({ override: { type: 'string', contentMediaType: 'application/zip', format: 'binary' } });

/** The multipart form of create and update; file fields are read from the parts (see training-form.ts). */
export const trainingFormSchema = (nameRequired: boolean) =>
  z
    .object({
      ...(nameRequired ? { name: classifierNameSchema } : {}),
      negative_examples: zipFile
        .optional()
        .meta({ description: 'At most one zip of images that depict none of the classes' }),
      callback_url: z.string().optional().meta({
        description:
          'Extension: http(s) URL POSTed when training ends (signed, see GET /v3/callback_secret); empty removes it',
      }),
    })
    .meta({
      override: ({ jsonSchema }: { jsonSchema: Record<string, unknown> }) => {
        jsonSchema.patternProperties = {
          '^.+_positive_examples$': {
            type: 'string',
            contentMediaType: 'application/zip',
            format: 'binary',
            description:
              'A zip of at least 10 example images of the class named before _positive_examples (case-sensitive). A non-ASCII class name goes in UTF-8, as name="Müll_positive_examples" or in RFC 2231 form, name*=utf-8\'\'M%C3%BCll_positive_examples',
          },
        };
      },
    });

const OWNER = /^(ibm|me)$/i;
const NUMBER = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/;
const thresholdError = (iss: { input?: unknown }) =>
  `The threshold '${String(iss.input)}' is not valid. Send a number from 0.0 to 1.0 (the default is 0.5).`;

const listField = (name: string, description: string) =>
  z
    .union([z.string(), z.array(z.string())], {
      error: `The parameter '${name}' must be a comma-separated list of strings.`,
    })
    .optional()
    .transform((value) => {
      if (value === undefined) return undefined;
      const items: string[] = [];
      for (const part of Array.isArray(value) ? value : [value]) {
        for (const item of part.split(',')) {
          const trimmed = item.trim();
          if (trimmed !== '' && !items.includes(trimmed)) items.push(trimmed);
        }
      }
      return items.length > 0 ? items : undefined;
    })
    .meta({ description });

export const DEFAULT_THRESHOLD = 0.5;

/** Classify inputs: form fields (POST), query parameters (GET), or the legacy `parameters` JSON. */
export const classifyFieldsSchema = z.object({
  url: z
    .union([z.string(), z.array(z.string()).transform((v) => v[0])], { error: "The 'url' parameter must be a string." })
    .optional()
    .meta({
      description: 'An image URL to fetch (at most 10 MB, redirects followed; no private addresses unless allowed)',
    }),
  classifier_ids: listField(
    'classifier_ids',
    'Comma-separated classifier ids, or the field repeated; overrides owners. Built-ins: default, explicit. Extension: <classifier_id>@<version_id> pins a version',
  ),
  owners: listField(
    'owners',
    'Comma-separated IBM (built-in default) and/or me (all your classifiers); neither: default only',
  ).pipe(
    z
      .array(
        z.string().regex(OWNER, {
          error: (iss) =>
            `The owner '${String(iss.input)}' is not valid. Use owners=IBM (built-in classifiers), owners=me (your classifiers), or both.`,
        }),
      )
      .optional()
      .transform(
        (owners) =>
          owners && [...new Set(owners.map((o) => (o.toLowerCase() === 'ibm' ? ('IBM' as const) : ('me' as const))))],
      ),
  ),
  threshold: z
    .union(
      [
        z.number({ error: thresholdError }),
        z.string({ error: thresholdError }).regex(NUMBER, { error: thresholdError }).transform(Number),
      ],
      { error: thresholdError },
    )
    .pipe(z.number().min(0, { error: thresholdError }).max(1, { error: thresholdError }))
    .optional()
    .meta({ description: 'Minimum score of a class to be returned, 0.0 to 1.0 (default 0.5)' }),
  parameters: z.string({ error: "The 'parameters' field must be a JSON object." }).optional().meta({
    description:
      'Legacy: JSON {"url", "classifier_ids": [...], "owners": [...], "threshold"}; plain fields take precedence',
  }),
});

export type ClassifyFields = z.input<typeof classifyFieldsSchema>;
