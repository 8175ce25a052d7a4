/**
 * JWT mode over real HTTP: the application's own tokens act as users that were never
 * created, scopes narrow them, refusals say why, the admin token still works, and a stream
 * opened with a JWT ends with `end` {"reason":"token expired"} when the token does.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as jose from 'jose';
import type { Message } from '../../src/protocol/types.js';
import { postJson, request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { openStream } from '../helpers/sse.js';

const SECRET = 'jwt-test-secret-that-is-long-enough-0123456789';
const ADMIN = 'admin-token-for-the-jwt-tests-0123';
const hmac = new TextEncoder().encode(SECRET);
let server: TestServer;

function jwt(sub: string, claims: jose.JWTPayload = {}): Promise<string> {
  return new jose.SignJWT({ sub, iss: 'https://app.example', aud: 'postbox', exp: Math.floor(Date.now() / 1000) + 600, ...claims })
    .setProtectedHeader({ alg: 'HS256' }).sign(hmac);
}
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

before(async () => {
  server = await startTestServer({
    POSTBOX_AUTH: 'jwt', POSTBOX_JWT_SECRET: SECRET, POSTBOX_JWT_ISSUER: 'https://app.example',
    POSTBOX_JWT_AUDIENCE: 'postbox', POSTBOX_JWT_LEEWAY_SECONDS: '0', POSTBOX_ADMIN_TOKEN: ADMIN,
  });
});
after(() => server.stop());

describe('JWT mode', () => {
  it('lets users the app signed in talk, with no Postbox user or token made by hand', async () => {
    const sent = await postJson(server.url, '/v1/messages', { toUser: 'jwt-bob', message: 'hi from the app' }, bearer(await jwt('jwt-ann')));
    assert.equal(sent.status, 201, sent.text);
    assert.equal(sent.json<Message>().fromUser, 'jwt-ann');
    const inbox = await request(server.url, '/v1/users/jwt-bob/messages', { headers: bearer(await jwt('jwt-bob')) });
    assert.deepEqual(inbox.json<{ messages: Message[] }>().messages.map((m) => m.message), ['hi from the app']);
    const other = await request(server.url, '/v1/users/jwt-bob/messages', { headers: bearer(await jwt('jwt-ann')) });
    assert.equal(other.status, 403);
  });

  it('refuses a bad JWT with 401 saying why, in the problem and in WWW-Authenticate', async () => {
    const cases: [string, RegExp][] = [
      [await jwt('ann', { exp: Math.floor(Date.now() / 1000) - 5 }), /token expired/],
      [await jwt('ann', { iss: 'https://evil.example' }), /wrong issuer/],
      [await jwt('ann', { aud: 'someone-else' }), /wrong audience/],
      [new jose.UnsecuredJWT({ sub: 'ann', exp: Math.floor(Date.now() / 1000) + 60 }).encode(), /algorithm not allowed|malformed/],
    ];
    for (const [token, why] of cases) {
      const res = await request(server.url, '/v1/users/ann/messages', { headers: bearer(token) });
      assert.equal(res.status, 401, res.text);
      assert.match(res.json<{ detail: string }>().detail, why);
      assert.match(String(res.headers['www-authenticate']), /error="invalid_token", error_description="[^"]+"/);
    }
  });

  it('narrows a JWT by its scope claim', async () => {
    const sender = bearer(await jwt('jwt-carol', { scope: 'send' }));
    assert.equal((await postJson(server.url, '/v1/messages', { toUser: 'x', message: 'm' }, sender)).status, 201);
    const read = await request(server.url, '/v1/users/jwt-carol/messages', { headers: sender });
    assert.equal(read.status, 403);
    assert.match(read.json<{ detail: string }>().detail, /scope send; this call needs scope read/);
  });

  it('takes a scope claim naming only other applications\' scopes as full, and one naming ours as narrowed', async () => {
    const idp = bearer(await jwt('jwt-erin', { scope: 'openid profile' }));
    assert.equal((await postJson(server.url, '/v1/messages', { toUser: 'x', message: 'm' }, idp)).status, 201);
    assert.equal((await request(server.url, '/v1/users/jwt-erin/messages', { headers: idp })).status, 200);
    const sendOnly = bearer(await jwt('jwt-erin', { scope: 'openid send' }));
    assert.equal((await postJson(server.url, '/v1/messages', { toUser: 'x', message: 'm' }, sendOnly)).status, 201);
    const read = await request(server.url, '/v1/users/jwt-erin/messages', { headers: sendOnly });
    assert.equal(read.status, 403);
    assert.match(read.json<{ detail: string }>().detail, /scope send; this call needs scope read/);
  });

  it('still accepts the admin token beside JWTs', async () => {
    const res = await postJson(server.url, '/v1/users', { id: 'jwt-dave' }, bearer(ADMIN));
    assert.equal(res.status, 201, res.text);
    const token = res.json<{ token: string }>().token;
    assert.equal((await request(server.url, '/v1/users/jwt-dave/messages', { headers: bearer(token) })).status, 200,
      'Postbox tokens work in jwt mode too');
  });

  it('ends a stream opened with a JWT when the token expires', async () => {
    const exp = Math.floor(Date.now() / 1000) + 2;
    const s = await openStream(server.url, '/v1/users/jwt-erin/stream', bearer(await jwt('jwt-erin', { exp })));
    try {
      assert.equal(s.status, 200);
      const [end] = await s.waitFor(1, 'end', 15_000);
      assert.deepEqual(JSON.parse(end!.data), { reason: 'token expired' });
      await s.ended;
    } finally {
      s.close();
    }
  });
});

describe('JWT mode with a leeway', () => {
  it('keeps a stream opened with a token inside the leeway open until the token stops being accepted', async () => {
    const lenient = await startTestServer({ POSTBOX_AUTH: 'jwt', POSTBOX_JWT_SECRET: SECRET, POSTBOX_JWT_LEEWAY_SECONDS: '5' });
    try {
      // Past exp already, but inside the leeway: accepted for about 4 s more.
      const stale = await jwt('lw-ann', { exp: Math.floor(Date.now() / 1000) - 1 });
      const s = await openStream(lenient.url, '/v1/users/lw-ann/stream', bearer(stale));
      try {
        assert.equal(s.status, 200, s.body());
        // Ending at plain exp would end it before this message; it arrives, then the end.
        const sent = await postJson(lenient.url, '/v1/messages', { toUser: 'lw-ann', message: 'inside the leeway' }, bearer(await jwt('lw-bob')));
        assert.equal(sent.status, 201, sent.text);
        await s.waitFor(1, 'message');
        const [end] = await s.waitFor(1, 'end', 15_000);
        assert.deepEqual(JSON.parse(end!.data), { reason: 'token expired' });
        assert.deepEqual(s.events.map((e) => e.event), ['message', 'end']);
        // It ended when the server stopped accepting the token: the same token is now refused.
        const again = await request(lenient.url, '/v1/users/lw-ann/messages', { headers: bearer(stale) });
        assert.equal(again.status, 401, again.text);
        assert.match(again.json<{ detail: string }>().detail, /token expired/);
      } finally {
        s.close();
      }
    } finally {
      await lenient.stop();
    }
  });
});
