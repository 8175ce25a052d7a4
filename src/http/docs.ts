/**
 * The OpenAPI 3.1 document, generated from the routes' TypeBox schemas (there is no other
 * source), at `GET /openapi.json`, and a rendered docs page at `GET /docs`.
 *
 * The document is the truth for the mode the server runs in: it lists every status an
 * operation can answer (the problem answers common to all routes are added here, with the
 * per-operation ones in {@link OPERATION_ANSWERS}; those any request can get, whatever its
 * route, are shared components), every header each answer carries, and whether a call
 * needs a token.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { ProblemSchema, SEND_BODY_TITLE } from './schemas.js';

const PROBLEM_CONTENT = { 'application/problem+json': { schema: ProblemSchema } };

function problem(description: string): { description: string; content: typeof PROBLEM_CONTENT } {
  return { description, content: PROBLEM_CONTENT };
}

const NO_WEBHOOK = problem('No such webhook endpoint.');

const SEND_ANSWERS = {
  404: problem('Token mode: toUser is not a user (unknown_recipient); nothing is stored.'),
  422: problem('The Idempotency-Key was used by this sender for a different message in the last 24 h.'),
};

/**
 * Problem answers of single operations, by `METHOD path` as registered: what the domain
 * can refuse there beyond the answers every route shares.
 */
const OPERATION_ANSWERS: Record<string, Record<string, unknown>> = {
  'POST /post-message': SEND_ANSWERS,
  'POST /v1/messages': SEND_ANSWERS,
  'GET /v1/messages/:id': { 404: problem('No such message, or (token mode) not one the caller sent or received.') },
  'DELETE /v1/messages/:id': { 404: problem('No such message, or (token mode) not one the caller sent or received.') },
  'POST /v1/users': { 409: problem('The id is taken, or reserved by a removed user (remove it with purge=true to free it).') },
  'DELETE /v1/users/:user': { 404: problem('No such user (nor a removed one whose id is reserved).') },
  'POST /v1/users/:user/tokens': { 404: problem('No such user.') },
  'GET /v1/users/:user/stream': {
    429: problem('Rate-limited, or the user already holds POSTBOX_STREAMS_PER_USER streams.'),
  },
  'GET /v1/webhooks/:id': { 404: NO_WEBHOOK },
  'PATCH /v1/webhooks/:id': { 404: NO_WEBHOOK },
  'DELETE /v1/webhooks/:id': { 404: NO_WEBHOOK },
  'GET /v1/webhooks/:id/deliveries': { 404: NO_WEBHOOK },
  'POST /v1/webhooks/:id/deliveries/:deliveryId/retry': { 404: problem('No such webhook endpoint, or no such delivery of it.') },
  'GET /metrics': {
    200: { description: 'Prometheus text exposition format.', content: { 'text/plain': { schema: { type: 'string' } } } },
  },
};

/**
 * Operations that act as a user but that open mode allows only to the admin token: issuing
 * and revoking a user's tokens (without tokens, "that user" cannot be told from anyone).
 */
const OPEN_MODE_ADMIN_ONLY = new Set(['POST /v1/users/:user/tokens', 'DELETE /v1/users/:user/tokens']);

/** Operations whose success answer says where the new resource is (`Location`). */
const LOCATION_ANSWERS: Record<string, string> = {
  'POST /post-message': '202',
  'POST /v1/messages': '201',
  'POST /v1/users': '201',
  'POST /v1/webhooks': '201',
};

/** What a route's documented answers depend on. */
interface RouteFacts {
  method: string;
  url: string;
  access: string | undefined;
  hasInput: boolean;
  hasBody: boolean;
  mode: 'open' | 'token';
}

const ref = (kind: 'headers' | 'responses', name: string) => ({ $ref: `#/components/${kind}/${name}` });

/** The headers answers carry, described once and referenced from each answer that can carry them. */
const HEADERS = {
  'X-Content-Type-Options': {
    description: 'On every answer: API answers are data, never pages to sniff.',
    required: true, schema: { type: 'string', const: 'nosniff' },
  },
  'X-Frame-Options': {
    description: 'On every answer: never framed.',
    required: true, schema: { type: 'string', const: 'DENY' },
  },
  'Cache-Control': {
    description: '`no-store` on every answer of an operation that acts as a user or needs a token, and on any ' +
      'answer to a request that carried `Authorization` (the event stream: `no-store, no-transform`); absent otherwise.',
    schema: { type: 'string' },
  },
  'RateLimit-Limit': {
    description: 'Requests a minute the caller\'s bucket (its token, else its address) allows; on every answer of a limited operation.',
    schema: { type: 'integer', minimum: 0 },
  },
  'RateLimit-Remaining': { description: 'Requests left in the current window.', schema: { type: 'integer', minimum: 0 } },
  'RateLimit-Reset': { description: 'Seconds until the window starts over.', schema: { type: 'integer', minimum: 0 } },
  'Retry-After': { description: 'Seconds to wait before trying again.', required: true, schema: { type: 'integer', minimum: 0 } },
  Location: { description: 'The path of the created message, user or webhook.', required: true, schema: { type: 'string' } },
  'Idempotent-Replayed': {
    description: '`true` when the Idempotency-Key was seen before and this is the message first stored for it.',
    schema: { type: 'string', const: 'true' },
  },
  Allow: { description: 'The methods this path answers.', required: true, schema: { type: 'string' } },
  'WWW-Authenticate': {
    description: '`Bearer realm="postbox"`, with `error="invalid_token"` and why for a refused JWT.',
    required: true, schema: { type: 'string' },
  },
  'X-Accel-Buffering': { description: '`no`: a proxy (nginx) must pass events on at once.', schema: { type: 'string', const: 'no' } },
};

type HeaderName = keyof typeof HEADERS;
const SECURITY_HEADER_NAMES: HeaderName[] = ['X-Content-Type-Options', 'X-Frame-Options'];
const RATE_LIMIT_HEADER_NAMES: HeaderName[] = ['RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'];

function headerRefs(names: HeaderName[]): Record<string, unknown> {
  return Object.fromEntries(names.map((n) => [n, ref('headers', n)]));
}

/**
 * Answers any request can get whatever its operation, described once. 405, 408 and 431 come
 * before a route is known; 500 and 503 from storage or a graceful stop.
 */
const SHARED_RESPONSES = {
  MethodNotAllowed: {
    description: 'A method this path does not list (PUT, TRACE, QUERY, …); Allow names those it does. Counted by the ' +
      'rate limiter where the path\'s operations are.',
    headers: headerRefs(['Allow', ...SECURITY_HEADER_NAMES, 'Cache-Control', ...RATE_LIMIT_HEADER_NAMES]),
    content: PROBLEM_CONTENT,
  },
  RequestTimeout: {
    description: 'The headers (POSTBOX_HEADERS_TIMEOUT_SECONDS) or the whole request (POSTBOX_REQUEST_TIMEOUT_SECONDS) ' +
      'did not arrive in time; the connection is closed.',
    headers: headerRefs(SECURITY_HEADER_NAMES),
    content: PROBLEM_CONTENT,
  },
  HeadersTooLarge: {
    description: 'The request headers are too large; the connection is closed.',
    headers: headerRefs(SECURITY_HEADER_NAMES),
    content: PROBLEM_CONTENT,
  },
  InternalError: {
    description: 'Something failed on the server (a damaged database included); requestId names the logged cause.',
    headers: headerRefs([...SECURITY_HEADER_NAMES, 'Cache-Control', ...RATE_LIMIT_HEADER_NAMES]),
    content: PROBLEM_CONTENT,
  },
  Unavailable: {
    description: 'Storage unavailable, or the server is stopping (then with Connection: close); see Retry-After.',
    headers: headerRefs(['Retry-After', ...SECURITY_HEADER_NAMES, 'Cache-Control', ...RATE_LIMIT_HEADER_NAMES]),
    content: PROBLEM_CONTENT,
  },
};

/** Shared answers by status, as every operation references them. */
const SHARED_BY_STATUS: Record<string, keyof typeof SHARED_RESPONSES> = {
  405: 'MethodNotAllowed', 408: 'RequestTimeout', 431: 'HeadersTooLarge', 500: 'InternalError', 503: 'Unavailable',
};

/** The headers an operation's answer of `status` may carry. */
function answerHeaders(key: string, facts: RouteFacts | undefined, status: string): HeaderName[] {
  const limited = facts !== undefined && facts.access !== 'public';
  const names: HeaderName[] = [...SECURITY_HEADER_NAMES, 'Cache-Control'];
  if (limited) names.push(...RATE_LIMIT_HEADER_NAMES);
  if (status === '429' || status === '503') names.push('Retry-After');
  if (status === '401') names.push('WWW-Authenticate');
  if (LOCATION_ANSWERS[key] === status) names.push('Location');
  if (key === 'POST /v1/messages' && status === '201') names.push('Idempotent-Replayed');
  if (key === 'GET /v1/users/:user/stream' && status === '200') names.push('X-Accel-Buffering');
  return names;
}

/** Adds the shared answers and every answer's headers to the generated document. */
function completeDocument(doc: Record<string, unknown>, facts: ReadonlyMap<string, RouteFacts>): Record<string, unknown> {
  const components = { ...(doc.components as Record<string, unknown> | undefined) };
  components.headers = HEADERS;
  components.responses = SHARED_RESPONSES;
  const paths = (doc.paths ?? {}) as Record<string, Record<string, Record<string, unknown>>>;
  for (const [path, ops] of Object.entries(paths)) {
    for (const [method, op] of Object.entries(ops)) {
      // The route's own key, as OPERATION_ANSWERS names it.
      const key = `${method.toUpperCase()} ${path.replace(/\{([^}]+)\}/g, ':$1')}`;
      const routeFacts = facts.get(key);
      const responses = { ...(op.responses as Record<string, Record<string, unknown>>) };
      for (const [status, answer] of Object.entries(responses)) {
        responses[status] = { ...answer, headers: { ...headerRefs(answerHeaders(key, routeFacts, status)), ...(answer.headers as object | undefined) } };
      }
      for (const [status, name] of Object.entries(SHARED_BY_STATUS)) responses[status] = ref('responses', name);
      op.responses = responses;
    }
  }
  return { ...doc, components };
}

/** Problem answers a route can give whatever its operation: input, access, limits, outages. */
function commonAnswers(r: RouteFacts): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const guarded = r.access === 'user' || r.access === 'admin';
  if (r.hasInput) out['400'] = problem('Invalid input: the problem names each field.');
  if (r.access === 'admin' || (r.access === 'user' && r.mode === 'token')) {
    out['401'] = problem('No valid bearer token.');
  }
  if (guarded) {
    out['403'] = problem(r.mode === 'open'
      ? 'Open mode: a cross-site request (a foreign Origin, or a Host that is not this server), or a call that needs the admin token.'
      : 'The token may not act on this data.');
  }
  if (r.hasBody) {
    out['413'] = problem('The body (or the message) is larger than the limit.');
    out['415'] = problem('The body cannot be read: compressed, multipart, or not UTF-8.');
  }
  if (guarded) out['429'] = problem('Rate-limited; see Retry-After and the RateLimit headers.');
  return out;
}

/** How the document names the caller a route needs, in this mode. */
function security(access: string | undefined, mode: 'open' | 'token', adminInOpenMode: boolean): unknown[] | undefined {
  if (access === 'admin') return [{ bearer: [] }];
  if (access !== 'user') return undefined;
  // Open mode: anyone may call without a token (the empty requirement); a token is accepted.
  return mode === 'open' && !adminInOpenMode ? [{}, { bearer: [] }] : [{ bearer: [] }];
}

/** The send body as open mode reads it: the sender cannot come from a token, so it is required. */
function withSenderRequired(body: Record<string, unknown>): Record<string, unknown> {
  const required = new Set([...((body.required as string[] | undefined) ?? []), 'fromUser']);
  return { ...body, required: [...required], description: 'Open mode: fromUser, toUser and message are all required.' };
}

/** Registers the document generator and the docs page. */
export async function docsRoutes(app: FastifyInstance, options: { version: string; mode: 'open' | 'token' | 'jwt' }): Promise<void> {
  // JWT mode answers as token mode does; only what a bearer token may be differs.
  const mode = options.mode === 'jwt' ? 'token' : options.mode;
  const facts = new Map<string, RouteFacts>();
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Postbox',
        version: options.version,
        description: 'A self-hosted messaging API. Errors are application/problem+json (RFC 9457). ' +
          'The seed-compatible routes (tag "seed") are frozen. ' +
          (options.mode === 'open'
            ? 'This server runs in open mode: no token is needed, except the admin token for managing users and tokens.'
            : `This server runs in ${options.mode} mode: every call but health, metrics, docs and GET /v1/server needs a bearer token.`),
      },
      components: {
        securitySchemes: {
          bearer: {
            type: 'http', scheme: 'bearer',
            description: 'A user token (pbx_…), the admin token (POSTBOX_ADMIN_TOKEN), or with POSTBOX_AUTH=jwt the ' +
              'application\'s own JWT, whose sub is the user' + (options.mode === 'jwt' ? ' (this server runs in JWT mode).' : '.'),
          },
        },
      },
      tags: [
        { name: 'seed', description: 'The python-class-messaging endpoints, unchanged.' },
        { name: 'messages' }, { name: 'conversations' }, { name: 'users' }, { name: 'stream' }, { name: 'operations' },
      ],
    },
    transform: ({ schema, url, route }) => {
      const access = route.config?.access;
      const s = { ...(schema ?? {}) } as Record<string, unknown>;
      const method = (Array.isArray(route.method) ? route.method[0] : route.method) as string;
      const routeFacts: RouteFacts = {
        method, url: route.url, access, mode,
        hasInput: Boolean(s.body || s.querystring || s.params || s.headers),
        hasBody: Boolean(s.body),
      };
      const key = `${method} ${route.url}`;
      if (!s.hide) facts.set(key, routeFacts);
      s.response = {
        ...commonAnswers(routeFacts),
        ...OPERATION_ANSWERS[key],
        ...(s.response as object | undefined),
      };
      const adminInOpenMode = OPEN_MODE_ADMIN_ONLY.has(key);
      if (adminInOpenMode && mode === 'open') {
        (s.response as Record<string, unknown>)['403'] = problem('Open mode: only the admin token may manage tokens; or a cross-site request.');
      }
      const sec = security(access, mode, adminInOpenMode);
      if (sec) s.security = sec;
      if (mode === 'open' && (s.body as { title?: string } | undefined)?.title === SEND_BODY_TITLE) {
        s.body = withSenderRequired(s.body as Record<string, unknown>);
      }
      return { schema: s, url };
    },
    transformObject: (documents) => completeDocument((documents as { openapiObject: Record<string, unknown> }).openapiObject, facts) as never,
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    // The plugin's policy ends with upgrade-insecure-requests, which blanks the page when it
    // is opened over plain HTTP on a network address; forcing https is the proxy's business.
    transformStaticCSP: (header: string) => header.replace(/\s*upgrade-insecure-requests;?/, '').trim(),
  });

  app.get('/openapi.json', {
    config: { access: 'public' },
    schema: { hide: true },
  }, (_request, reply) => reply.type('application/json; charset=utf-8').send(JSON.stringify(app.swagger())));
}
