/**
 * Rate limits, security headers and CORS.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Problem } from '../../src/protocol/types.js';
import { buildTestApp } from '../helpers/app.js';
import { openStream } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';

const ADMIN = 'admin-token-for-tests-0123456789';

describe('rate limits', () => {
  it('limits a client address in open mode with 429, Retry-After and RateLimit headers', async () => {
    const server = await buildTestApp({ POSTBOX_RATE_LIMIT: '5' });
    try {
      const answers = [];
      for (let i = 0; i < 7; i++) answers.push(await server.request('/get-messages/someone'));
      assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200, 429, 429]);
      assert.equal(answers[0]!.headers['ratelimit-limit'], '5');
      assert.equal(answers[0]!.headers['ratelimit-remaining'], '4');
      const limited = answers[5]!;
      assert.match(String(limited.headers['content-type']), /problem\+json/);
      assert.equal(limited.json<Problem>().type, '/problems/rate_limited');
      assert.ok(Number(limited.headers['retry-after']) >= 1);
      assert.equal(limited.headers['ratelimit-remaining'], '0');
      // Health probes and metrics scrapes are never limited.
      assert.equal((await server.request('/healthz')).status, 200);
      assert.equal((await server.request('/metrics')).status, 200);
    } finally {
      await server.stop();
    }
  });

  it('gives each token its own bucket in token mode', async () => {
    const server = await buildTestApp({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN, POSTBOX_RATE_LIMIT: '3' });
    try {
      const admin = { authorization: `Bearer ${ADMIN}` };
      const ann = (await server.postJson('/v1/users', { id: 'ann' }, admin)).json<{ token: string }>().token;
      const bob = (await server.postJson('/v1/users', { id: 'bob' }, admin)).json<{ token: string }>().token;
      const asAnn = { authorization: `Bearer ${ann}` };
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await server.request('/v1/users/ann/messages', { headers: asAnn })).status);
      assert.deepEqual(statuses, [200, 200, 200, 429]);
      assert.equal((await server.request('/v1/users/bob/messages', { headers: { authorization: `Bearer ${bob}` } })).status, 200,
        'another token is not limited by ann\'s use');
    } finally {
      await server.stop();
    }
  });

  it('is off with POSTBOX_RATE_LIMIT=0', async () => {
    const server = await buildTestApp({ POSTBOX_RATE_LIMIT: '0' });
    try {
      const res = await server.request('/get-messages/x');
      assert.equal(res.headers['ratelimit-limit'], undefined);
    } finally {
      await server.stop();
    }
  });
});

describe('security headers and CORS', () => {
  it('marks every answer nosniff and unframeable; answers OPTIONS with Allow', async () => {
    const server = await buildTestApp();
    try {
      for (const path of ['/get-messages/x', '/nope', '/healthz']) {
        const res = await server.request(path);
        assert.equal(res.headers['x-content-type-options'], 'nosniff', path);
        assert.equal(res.headers['x-frame-options'], 'DENY', path);
      }
      const bad = await server.request('/post-message', { method: 'POST', body: '{' });
      assert.equal(bad.headers['x-content-type-options'], 'nosniff', 'problem documents too');
      const options = await server.request('/v1/messages', { method: 'OPTIONS' });
      assert.equal(options.status, 204);
      assert.equal(options.headers.allow, 'POST, OPTIONS');
      const cross = await server.request('/get-messages/x', { headers: { origin: 'https://elsewhere.example' } });
      assert.equal(cross.headers['access-control-allow-origin'], undefined, 'CORS is off by default');
    } finally {
      await server.stop();
    }
  });

  it('allows only the configured origins', async () => {
    const server = await buildTestApp({ POSTBOX_CORS_ORIGINS: 'https://app.example.com' });
    try {
      const ok = await server.request('/v1/messages', {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,idempotency-key' },
      });
      assert.equal(ok.status, 204);
      assert.equal(ok.headers['access-control-allow-origin'], 'https://app.example.com');
      assert.match(String(ok.headers['access-control-allow-headers']), /Idempotency-Key/);
      const get = await server.request('/get-messages/x', { headers: { origin: 'https://app.example.com' } });
      assert.equal(get.headers['access-control-allow-origin'], 'https://app.example.com');
      assert.match(String(get.headers['access-control-expose-headers']), /Location/);
      const other = await server.request('/get-messages/x', { headers: { origin: 'https://evil.example' } });
      assert.equal(other.headers['access-control-allow-origin'], undefined);
    } finally {
      await server.stop();
    }
  });

  it('gives a stream the headers of every answer: CORS, security and rate limits', async () => {
    const server = await buildTestApp({ POSTBOX_CORS_ORIGINS: 'https://app.example.com', POSTBOX_RATE_LIMIT: '50' });
    // A stream's point is its open connection: this one listens.
    const url = await server.listen();
    const allowed = await openStream(url, '/v1/users/ann/stream', { origin: 'https://app.example.com' });
    const refused = await openStream(url, '/v1/users/bob/stream', { origin: 'https://evil.example' });
    try {
      assert.equal(allowed.status, 200);
      assert.match(String(allowed.headers['content-type']), /^text\/event-stream/);
      assert.equal(allowed.headers['access-control-allow-origin'], 'https://app.example.com', 'an EventSource from an allowed origin may read it');
      assert.match(String(allowed.headers['access-control-expose-headers']), /Location/);
      assert.equal(allowed.headers['x-frame-options'], 'DENY');
      assert.equal(allowed.headers['x-content-type-options'], 'nosniff');
      assert.equal(allowed.headers['ratelimit-limit'], '50');
      assert.equal(allowed.headers['cache-control'], 'no-store, no-transform', 'a user\'s messages: never stored, never transformed');
      await until(() => allowed.raw().startsWith('retry: '), 'the retry hint');
      // Open mode refuses a page from a foreign origin outright (a stream is ambient data).
      assert.equal(refused.status, 403, 'open mode refuses cross-site use');
      assert.equal(refused.headers['access-control-allow-origin'], undefined);
      assert.equal(refused.headers['x-frame-options'], 'DENY');
    } finally {
      allowed.close();
      refused.close();
      await server.stop();
    }
  });
});
