/**
 * Every class of bad input: a 4xx problem+json that names what is wrong, never a 5xx, and
 * nothing stored.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Problem } from '../../src/protocol/types.js';
import { buildTestApp, type TestApp } from '../helpers/app.js';
import type { RawResponse } from '../helpers/http.js';

interface Case {
  name: string;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  status: number;
  /** The field the problem must name. */
  field?: string;
}

const json = { 'content-type': 'application/json' };
const ok = { fromUser: 'a', toUser: 'b', message: 'm' };
const with_ = (patch: Record<string, unknown>) => JSON.stringify({ ...ok, ...patch });
const without = (key: string) => JSON.stringify(Object.fromEntries(Object.entries(ok).filter(([k]) => k !== key)));

const SEND_CASES: Case[] = [
  { name: 'malformed JSON', body: '{"fromUser": "a",', status: 400, field: 'body' },
  { name: 'a JSON array', body: '[1, 2]', status: 400, field: 'body' },
  { name: 'a JSON string', body: '"hello"', status: 400, field: 'body' },
  { name: 'JSON null', body: 'null', status: 400, field: 'body' },
  { name: 'an empty body', body: '', status: 400, field: 'body' },
  { name: 'a missing toUser', body: without('toUser'), status: 400, field: 'toUser' },
  { name: 'a missing message', body: without('message'), status: 400, field: 'message' },
  { name: 'a missing fromUser in open mode', body: without('fromUser'), status: 400, field: 'fromUser' },
  { name: 'an empty toUser', body: with_({ toUser: '' }), status: 400, field: 'toUser' },
  { name: 'a boolean toUser', body: with_({ toUser: true }), status: 400, field: 'toUser' },
  { name: 'a null toUser', body: with_({ toUser: null }), status: 400, field: 'toUser' },
  { name: 'an object toUser', body: with_({ toUser: { id: 'b' } }), status: 400, field: 'toUser' },
  { name: 'a list fromUser', body: with_({ fromUser: ['a'] }), status: 400, field: 'fromUser' },
  { name: 'a number message', body: with_({ message: 5 }), status: 400, field: 'message' },
  { name: 'a null message', body: with_({ message: null }), status: 400, field: 'message' },
  { name: 'a user id with /', body: with_({ fromUser: 'a/b' }), status: 400, field: 'fromUser' },
  { name: 'a user id with a C0 control character', body: with_({ toUser: 'bel\u0007' }), status: 400, field: 'toUser' },
  { name: 'a user id with DEL', body: with_({ toUser: 'del\u007f' }), status: 400, field: 'toUser' },
  { name: 'a user id with a C1 control character', body: with_({ toUser: 'nel\u0085' }), status: 400, field: 'toUser' },
  { name: 'a user id with a newline', body: with_({ toUser: 'two\nlines' }), status: 400, field: 'toUser' },
  { name: 'a user id of 129 characters', body: with_({ toUser: 'u'.repeat(129) }), status: 400, field: 'toUser' },
  { name: 'a user id of 129 astral characters', body: with_({ toUser: '🐙'.repeat(129) }), status: 400, field: 'toUser' },
  { name: 'a lone surrogate in a user id', body: '{"fromUser":"a","toUser":"\\ud800","message":"m"}', status: 400, field: 'toUser' },
  { name: 'a lone surrogate in a message', body: '{"fromUser":"a","toUser":"b","message":"x\\udfffy"}', status: 400, field: 'message' },
  { name: 'a NUL character in a message', body: '{"fromUser":"a","toUser":"b","message":"nul\\u0000here"}', status: 400, field: 'message' },
  { name: 'invalid UTF-8 bytes', body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), status: 400, field: 'body' },
  { name: 'an overlong UTF-8 encoding', body: Buffer.concat([Buffer.from('{"fromUser":"a","toUser":"b","message":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]), status: 400, field: 'body' },
  { name: 'a message over the byte limit', body: with_({ message: 'é'.repeat(32769) }), status: 413, field: 'message' },
  { name: 'a body over the size limit', body: with_({ padding: 'x'.repeat(2 * 1024 * 1024) }), status: 413, field: 'body' },
  { name: 'form fields with invalid percent-encoding', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'fromUser=a&toUser=b&message=%FF', status: 400, field: 'body' },
  { name: 'form fields given twice', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'fromUser=a&toUser=b&toUser=c&message=m', status: 400, field: 'toUser' },
  { name: 'a gzip-encoded body', headers: { ...json, 'content-encoding': 'gzip' }, body: Buffer.from([0x1f, 0x8b, 0x08, 0x00]), status: 415 },
  { name: 'a multipart body', headers: { 'content-type': 'multipart/form-data; boundary=x' }, body: '--x\r\n\r\n--x--', status: 415 },
  { name: 'a latin-1 body', headers: { 'content-type': 'text/plain; charset=iso-8859-1' }, body: JSON.stringify(ok), status: 415 },
];

const READ_CASES: Case[] = [
  { name: 'a user id of 129 characters in the path', path: `/get-messages/${'u'.repeat(129)}`, status: 400, field: 'user' },
  { name: 'an escaped / in the path', path: '/get-messages/a%2Fb', status: 400, field: 'user' },
  { name: 'an escaped control character in the path', path: '/get-messages/a%00b', status: 400, field: 'user' },
  { name: 'bad percent-encoding in the path', path: '/get-messages/%E0%A4%A', status: 400 },
  { name: 'invalid UTF-8 in the path', path: '/get-messages/%FF', status: 400 },
  { name: 'limit=0', path: '/v1/users/b/messages?limit=0', status: 400, field: 'limit' },
  { name: 'limit=501', path: '/v1/users/b/messages?limit=501', status: 400, field: 'limit' },
  { name: 'limit=abc', path: '/v1/users/b/messages?limit=abc', status: 400, field: 'limit' },
  { name: 'limit=2.5', path: '/v1/users/b/messages?limit=2.5', status: 400, field: 'limit' },
  { name: 'after=abc', path: '/v1/users/b/messages?after=abc', status: 400, field: 'after' },
  { name: 'after=-1', path: '/v1/users/b/messages?after=-1', status: 400, field: 'after' },
  { name: 'after=007', path: '/v1/users/b/messages?after=007', status: 400, field: 'after' },
  { name: 'before=soon', path: '/v1/users/b/messages?before=soon', status: 400, field: 'before' },
  { name: 'wait=61', path: '/v1/users/b/messages?wait=61', status: 400, field: 'wait' },
  { name: 'wait=-1', path: '/v1/users/b/messages?wait=-1', status: 400, field: 'wait' },
  { name: 'unread=maybe', path: '/v1/users/b/messages?unread=maybe', status: 400, field: 'unread' },
  { name: 'from=a/b', path: '/v1/users/b/messages?from=a%2Fb', status: 400, field: 'from' },
];

function assertProblem(res: RawResponse, c: Case): void {
  assert.equal(res.status, c.status, `${c.name}: ${res.status} ${res.text}`);
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/, c.name);
  const p = res.json<Problem>();
  assert.equal(p.status, c.status, c.name);
  assert.equal(typeof p.type, 'string', c.name);
  assert.equal(typeof p.title, 'string', c.name);
  assert.ok(p.detail.length > 0, `${c.name}: detail says what is wrong`);
  assert.ok(Array.isArray(p.errors), c.name);
  if (c.field) {
    assert.ok(p.errors.some((e) => e.field === c.field && e.message.length > 0),
      `${c.name}: names ${c.field}, got ${JSON.stringify(p.errors)}`);
  }
}

describe('bad input', () => {
  let server: TestApp;
  before(async () => {
    server = await buildTestApp();
  });
  after(() => server.stop());

  for (const path of ['/post-message', '/v1/messages']) {
    describe(`POST ${path}`, () => {
      for (const c of SEND_CASES) {
        it(`rejects ${c.name}`, async () => {
          const res = await server.request(path, { method: 'POST', headers: c.headers ?? json, body: c.body });
          assertProblem(res, c);
        });
      }
    });
  }

  describe('reads', () => {
    for (const c of READ_CASES) {
      it(`rejects ${c.name}`, async () => {
        assertProblem(await server.request(c.path!), c);
      });
    }
  });

  it('stored nothing for any of it', async () => {
    const exported = [];
    for await (const r of server.storage.exportAll()) exported.push(r);
    assert.deepEqual(exported, []);
  });

  it('accepts the limits themselves: 128-character ids and a message of exactly the byte limit', async () => {
    const res = await server.request('/v1/messages', {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ fromUser: '🐙'.repeat(128), toUser: 'u'.repeat(128), message: 'é'.repeat(32768) }),
    });
    assert.equal(res.status, 201, res.text);
  });
});
