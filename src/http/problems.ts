/**
 * The one place errors become HTTP answers: RFC 9457 problem documents.
 *
 * Domain errors carry their catalog code; Fastify's own errors (validation, body limits,
 * bad URLs) are mapped onto the same catalog; anything else is a 500 whose body reveals
 * nothing and whose cause is logged once, with the request id.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, ERROR_CATALOG, problemType, type ErrorCode, type FieldError } from '../errors.js';
import type { Problem } from '../protocol/types.js';
import { fieldErrors } from './validation.js';

/** The media type of every error answer. */
export const PROBLEM_TYPE = 'application/problem+json; charset=utf-8';

const CODE_BY_STATUS: Record<number, ErrorCode> = {
  400: 'validation', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found', 405: 'method_not_allowed',
  413: 'payload_too_large', 415: 'unsupported_media_type', 429: 'rate_limited', 503: 'server_busy',
};

/** Writes a problem document for an {@link AppError}. */
export function sendProblem(reply: FastifyReply, err: AppError, extra: Record<string, unknown> = {}): FastifyReply {
  const body: Problem & Record<string, unknown> = {
    type: problemType(err.code),
    title: err.title,
    status: err.status,
    detail: err.message,
    errors: err.errors,
    ...extra,
  };
  return reply.code(err.status).headers(err.headers).type(PROBLEM_TYPE).send(JSON.stringify(body));
}

/** Maps any thrown value to the catalog. */
export function toAppError(error: unknown, bodyLimit: number): AppError | undefined {
  if (error instanceof AppError) return error;
  const err = error as FastifyError & { validationContext?: string };
  if (err.validation) {
    const errors: FieldError[] = fieldErrors(err.validation as never, err.validationContext ?? 'body');
    const detail = errors.map((e) => `${e.field} ${e.message}`).join('; ');
    return new AppError('validation', detail || 'the request is invalid', { errors });
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError('payload_too_large', `the body is larger than the ${bodyLimit}-byte limit`, {
        errors: [{ field: 'body', message: `must be at most ${bodyLimit} bytes` }],
      });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new AppError('validation', 'Content-Length does not match the body', {
        errors: [{ field: 'Content-Length', message: 'does not match the body' }],
      });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError('unsupported_media_type', err.message);
    default:
      break;
  }
  const status = err.statusCode ?? 0;
  if (status >= 400 && status < 500) {
    const code = CODE_BY_STATUS[status] ?? 'validation';
    return new AppError(code, err.message || ERROR_CATALOG[code].title);
  }
  return undefined;
}

/** Installs the error handler, the 404 handler and Fastify's framework-error hooks. */
export function registerProblemHandlers(app: FastifyInstance, bodyLimit: number): void {
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const known = toAppError(error, bodyLimit);
    if (known) {
      if (known.status < 500) return sendProblem(reply, known);
      // A 5xx is our trouble, not the client's: the id lets an operator find the logged cause
      // from what the client holds, whether or not the catalog knows the failure.
      request.log.warn({ err: error }, known.message);
      return sendProblem(reply, known, { requestId: request.id });
    }
    request.log.error({ err: error }, 'request failed');
    const internal = new AppError('internal', 'something went wrong on our side; the request id helps us find it');
    return sendProblem(reply, internal, { requestId: request.id });
  });

  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, new AppError('not_found', `no route for ${request.method} ${request.url.split('?')[0]}`)));
}

/** Answers `GET /problems/{code}`: what a problem type means, for a person who follows the link. */
export function problemCatalog(): { code: ErrorCode; status: number; title: string }[] {
  return (Object.keys(ERROR_CATALOG) as ErrorCode[]).map((code) => ({ code, ...ERROR_CATALOG[code] }));
}

/** Registers `GET /problems/{code}`, the page a problem's `type` points to. */
export function problemRoutes(app: FastifyInstance): void {
  app.get('/problems/:code', { config: { access: 'public' }, schema: { hide: true } }, (request, reply) => {
    const { code } = request.params as { code: string };
    const entry = problemCatalog().find((p) => p.code === code);
    if (!entry) return sendProblem(reply, new AppError('not_found', `no problem type "${code}"`));
    return reply.type('text/plain; charset=utf-8').send(
      `${entry.title} (HTTP ${entry.status})\n\nPostbox answers with problem type ${problemType(entry.code)} ` +
      'as an application/problem+json document (RFC 9457). Its "detail" says what happened and its "errors" ' +
      'name each field that was wrong.\n',
    );
  });
}
