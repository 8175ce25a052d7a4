/**
 * `POST /post-message` and `GET /get-messages/{user}` as the contract freezes them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Message } from '../../src/protocol/types.js';
import { buildTestApp, type TestApp } from '../helpers/app.js';

describe('legacy endpoints', () => {
  let server: TestApp;
  before(async () => {
    server = await buildTestApp();
  });
  after(() => server.stop());

  const body = (to: string, message: string) => JSON.stringify({ fromUser: 'sender', toUser: to, message });

  it('accepts the message however the body is labelled', async () => {
    const to = 'labels';
    const cases: [string, Record<string, string>, string][] = [
      ['application/json', { 'content-type': 'application/json' }, body(to, 'json')],
      ['json with charset', { 'content-type': 'application/json; charset=utf-8' }, body(to, 'json-charset')],
      ['no Content-Type', {}, body(to, 'none')],
      ['text/plain', { 'content-type': 'text/plain' }, body(to, 'text')],
      ['an unrelated type holding JSON', { 'content-type': 'application/octet-stream' }, body(to, 'octet')],
      ['form fields', { 'content-type': 'application/x-www-form-urlencoded' },
        new URLSearchParams({ fromUser: 'sender', toUser: to, message: 'form + é & =' }).toString()],
      ['JSON labelled as a form, as curl -d sends it', { 'content-type': 'application/x-www-form-urlencoded' }, body(to, 'curl')],
    ];
    for (const [name, headers, payload] of cases) {
      const res = await server.request('/post-message', { method: 'POST', headers, body: payload });
      assert.equal(res.status, 202, `${name}: ${res.text}`);
      assert.equal(res.text, '', `${name}: empty body`);
      assert.match(String(res.headers.location), /^\/v1\/messages\/[1-9][0-9]*$/, name);
    }
    const got = (await server.request(`/get-messages/${to}`)).json<Message[]>();
    assert.deepEqual(got.map((m) => m.message), ['json', 'json-charset', 'none', 'text', 'octet', 'form + é & =', 'curl']);
  });

  it('points Location at the stored message', async () => {
    const res = await server.postJson('/post-message', { fromUser: 'a', toUser: 'located', message: 'here' });
    const stored = await server.request(String(res.headers.location));
    assert.equal(stored.status, 200);
    const m = stored.json<Message>();
    assert.equal(m.message, 'here');
    assert.equal(`/v1/messages/${m.id}`, res.headers.location);
  });

  it('answers every message in the Message shape, oldest first, as JSON', async () => {
    for (const text of ['one', 'two', 'three']) {
      await server.postJson('/post-message', { fromUser: 'x', toUser: 'ordered', message: text });
    }
    await server.postJson('/post-message', { fromUser: 'x', toUser: 'elsewhere', message: 'not mine' });
    const res = await server.request('/get-messages/ordered');
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const got = res.json<Message[]>();
    assert.deepEqual(got.map((m) => m.message), ['one', 'two', 'three']);
    for (const m of got) {
      assert.deepEqual(Object.keys(m), ['id', 'fromUser', 'toUser', 'message', 'sentAt', 'readAt']);
      assert.equal(m.readAt, null);
    }
    const ids = got.map((m) => Number(m.id));
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
  });

  it('answers [] for a user with no messages', async () => {
    const res = await server.request('/get-messages/nobody-at-all');
    assert.equal(res.status, 200);
    assert.equal(res.text, '[]');
  });

  it('stores a JSON number user id as its decimal string', async () => {
    const res = await server.postJson('/post-message', { fromUser: 1, toUser: 2, message: 'numbers' });
    assert.equal(res.status, 202);
    const got = (await server.request('/get-messages/2')).json<Message[]>();
    assert.deepEqual(got.map((m) => [m.fromUser, m.toUser]), [['1', '2']]);
  });

  it('ignores fields it does not know', async () => {
    const res = await server.postJson('/post-message', { fromUser: 'a', toUser: 'extra', message: 'm', colour: 'blue' });
    assert.equal(res.status, 202);
    const got = (await server.request('/get-messages/extra')).json<Message[]>();
    assert.deepEqual(Object.keys(got[0]!), ['id', 'fromUser', 'toUser', 'message', 'sentAt', 'readAt']);
  });

  it('streams an inbox larger than one storage chunk completely and in order', async () => {
    const n = 2600;
    const user = 'big-inbox';
    let next = 0;
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < n) {
        const i = next++;
        const res = await server.postJson('/post-message', { fromUser: 'bulk', toUser: user, message: `m${i}` });
        assert.equal(res.status, 202);
      }
    }));
    const res = await server.request(`/get-messages/${user}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['transfer-encoding'], 'chunked', 'sent as a stream, not one buffer');
    const got = res.json<Message[]>();
    assert.equal(got.length, n);
    const ids = got.map((m) => Number(m.id));
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
    assert.equal(new Set(got.map((m) => m.message)).size, n);
  });

  it('reads user ids with URL escapes and Unicode', async () => {
    const user = 'Zoë Ω 🐙';
    await server.postJson('/post-message', { fromUser: 'a', toUser: user, message: 'unicode' });
    const res = await server.request(`/get-messages/${encodeURIComponent(user)}`);
    assert.deepEqual(res.json<Message[]>().map((m) => m.toUser), [user]);
  });
});
