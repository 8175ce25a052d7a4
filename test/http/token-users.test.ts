/**
 * Token mode: a send to a user that does not exist is a 404 (`unknown_recipient`), and a
 * removed user's id never hands its messages to someone new — it stays reserved (409)
 * unless the removal purged them. On SQLite and on PostgreSQL.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message, Problem } from '../../src/protocol/types.js';
import { createSchema, describeWithPostgres } from '../helpers/pg.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const ADMIN = 'admin-token-for-tests-0123456789';
const asAdmin = { authorization: `Bearer ${ADMIN}` };

async function createUser(server: TestServer, id: string): Promise<{ status: number; token: string; body: string }> {
  const res = await server.app.inject({ method: 'POST', url: '/v1/users', headers: asAdmin, payload: { id } });
  return { status: res.statusCode, token: res.statusCode === 201 ? res.json<{ token: string }>().token : '', body: res.body };
}

function suite(env: () => Promise<{ env: Record<string, string>; done: () => Promise<void> }>): void {
  it('answers a send to an unknown user with a 404 unknown_recipient and stores nothing', async () => {
    const { env: extra, done } = await env();
    const server = await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN, ...extra });
    try {
      const ann = await createUser(server, 'ann');
      const auth = { authorization: `Bearer ${ann.token}` };
      const res = await server.app.inject({ method: 'POST', url: '/v1/messages', headers: auth, payload: { toUser: 'nobody', message: 'hi' } });
      assert.equal(res.statusCode, 404);
      const problem = res.json<Problem>();
      assert.equal(problem.type, '/problems/unknown_recipient');
      assert.deepEqual(problem.errors.map((e) => e.field), ['toUser']);
      const legacy = await server.app.inject({ method: 'POST', url: '/post-message', headers: auth, payload: JSON.stringify({ toUser: 'nobody', message: 'hi' }) });
      assert.equal(legacy.statusCode, 404);
      const sent = await server.app.inject({ method: 'GET', url: '/v1/users/ann/sent', headers: auth });
      assert.deepEqual(sent.json<{ messages: Message[] }>().messages, []);
    } finally {
      await server.stop();
      await done();
    }
  });

  it('keeps a removed user\'s id reserved, and frees it only with a purge that deletes its messages', async () => {
    const { env: extra, done } = await env();
    const server = await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN, ...extra });
    try {
      const ann = await createUser(server, 'ann');
      const bob = await createUser(server, 'bob');
      const asAnn = { authorization: `Bearer ${ann.token}` };
      const toBob = await server.app.inject({ method: 'POST', url: '/v1/messages', headers: asAnn, payload: { toUser: 'bob', message: 'private' } });
      assert.equal(toBob.statusCode, 201);
      assert.equal(bob.status, 201);

      assert.equal((await server.app.inject({ method: 'DELETE', url: '/v1/users/bob', headers: asAdmin })).statusCode, 204);
      const again = await createUser(server, 'bob');
      assert.equal(again.status, 409, 'a removed id is reserved');
      assert.match(again.body, /reserved/);
      const toRemoved = await server.app.inject({ method: 'POST', url: '/v1/messages', headers: asAnn, payload: { toUser: 'bob', message: 'x' } });
      assert.equal(toRemoved.statusCode, 404, 'a removed user receives nothing');

      assert.equal((await server.app.inject({ method: 'DELETE', url: '/v1/users/bob?purge=true', headers: asAdmin })).statusCode, 204);
      const fresh = await createUser(server, 'bob');
      assert.equal(fresh.status, 201, 'a purge frees the id');
      const inbox = await server.app.inject({ method: 'GET', url: '/v1/users/bob/messages', headers: { authorization: `Bearer ${fresh.token}` } });
      assert.deepEqual(inbox.json<{ messages: Message[] }>().messages, [], 'the new bob inherits nothing');
      const annSent = await server.app.inject({ method: 'GET', url: '/v1/users/ann/sent', headers: asAnn });
      assert.deepEqual(annSent.json<{ messages: Message[] }>().messages, [], 'the purge took the messages on both sides');
      const convs = await server.app.inject({ method: 'GET', url: '/v1/users/ann/conversations', headers: asAnn });
      assert.deepEqual(convs.json<{ conversations: unknown[] }>().conversations, []);

      // A purge of a user still present removes and frees at once.
      const cy = await createUser(server, 'cy');
      assert.equal(cy.status, 201);
      assert.equal((await server.app.inject({ method: 'DELETE', url: '/v1/users/cy?purge=true', headers: asAdmin })).statusCode, 204);
      assert.equal((await createUser(server, 'cy')).status, 201);
      assert.equal((await server.app.inject({ method: 'DELETE', url: '/v1/users/nobody?purge=true', headers: asAdmin })).statusCode, 404);
    } finally {
      await server.stop();
      await done();
    }
  });
}

describe('token-mode users on SQLite', () => {
  suite(() => Promise.resolve({ env: {}, done: () => Promise.resolve() }));
});

await describeWithPostgres('token-mode users on PostgreSQL', () => {
  suite(async () => {
    const schema = await createSchema();
    return { env: { DATABASE_URL: schema.url() }, done: () => schema.drop() };
  });
});
