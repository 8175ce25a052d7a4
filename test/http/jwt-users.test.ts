/**
 * JWT users are users: the first request a JWT authenticates creates the record (and
 * `user.created`), so the admin lists, removes, purges and issues scoped tokens for them;
 * a removed user's reserved id is refused as a JWT `sub` (401) and as a recipient (404),
 * while a never-seen recipient is still stored. On SQLite and on PostgreSQL, and across
 * two PostgreSQL instances (a removal on one is honoured by the other).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as jose from 'jose';
import type { Message, Problem, User } from '../../src/protocol/types.js';
import { createSchema, describeWithPostgres } from '../helpers/pg.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

const SECRET = 'jwt-users-test-secret-long-enough-0123456789';
const ADMIN = 'admin-token-for-the-jwt-user-tests-01';
const asAdmin = { authorization: `Bearer ${ADMIN}` };
const hmac = new TextEncoder().encode(SECRET);
const JWT_ENV = { POSTBOX_AUTH: 'jwt', POSTBOX_JWT_SECRET: SECRET, POSTBOX_ADMIN_TOKEN: ADMIN, POSTBOX_WEBHOOK_ALLOW_PRIVATE: 'true' };

async function asUser(sub: string): Promise<{ authorization: string }> {
  const jwt = await new jose.SignJWT({ sub, exp: Math.floor(Date.now() / 1000) + 600 }).setProtectedHeader({ alg: 'HS256' }).sign(hmac);
  return { authorization: `Bearer ${jwt}` };
}

type Call = { method: 'GET' | 'POST' | 'DELETE'; url: string; headers: Record<string, string>; payload?: object };
async function call(server: TestServer, req: Call): Promise<{ status: number; body: string; json: <T>() => T }> {
  const res = await server.app.inject(req);
  return { status: res.statusCode, body: res.body, json: <T>() => res.json<T>() };
}

const inboxOf = (server: TestServer, user: string, headers: Record<string, string>) =>
  call(server, { method: 'GET', url: `/v1/users/${encodeURIComponent(user)}/messages`, headers });
const send = async (server: TestServer, from: string, toUser: string, message = 'hi') =>
  call(server, { method: 'POST', url: '/v1/messages', headers: await asUser(from), payload: { toUser, message } });
const listUsers = async (server: TestServer) =>
  (await call(server, { method: 'GET', url: '/v1/users', headers: asAdmin })).json<{ users: User[] }>().users.map((u) => u.id);

type Env = () => Promise<{ env: Record<string, string>; done: () => Promise<void> }>;

function suite(env: Env): void {
  async function withServer(fn: (server: TestServer) => Promise<void>): Promise<void> {
    const { env: extra, done } = await env();
    const server = await startTestServer({ ...JWT_ENV, ...extra });
    try {
      await fn(server);
    } finally {
      await server.stop();
      await done();
    }
  }

  it('lists a JWT user after its first request, lets the admin give it a scoped token, and remove it', () => withServer(async (server) => {
    const hook = await call(server, { method: 'POST', url: '/v1/webhooks', headers: asAdmin, payload: { url: 'http://127.0.0.1:9/hook', events: ['user.created'] } });
    assert.equal(hook.status, 201, hook.body);
    assert.equal((await call(server, { method: 'POST', url: '/v1/users/kim/tokens', headers: asAdmin })).status, 404, 'not a user before it signs in');

    const first = await inboxOf(server, 'kim', await asUser('kim'));
    assert.equal(first.status, 200, first.body);
    assert.deepEqual(await listUsers(server), ['kim']);
    const deliveries = await call(server, { method: 'GET', url: `/v1/webhooks/${hook.json<{ id: string }>().id}/deliveries`, headers: asAdmin });
    assert.deepEqual(deliveries.json<{ deliveries: { type: string }[] }>().deliveries.map((d) => d.type), ['user.created']);

    // Later requests find it known: they write nothing (no commit at all). The dispatcher,
    // woken by the delivery, writes its attempt meanwhile: stopped first, it is not counted.
    await server.webhooks.close();
    let commits = 0;
    const stop = server.storage.onCommit((size) => (commits += size));
    for (let i = 0; i < 3; i++) assert.equal((await inboxOf(server, 'kim', await asUser('kim'))).status, 200);
    stop();
    assert.equal(commits, 0, 'a known JWT user costs no write');

    const issued = await call(server, { method: 'POST', url: '/v1/users/kim/tokens', headers: asAdmin, payload: { scopes: ['send'] } });
    assert.equal(issued.status, 201, issued.body);
    const bot = { authorization: `Bearer ${issued.json<{ token: string }>().token}` };
    const sent = await call(server, { method: 'POST', url: '/v1/messages', headers: bot, payload: { toUser: 'lee', message: 'from the bot' } });
    assert.equal(sent.status, 201, sent.body);
    assert.equal(sent.json<Message>().fromUser, 'kim');
    assert.equal((await inboxOf(server, 'kim', bot)).status, 403, 'a send-scoped token reads nothing');

    assert.equal((await call(server, { method: 'DELETE', url: '/v1/users/kim', headers: asAdmin })).status, 204);
    assert.deepEqual(await listUsers(server), []);
  }));

  it('refuses a removed user\'s JWT with 401 naming why, and sends to it with 404; never-seen ids still receive', () => withServer(async (server) => {
    assert.equal((await inboxOf(server, 'zed', await asUser('zed'))).status, 200);
    assert.equal((await send(server, 'ann', 'zed', 'for zed only')).status, 201);
    assert.equal((await call(server, { method: 'DELETE', url: '/v1/users/zed', headers: asAdmin })).status, 204);

    const after = await inboxOf(server, 'zed', await asUser('zed'));
    assert.equal(after.status, 401, after.body);
    const problem = after.json<Problem>();
    assert.equal(problem.type, '/problems/unauthorized');
    assert.match(problem.detail, /user "zed" was removed; its id stays reserved/);
    assert.deepEqual(await listUsers(server), ['ann'], 'a refused JWT creates no one');

    const toRemoved = await send(server, 'ann', 'zed');
    assert.equal(toRemoved.status, 404, toRemoved.body);
    assert.equal(toRemoved.json<Problem>().type, '/problems/unknown_recipient');
    assert.deepEqual(toRemoved.json<Problem>().errors.map((e) => e.field), ['toUser']);

    const toNew = await send(server, 'ann', 'never-seen', 'waiting for you');
    assert.equal(toNew.status, 201, 'a recipient need not exist yet');
    const waiting = await inboxOf(server, 'never-seen', await asUser('never-seen'));
    assert.deepEqual(waiting.json<{ messages: Message[] }>().messages.map((m) => m.message), ['waiting for you']);
  }));

  it('lets a purged id sign in again, with an empty inbox', () => withServer(async (server) => {
    assert.equal((await send(server, 'ann', 'zed', 'old secret')).status, 201);
    assert.equal((await inboxOf(server, 'zed', await asUser('zed'))).status, 200);
    assert.equal((await call(server, { method: 'DELETE', url: '/v1/users/zed', headers: asAdmin })).status, 204);
    assert.equal((await inboxOf(server, 'zed', await asUser('zed'))).status, 401);

    assert.equal((await call(server, { method: 'DELETE', url: '/v1/users/zed?purge=true', headers: asAdmin })).status, 204);
    const fresh = await inboxOf(server, 'zed', await asUser('zed'));
    assert.equal(fresh.status, 200, fresh.body);
    assert.deepEqual(fresh.json<{ messages: Message[] }>().messages, [], 'the new zed inherits nothing');
    assert.deepEqual((await listUsers(server)).sort(), ['ann', 'zed']);
  }));

  it('refuses a known (remembered) JWT user on the very next request after its removal', () => withServer(async (server) => {
    const auth = await asUser('cached');
    for (let i = 0; i < 2; i++) assert.equal((await inboxOf(server, 'cached', auth)).status, 200);
    assert.equal((await call(server, { method: 'DELETE', url: '/v1/users/cached', headers: asAdmin })).status, 204);
    assert.equal((await inboxOf(server, 'cached', auth)).status, 401, 'the very next request');
  }));
}

describe('JWT users on SQLite', () => {
  suite(() => Promise.resolve({ env: {}, done: () => Promise.resolve() }));
});

await describeWithPostgres('JWT users on PostgreSQL', () => {
  suite(async () => {
    const schema = await createSchema();
    return { env: { DATABASE_URL: schema.url() }, done: () => schema.drop() };
  });

  it('honours a removal made on another instance: the JWT is refused there once the change feed tells it', async () => {
    const schema = await createSchema();
    const a = await startTestServer({ ...JWT_ENV, DATABASE_URL: schema.url() });
    const b = await startTestServer({ ...JWT_ENV, DATABASE_URL: schema.url() });
    try {
      const auth = await asUser('roamer');
      assert.equal((await inboxOf(b, 'roamer', auth)).status, 200, 'known to b');
      assert.equal((await call(a, { method: 'DELETE', url: '/v1/users/roamer', headers: asAdmin })).status, 204);
      await until(async () => (await inboxOf(b, 'roamer', auth)).status === 401, 'b to refuse the removed user');
      assert.equal((await send(b, 'ann', 'roamer')).status, 404);
    } finally {
      await a.stop();
      await b.stop();
      await schema.drop();
    }
  });
});
