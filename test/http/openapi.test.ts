/**
 * The OpenAPI document: valid OpenAPI 3.1, generated from the route schemas, and naming
 * every registered route.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { buildTestApp, type TestApp } from '../helpers/app.js';

/** Routes that are not API operations: the document itself, its UI, problem pages, the web app. */
const NOT_OPERATIONS = [/^\/openapi\.json$/, /^\/docs/, /^\/problems\//, /^\/$/, /^\/app\//];

describe('OpenAPI document', () => {
  let server: TestApp;
  let doc: { openapi: string; paths: Record<string, Record<string, unknown>> };
  before(async () => {
    server = await buildTestApp();
    const res = await server.request('/openapi.json');
    assert.equal(res.status, 200);
    doc = res.json();
  });
  after(() => server.stop());

  it('is valid OpenAPI 3.1', async () => {
    assert.equal(doc.openapi, '3.1.0');
    const result = await new Validator().validate(doc);
    assert.ok(result.valid, JSON.stringify(result.errors, null, 2));
  });

  it('describes every registered route, and nothing else', () => {
    const expected = new Set<string>();
    for (const r of server.app.routeTable) {
      if (NOT_OPERATIONS.some((p) => p.test(r.url)) || r.method === 'HEAD') continue;
      const path = r.url.replace(/:(\w+)/g, '{$1}');
      expected.add(`${r.method.toLowerCase()} ${path}`);
    }
    const documented = new Set<string>();
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const method of Object.keys(ops)) if (method !== 'parameters') documented.add(`${method} ${path}`);
    }
    assert.deepEqual([...documented].sort(), [...expected].sort());
    assert.ok(expected.has('post /post-message') && expected.has('get /get-messages/{user}'));
  });

  it('documents the problem answers and the bearer scheme', () => {
    const send = doc.paths['/v1/messages']!.post as { responses: Record<string, unknown>; security?: unknown };
    for (const status of ['201', '400', '403', '404', '413', '415', '422', '429', '500', '503']) assert.ok(status in send.responses, status);
    assert.ok(!('401' in send.responses), 'open mode never answers a send with 401');
    // Open mode (this server): anonymous calls are allowed, a token is accepted.
    assert.deepEqual(send.security, [{}, { bearer: [] }]);
  });

  it('shares the answers any request can get, and names every answer\'s headers', () => {
    type Op = { responses: Record<string, { $ref?: string; headers?: Record<string, { $ref: string }> }>; security?: unknown };
    const full = doc as unknown as {
      paths: Record<string, Record<string, Op>>;
      components: { responses: Record<string, unknown>; headers: Record<string, unknown>; securitySchemes: { bearer: { description: string } } };
    };
    for (const [path, ops] of Object.entries(full.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const [status, name] of [['405', 'MethodNotAllowed'], ['408', 'RequestTimeout'], ['431', 'HeadersTooLarge'], ['500', 'InternalError'], ['503', 'Unavailable']] as const) {
          assert.equal(op.responses[status]?.$ref, `#/components/responses/${name}`, `${method} ${path} ${status}`);
        }
        for (const [status, answer] of Object.entries(op.responses)) {
          if (answer.$ref) continue;
          assert.ok(answer.headers?.['X-Frame-Options'], `${method} ${path} ${status} names its headers`);
        }
      }
    }
    for (const method of ['get', 'patch', 'delete']) assert.ok(full.paths['/v1/webhooks/{id}']![method]!.responses['404'], `${method} webhook 404`);
    assert.ok(full.paths['/v1/webhooks/{id}/deliveries/{deliveryId}/retry']!.post!.responses['404']);
    const sent = full.paths['/v1/messages']!.post!.responses['201']!.headers!;
    for (const h of ['Location', 'Idempotent-Replayed', 'RateLimit-Limit', 'Cache-Control']) assert.equal(sent[h]?.$ref, `#/components/headers/${h}`, h);
    assert.ok(full.paths['/v1/users']!.get!.responses['401']!.headers!['WWW-Authenticate']);
    assert.ok(full.paths['/v1/users/{user}/messages']!.get!.responses['429']!.headers!['Retry-After']);
    assert.equal(full.paths['/healthz']!.get!.responses['200']!.headers!['RateLimit-Limit'], undefined, 'health is never limited');
    assert.ok(full.components.headers['Allow'] && full.components.responses['MethodNotAllowed']);
    // Open mode: issuing and revoking tokens needs the admin token, not no token.
    assert.deepEqual(full.paths['/v1/users/{user}/tokens']!.post!.security, [{ bearer: [] }]);
    assert.deepEqual(full.paths['/v1/users/{user}/tokens']!.delete!.security, [{ bearer: [] }]);
    assert.match(full.components.securitySchemes.bearer.description, /JWT/);
  });

  it('says, in JWT mode, that a bearer token may be the application\'s JWT and what GET /v1/server answers', async () => {
    const jwtServer = await buildTestApp({ POSTBOX_AUTH: 'jwt', POSTBOX_JWT_SECRET: 'openapi-jwt-secret-long-enough-0123456789' });
    try {
      const jwtDoc = (await jwtServer.request('/openapi.json')).json<{
        components: { securitySchemes: { bearer: { description: string } }; schemas?: unknown };
        paths: Record<string, Record<string, { security?: unknown; responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>>;
      }>();
      assert.match(jwtDoc.components.securitySchemes.bearer.description, /JWT mode/);
      assert.deepEqual(jwtDoc.paths['/v1/users/{user}/messages']!.get!.security, [{ bearer: [] }]);
      const info = await jwtServer.request('/v1/server');
      assert.equal(info.json<{ auth: string }>().auth, 'token', 'JWT mode signs in as token mode does');
      assert.match(JSON.stringify(jwtDoc.paths['/v1/server']!.get!.responses['200']), /POSTBOX_AUTH=jwt/);
    } finally {
      await jwtServer.stop();
    }
  });

  it('serves a docs page', async () => {
    const res = await server.request('/docs/');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /text\/html/);
  });
});
