import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';

interface MediaType {
  schema?: object;
}
interface ResponseObject {
  content?: Record<string, MediaType>;
}
interface OpenApi {
  paths: Record<string, Record<string, { responses: Record<string, ResponseObject> }>>;
  components?: object;
}

const COMPONENTS_ID = 'openapi-components';

/**
 * Checks real answers against the service's own OpenAPI document: the status must be documented for
 * the operation, and a JSON body must match that status's schema. A path or method the document
 * does not have must answer 404 with the Error body (the service's catch-all).
 */
export class OpenApiContract {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
  private readonly routes: Array<{ template: string; pattern: RegExp }>;
  private readonly compiled = new Map<string, ValidateFunction>();

  constructor(private readonly document: OpenApi) {
    addFormats(this.ajv);
    this.ajv.addFormat('binary', true);
    this.ajv.addSchema({ $id: COMPONENTS_ID, components: document.components ?? {} });
    this.routes = Object.keys(document.paths).map((template) => ({
      template,
      pattern: new RegExp(
        `^${template
          .split(/\{[^}]+\}/)
          .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
          .join('[^/]+')}$`,
      ),
    }));
  }

  /** The problems of one answer; empty when it is as documented. */
  problems(method: string, pathAndQuery: string, status: number, contentType: string | null, body: unknown): string[] {
    const path = new URL(pathAndQuery, 'http://x').pathname;
    const route = this.routes.find((r) => r.pattern.test(path));
    const operation = route && this.document.paths[route.template][method.toLowerCase()];
    const where = `${method} ${route?.template ?? path} → ${status}`;
    if (!route || !operation) {
      if (status !== 404)
        return [`${where}: the path and method are not in the OpenAPI document, yet did not answer 404`];
      return this.bodyProblems(
        where,
        'Error',
        { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        contentType,
        body,
      );
    }
    const response = operation.responses[String(status)];
    if (!response) return [`${where}: status ${status} is not documented for this operation`];
    return this.bodyProblems(where, `${route.template}/${method}/${status}`, response.content, contentType, body);
  }

  private bodyProblems(
    where: string,
    key: string,
    content: Record<string, MediaType> | undefined,
    contentType: string | null,
    body: unknown,
  ): string[] {
    if (!content)
      return body === ''
        ? []
        : [`${where}: documented without a body, but one came: ${JSON.stringify(body).slice(0, 200)}`];
    const mediaType = (contentType ?? '').split(';')[0].trim();
    const documented = content[mediaType];
    if (!documented)
      return [
        `${where}: content type '${mediaType}' is not documented (documented: ${Object.keys(content).join(', ')})`,
      ];
    if (mediaType !== 'application/json' || !documented.schema) return [];
    const validate = this.validator(`${key}:${mediaType}`, documented.schema);
    if (validate(body)) return [];
    return [
      `${where}: the body does not match its schema: ${this.ajv.errorsText(validate.errors)}; body: ${JSON.stringify(body).slice(0, 500)}`,
    ];
  }

  private validator(key: string, schema: object): ValidateFunction {
    let validate = this.compiled.get(key);
    if (!validate) {
      // The document's refs point into its own components, which live under their own $id here.
      const rebased = JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', `"${COMPONENTS_ID}#/components/`));
      validate = this.ajv.compile(rebased);
      this.compiled.set(key, validate);
    }
    return validate;
  }
}
