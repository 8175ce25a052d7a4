/**
 * Open mode refuses cross-site use (a foreign Origin, a Host that is not this server's
 * name), while curl, the seed's `requests` and token mode are unaffected; and the headers
 * every answer carries.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Problem } from '../../src/protocol/types.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const ADMIN = 'admin-token-for-tests-0123456789';
const SEND = JSON.stringify({ fromUser: 'mallory', toUser: 'val', message: 'hi' });

describe('open mode against cross-site use', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ POSTBOX_ALLOWED_HOSTS: 'postbox.internal', POSTBOX_CORS_ORIGINS: 'https://app.example.com' });
  });
  after(() => server.stop());
  const inject = (method: 'GET' | 'POST', url: string, headers: Record<string, string>, payload?: string) =>
    server.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });

  it('refuses a send from a foreign page (a CORS simple request) with a 403 naming Origin, and stores nothing', async () => {
    const res = await inject('POST', '/post-message', { host: '127.0.0.1:8080', origin: 'https://evil.example', 'content-type': 'text/plain' }, SEND);
    assert.equal(res.statusCode, 403);
    assert.match(String(res.headers['content-type']), /problem\+json/);
    const problem = res.json<Problem>();
    assert.equal(problem.type, '/problems/forbidden');
    assert.deepEqual(problem.errors.map((e) => e.field), ['Origin']);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.ok(res.headers['ratelimit-remaining'] !== undefined, 'the refusal is counted by the limiter like any answer');
    const inbox = await inject('GET', '/get-messages/val', { host: '127.0.0.1:8080' });
    assert.deepEqual(inbox.json(), []);
  });

  it('refuses Origin: null (a sandboxed page or a local file)', async () => {
    const res = await inject('GET', '/get-messages/val', { host: 'localhost:8080', origin: 'null' });
    assert.equal(res.statusCode, 403);
  });

  it('refuses a Host that is not a name of this server (DNS rebinding) with a 403 naming Host', async () => {
    const res = await inject('GET', '/get-messages/val', { host: 'rebind.attacker.example:8080' });
    assert.equal(res.statusCode, 403);
    assert.deepEqual(res.json<Problem>().errors.map((e) => e.field), ['Host']);
  });

  it('answers the server\'s own origin, an allowed CORS origin, loopback names, IP addresses and POSTBOX_ALLOWED_HOSTS', async () => {
    const cases: Record<string, string>[] = [
      { host: 'localhost:8080', origin: 'http://localhost:8080' },
      { host: '127.0.0.1:8080', origin: 'http://127.0.0.1:8080' },
      { host: '[::1]:8080' },
      { host: 'dev.localhost' },
      { host: '192.168.1.20:8080', origin: 'http://192.168.1.20:8080' },
      { host: 'postbox.internal', origin: 'http://postbox.internal' },
      { host: 'localhost:8080', origin: 'https://app.example.com' },
    ];
    for (const headers of cases) {
      const res = await inject('GET', '/get-messages/val', headers);
      assert.equal(res.statusCode, 200, JSON.stringify(headers));
    }
  });

  it('refuses an origin on the right host but another port', async () => {
    const res = await inject('GET', '/get-messages/val', { host: 'localhost:8080', origin: 'http://localhost:3000' });
    assert.equal(res.statusCode, 403);
  });

  it('keeps curl and the seed\'s requests working (no Origin, no Content-Type)', async () => {
    const sent = await inject('POST', '/post-message', { host: `localhost:${new URL(server.url).port}` }, SEND);
    assert.equal(sent.statusCode, 202);
    // Over a real socket, as curl sends it.
    const res = await fetch(`${server.url}/get-messages/val`);
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as unknown[]).length, 1);
  });
});

describe('token mode and cross-site checks', () => {
  it('does not check Origin or Host: a bearer token is not ambient', async () => {
    const server = await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN });
    try {
      const created = await server.app.inject({
        method: 'POST', url: '/v1/users', headers: { authorization: `Bearer ${ADMIN}`, host: 'api.example.com', origin: 'https://other.example' },
        payload: { id: 'ann' },
      });
      assert.equal(created.statusCode, 201);
      const anonymous = await server.app.inject({ method: 'GET', url: '/v1/users/ann/messages', headers: { host: 'api.example.com', origin: 'https://evil.example' } });
      assert.equal(anonymous.statusCode, 401, 'no token is still a 401, not a 403 for the origin');
    } finally {
      await server.stop();
    }
  });
});

describe('headers on every answer', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN, POSTBOX_RATE_LIMIT: '1000' });
  });
  after(() => server.stop());

  it('puts nosniff and DENY on 401 and 403 answers', async () => {
    const unauthorized = await server.app.inject({ method: 'GET', url: '/v1/users/ann/messages' });
    assert.equal(unauthorized.statusCode, 401);
    const forbidden = await server.app.inject({ method: 'GET', url: '/v1/users', headers: { authorization: 'Bearer pbx_nope' } });
    assert.equal(forbidden.statusCode, 401);
    const created = await server.app.inject({ method: 'POST', url: '/v1/users', headers: { authorization: `Bearer ${ADMIN}` }, payload: { id: 'ann' } });
    const token = created.json<{ token: string }>().token;
    const notAdmin = await server.app.inject({ method: 'GET', url: '/v1/users', headers: { authorization: `Bearer ${token}` } });
    assert.equal(notAdmin.statusCode, 403);
    for (const res of [unauthorized, forbidden, notAdmin]) {
      assert.equal(res.headers['x-content-type-options'], 'nosniff', String(res.statusCode));
      assert.equal(res.headers['x-frame-options'], 'DENY', String(res.statusCode));
    }
  });

  it('marks answers that carry a user\'s data, or answer a token, no-store', async () => {
    const created = await server.app.inject({ method: 'POST', url: '/v1/users', headers: { authorization: `Bearer ${ADMIN}` }, payload: { id: 'bo' } });
    assert.equal(created.headers['cache-control'], 'no-store', 'the answer with a new token');
    const token = created.json<{ token: string }>().token;
    const inbox = await server.app.inject({ method: 'GET', url: '/v1/users/bo/messages', headers: { authorization: `Bearer ${token}` } });
    assert.equal(inbox.statusCode, 200);
    assert.equal(inbox.headers['cache-control'], 'no-store');
    const health = await server.app.inject({ method: 'GET', url: '/healthz' });
    assert.equal(health.headers['cache-control'], undefined, 'a public answer may be cached');
  });

  it('sends RateLimit headers on 400, 401 and 404 answers too', async () => {
    const created = await server.app.inject({ method: 'POST', url: '/v1/users', headers: { authorization: `Bearer ${ADMIN}` }, payload: { id: 'cy' } });
    const auth = { authorization: `Bearer ${created.json<{ token: string }>().token}` };
    const answers = [
      await server.app.inject({ method: 'GET', url: '/v1/users/cy/messages?limit=0', headers: auth }),
      await server.app.inject({ method: 'GET', url: '/v1/users/cy/messages' }),
      await server.app.inject({ method: 'GET', url: '/v1/messages/999999', headers: auth }),
      await server.app.inject({ method: 'GET', url: '/no/such/route', headers: auth }),
    ];
    assert.deepEqual(answers.map((a) => a.statusCode), [400, 401, 404, 404]);
    for (const res of answers) {
      assert.equal(res.headers['ratelimit-limit'], '1000', `${res.statusCode} ${res.body}`);
      assert.ok(res.headers['ratelimit-remaining'] !== undefined, String(res.statusCode));
    }
  });

  it('gives answers written before a route runs the security headers, no-store with a token, and RateLimit', async () => {
    const auth = { authorization: `Bearer ${ADMIN}` };
    const long = `/v1/users/${'a'.repeat(1100)}/messages`;
    const answers = [
      await server.app.inject({ method: 'GET', url: '/v1/users/%FF/messages' }),
      await server.app.inject({ method: 'GET', url: '/v1/users/%FF/messages', headers: auth }),
      await server.app.inject({ method: 'GET', url: long }),
      await server.app.inject({ method: 'GET', url: long, headers: auth }),
    ];
    assert.deepEqual(answers.map((a) => a.statusCode), [400, 400, 400, 400]);
    answers.forEach((res, i) => {
      const label = `answer ${i}: ${res.body.slice(0, 120)}`;
      assert.match(String(res.headers['content-type']), /application\/problem\+json/, label);
      assert.equal(res.headers['x-content-type-options'], 'nosniff', label);
      assert.equal(res.headers['x-frame-options'], 'DENY', label);
      assert.equal(res.headers['ratelimit-limit'], '1000', label);
      assert.ok(res.headers['ratelimit-remaining'] !== undefined, label);
      // Only the requests that carried a token are answers no cache may keep.
      assert.equal(res.headers['cache-control'], i % 2 === 1 ? 'no-store' : undefined, label);
    });
  });

  it('counts 405 answers and refusals of a token in the limiter, with their headers', async () => {
    const created = await server.app.inject({ method: 'POST', url: '/v1/users', headers: { authorization: `Bearer ${ADMIN}` }, payload: { id: 'dee' } });
    const auth = { authorization: `Bearer ${created.json<{ token: string }>().token}` };
    const answers = [
      await server.app.inject({ method: 'TRACE', url: '/v1/users/dee/messages', headers: auth }),
      await server.app.inject({ method: 'PUT', url: '/v1/messages' }),
      await server.app.inject({ method: 'GET', url: '/v1/users', headers: auth }),
    ];
    assert.deepEqual(answers.map((a) => a.statusCode), [405, 405, 403]);
    for (const res of answers) {
      assert.equal(res.headers['ratelimit-limit'], '1000', `${res.statusCode} ${res.body}`);
      assert.equal(res.headers['x-frame-options'], 'DENY', String(res.statusCode));
    }
    assert.equal(answers[0]!.headers.allow, 'GET, HEAD');
    assert.equal(answers[0]!.headers['cache-control'], 'no-store', 'a request with a token');
  });

  it('serves /docs with nothing that forces https onto plain HTTP', async () => {
    const page = await server.app.inject({ method: 'GET', url: '/docs/', headers: { host: '192.168.1.20:8080' } });
    assert.equal(page.statusCode, 200);
    const csp = String(page.headers['content-security-policy'] ?? '');
    assert.doesNotMatch(csp, /upgrade-insecure-requests/);
    assert.equal(page.headers['strict-transport-security'], undefined);
  });
});

describe('public routes and cross-site checks', () => {
  it('answers health, readiness and metrics under any Host and Origin: they hold no one\'s data', async () => {
    const server = await startTestServer();
    try {
      for (const url of ['/healthz', '/readyz', '/metrics']) {
        const res = await server.app.inject({ method: 'GET', url, headers: { host: 'postbox-svc.cluster.local:8080', origin: 'https://evil.example' } });
        assert.notEqual(res.statusCode, 403, url);
      }
    } finally {
      await server.stop();
    }
  });
});
