/**
 * Property-based fuzzing of every endpoint's input through the app (fast-check, `inject`): whatever
 * arrives, the answer is never a 5xx, every 4xx is a problem document, the server stays up,
 * and nothing malformed is ever stored.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { userIdProblem } from '../../src/domain/rules.js';
import type { Problem } from '../../src/protocol/types.js';
import type { RawResponse } from '../helpers/http.js';
import { buildTestApp, type TestApp } from '../helpers/app.js';

const RUNS = 150;
let server: TestApp;

before(async () => {
  server = await buildTestApp({ POSTBOX_RATE_LIMIT: '0', LOG_LEVEL: 'error' });
});
after(() => server.stop());

/** Strings a client might send as a user id, message or parameter: tame, hostile and odd. */
const text = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'binary-ascii', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 140 }),
  fc.constantFrom('', '/', 'a/b', '\u0000', '\u0085', '\ud800', 'x'.repeat(129), '🐙'.repeat(128), '..', '%2F', ' ', '0', '-1', 'latest', 'null'),
);
/** Any JSON value, or a string from above. */
const value = fc.oneof(fc.jsonValue({ maxDepth: 2 }), text, fc.integer(), fc.double());
const contentType = fc.constantFrom(
  undefined, 'application/json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
  'application/json; charset=latin1', 'application/octet-stream', 'text/html', '', ';;;', 'application/json; charset=utf-8',
);

function assertWellFormed(res: RawResponse, what: string): void {
  assert.ok(res.status < 500, `${what}: ${res.status} ${res.text.slice(0, 300)}`);
  if (res.status >= 400) {
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/, what);
    const p = res.json<Problem>();
    assert.equal(p.status, res.status, what);
    assert.ok(Array.isArray(p.errors) && typeof p.detail === 'string', what);
  }
}

const headersFor = (type: string | undefined): Record<string, string> => (type === undefined ? {} : { 'content-type': type });

/** Percent-encodes any string, a lone surrogate included (as the invalid UTF-8 a raw client would send). */
function encodeSegment(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return [...s].map((ch) => {
      const c = ch.charCodeAt(0);
      if (ch.length === 1 && c >= 0xd800 && c <= 0xdfff) {
        return [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('');
      }
      return encodeURIComponent(ch);
    }).join('');
  }
}

describe('fuzzing every endpoint', () => {
  it('sends: arbitrary fields, bodies and content types', async () => {
    await fc.assert(fc.asyncProperty(
      fc.constantFrom('/post-message', '/v1/messages'),
      fc.record({ fromUser: value, toUser: value, message: value }, { requiredKeys: [] }),
      contentType,
      fc.option(text, { nil: undefined }),
      async (path, body, type, key) => {
        const headers: Record<string, string> = { ...headersFor(type) };
        if (key !== undefined && /^[\x20-\x7e]*$/.test(key)) headers['idempotency-key'] = key;
        const res = await server.request(path, { method: 'POST', headers, body: JSON.stringify(body) });
        assertWellFormed(res, `${path} ${JSON.stringify(body)}`);
      },
    ), { numRuns: RUNS });
  });

  it('sends: raw bytes', async () => {
    await fc.assert(fc.asyncProperty(
      fc.constantFrom('/post-message', '/v1/messages', '/v1/users/u/read', '/v1/users'),
      fc.uint8Array({ maxLength: 300 }),
      contentType,
      async (path, bytes, type) => {
        const res = await server.request(path, { method: 'POST', headers: headersFor(type), body: Buffer.from(bytes) });
        assertWellFormed(res, `${path} <${bytes.length} bytes>`);
      },
    ), { numRuns: RUNS });
  });

  it('reads: arbitrary path segments and query parameters', async () => {
    const param = fc.oneof(text, fc.integer().map(String), fc.constantFrom('0', 'latest', '500', '501', 'true', 'false'));
    await fc.assert(fc.asyncProperty(
      fc.constantFrom(
        '/get-messages/{u}', '/v1/users/{u}/messages', '/v1/users/{u}/sent', '/v1/users/{u}/conversations',
        '/v1/users/{u}/conversations/{u}', '/v1/messages/{u}',
      ),
      text,
      fc.record({ after: param, before: param, limit: param, from: param, unread: param }, { requiredKeys: [] }),
      fc.constantFrom('GET', 'DELETE', 'HEAD'),
      async (template, segment, query, method) => {
        const path = template.replaceAll('{u}', encodeSegment(segment));
        const qs = Object.entries(query).map(([k, v]) => `${k}=${encodeSegment(v)}`).join('&');
        const m = path.startsWith('/v1/messages/') ? method : 'GET';
        const res = await server.request(`${path}${qs ? `?${qs}` : ''}`, { method: m });
        assert.ok(res.status < 500, `${m} ${path}?${qs}: ${res.status} ${res.text.slice(0, 300)}`);
        if (m !== 'HEAD') assertWellFormed(res, `${m} ${path}?${qs}`);
      },
    ), { numRuns: RUNS });
  });

  it('reads: raw, even malformed, URLs', async () => {
    await fc.assert(fc.asyncProperty(
      fc.string({ unit: fc.constantFrom('%', 'F', 'f', '0', 'E', '/', 'a', '?', '&', '=', '#', '+', '~', '.', ' '), maxLength: 30 }),
      async (tail) => {
        const path = `/v1/users/${tail.replace(/[ #]/g, '%20')}`;
        // inject hands the URL to the router as is: no client in between tidies it first.
        assertWellFormed(await server.request(path), path);
      },
    ), { numRuns: RUNS });
  });

  it('marking read and the stream cursor: arbitrary selectors', async () => {
    await fc.assert(fc.asyncProperty(
      fc.record({ upTo: value, ids: fc.oneof(value, fc.array(value, { maxLength: 5 })) }, { requiredKeys: [] }),
      text,
      async (body, cursor) => {
        const read = await server.request('/v1/users/fuzz/read', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        assertWellFormed(read, `read ${JSON.stringify(body)}`);
        // Only a cursor the server would refuse, so no stream is left open.
        if (/^(0|[1-9]\d{0,14})$/.test(cursor)) return;
        const stream = await server.request(`/v1/users/fuzz/stream?after=${encodeSegment(cursor)}`);
        assertWellFormed(stream, `stream after=${cursor}`);
        assert.equal(stream.status, 400);
      },
    ), { numRuns: RUNS });
  });

  it('left the server up, and stored nothing malformed', async () => {
    assert.equal((await server.request('/healthz')).status, 200);
    let count = 0;
    for await (const r of server.storage.exportAll()) {
      if (r.type !== 'message') continue;
      count++;
      const m = r.message;
      assert.equal(userIdProblem(m.fromUser), null, `fromUser ${JSON.stringify(m.fromUser)}`);
      assert.equal(userIdProblem(m.toUser), null, `toUser ${JSON.stringify(m.toUser)}`);
      assert.ok(typeof m.message === 'string' && m.message.isWellFormed() && !m.message.includes('\u0000'));
      assert.ok(Buffer.byteLength(m.message) <= server.config.maxMessageBytes);
    }
    assert.ok(count > 0, 'some fuzzed sends were valid and stored');
  });
});
