/**
 * The one place errors become HTTP answers: RFC 9457 problem documents.
 *
 * Domain errors carry their catalog code; Fastify's own errors (validation, body limits,
 * bad URLs) are mapped onto the same catalog; anything else is a 500 whose body reveals
 * nothing and whose cause is logged once, with the request id.
 */
import type { Socket } from 'node:net';
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

/** Headers every answer carries, the ones written straight to a socket included. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  // API answers are data, never pages to sniff or to frame.
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
});

/**
 * Node's `clientError` handler: a request that broke before a route could see it (headers or
 * body too slow, a header too large, bytes that are not HTTP) is answered with a problem
 * document written straight to the socket, which is then closed. A stalled body is a 408.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  let err: AppError;
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    err = new AppError('request_timeout', 'the request was not received in time; it was dropped');
  } else if (error.code === 'HPE_HEADER_OVERFLOW') {
    err = new AppError('header_too_large', 'the request headers are too large');
  } else {
    err = new AppError('validation', 'the request is not valid HTTP/1.1');
  }
  // A response already begun on this socket must not be corrupted by a second one.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    const body = JSON.stringify({
      type: problemType(err.code), title: err.title, status: err.status, detail: err.message, errors: err.errors,
    } satisfies Problem);
    const headers = { 'Content-Type': PROBLEM_TYPE, 'Content-Length': String(Buffer.byteLength(body)), Connection: 'close', ...SECURITY_HEADERS };
    socket.write(`HTTP/1.1 ${err.status} ${err.title}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`);
  }
  socket.destroy();
}

/** Installs the error handler. */
export function registerProblemHandlers(app: FastifyInstance, bodyLimit: number): void {
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const known = toAppError(error, bodyLimit);
    if (known) {
      if (known.status < 500) return sendProblem(reply, known);
      // A 5xx is our trouble, not the client's: the id lets an operator find the logged cause
      // from what the client holds, whether or not the catalog knows the failure.
      if (known.status === 500) {
        // A known internal failure (a damaged database): logged as an error under its own
        // name, answered like any other 500 so the body reveals nothing.
        request.log.error({ err: error }, known.message);
        return sendProblem(reply, new AppError('internal', 'something went wrong on our side; the request id helps us find it'), { requestId: request.id });
      }
      request.log.warn({ err: error }, known.message);
      return sendProblem(reply, known, { requestId: request.id });
    }
    request.log.error({ err: error }, 'request failed');
    const internal = new AppError('internal', 'something went wrong on our side; the request id helps us find it');
    return sendProblem(reply, internal, { requestId: request.id });
  });

}

/**
 * Installs the 404 handler for unknown routes; `limit` (the rate limiter) counts them, so
 * their answers carry the RateLimit headers like any other.
 */
export function registerNotFound(app: FastifyInstance, limit?: (request: FastifyRequest, reply: FastifyReply) => Promise<void>): void {
  app.setNotFoundHandler(limit ? { preHandler: limit } : {}, (request, reply) =>
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
