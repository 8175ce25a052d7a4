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

  it('serves a docs page', async () => {
    const res = await server.request('/docs/');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /text\/html/);
  });
});
