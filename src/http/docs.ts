/**
 * The OpenAPI 3.1 document, generated from the routes' TypeBox schemas (there is no other
 * source), at `GET /openapi.json`, and a rendered docs page at `GET /docs`.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { ProblemSchema } from './schemas.js';

const PROBLEM_CONTENT = { 'application/problem+json': { schema: ProblemSchema } };

/** Problem answers any route can give, added to every operation of the document. */
function problemResponses(access: string | undefined, hasInput: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (hasInput) out['400'] = { description: 'Invalid input: the problem names each field.', content: PROBLEM_CONTENT };
  if (access === 'user' || access === 'admin') {
    out['401'] = { description: 'Token mode: no valid bearer token.', content: PROBLEM_CONTENT };
    out['403'] = { description: 'The token may not act on this data.', content: PROBLEM_CONTENT };
    out['429'] = { description: 'Rate-limited; see Retry-After.', content: PROBLEM_CONTENT };
  }
  out['503'] = { description: 'Storage unavailable; see Retry-After.', content: PROBLEM_CONTENT };
  return out;
}

/** Registers the document generator and the docs page. */
export async function docsRoutes(app: FastifyInstance, options: { version: string }): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Postbox',
        version: options.version,
        description: 'A self-hosted messaging API. Errors are application/problem+json (RFC 9457). ' +
          'The seed-compatible routes (tag "seed") are frozen.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'A user token (pbx_…) or the admin token. Needed only in token mode.' },
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
      const hasInput = Boolean(s.body || s.querystring || s.params || s.headers);
      s.response = { ...problemResponses(access, hasInput), ...(s.response as object | undefined) };
      if (access === 'user' || access === 'admin') s.security = [{ bearer: [] }];
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
