/**
 * The OpenAPI 3.1 document, generated from the routes' TypeBox schemas (there is no other
 * source), at `GET /openapi.json`, and a rendered docs page at `GET /docs`.
 *
 * The document is the truth for the mode the server runs in: it lists every status an
 * operation can answer (the problem answers common to all routes are added here, with the
 * per-operation ones in {@link OPERATION_ANSWERS}), and says whether a call needs a token.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { ProblemSchema, SEND_BODY_TITLE } from './schemas.js';

const PROBLEM_CONTENT = { 'application/problem+json': { schema: ProblemSchema } };

function problem(description: string): { description: string; content: typeof PROBLEM_CONTENT } {
  return { description, content: PROBLEM_CONTENT };
}

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
  'GET /metrics': {
    200: { description: 'Prometheus text exposition format.', content: { 'text/plain': { schema: { type: 'string' } } } },
  },
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
  out['500'] = problem('Something failed on the server (a damaged database included); requestId names the logged cause.');
  out['503'] = problem('Storage unavailable, or the server is stopping; see Retry-After.');
  return out;
}

/** How the document names the caller a route needs, in this mode. */
function security(access: string | undefined, mode: 'open' | 'token'): unknown[] | undefined {
  if (access === 'admin') return [{ bearer: [] }];
  if (access !== 'user') return undefined;
  // Open mode: anyone may call without a token (the empty requirement); a token is accepted.
  return mode === 'open' ? [{}, { bearer: [] }] : [{ bearer: [] }];
}

/** The send body as open mode reads it: the sender cannot come from a token, so it is required. */
function withSenderRequired(body: Record<string, unknown>): Record<string, unknown> {
  const required = new Set([...((body.required as string[] | undefined) ?? []), 'fromUser']);
  return { ...body, required: [...required], description: 'Open mode: fromUser, toUser and message are all required.' };
}

/** Registers the document generator and the docs page. */
export async function docsRoutes(app: FastifyInstance, options: { version: string; mode: 'open' | 'token' }): Promise<void> {
  const { mode } = options;
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Postbox',
        version: options.version,
        description: 'A self-hosted messaging API. Errors are application/problem+json (RFC 9457). ' +
          'The seed-compatible routes (tag "seed") are frozen. ' +
          (mode === 'open'
            ? 'This server runs in open mode: no token is needed, except the admin token for managing users.'
            : 'This server runs in token mode: every call but health, metrics and docs needs a bearer token.'),
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'A user token (pbx_…) or the admin token.' },
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
      const facts: RouteFacts = {
        method, url: route.url, access, mode,
        hasInput: Boolean(s.body || s.querystring || s.params || s.headers),
        hasBody: Boolean(s.body),
      };
      s.response = {
        ...commonAnswers(facts),
        ...OPERATION_ANSWERS[`${method} ${route.url}`],
        ...(s.response as object | undefined),
      };
      const sec = security(access, mode);
      if (sec) s.security = sec;
      if (mode === 'open' && (s.body as { title?: string } | undefined)?.title === SEND_BODY_TITLE) {
        s.body = withSenderRequired(s.body as Record<string, unknown>);
      }
      return { schema: s, url };
    },
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
