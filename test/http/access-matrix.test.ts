/**
 * The authorization matrix, generated from the registered route table: every route ×
 * {no token, bad token, owner, another user, admin} in token mode, × the owner's scoped
 * tokens (send, read), and in jwt mode the same again with the application's JWTs (full,
 * send, read, another user's, expired). Each user route's row says the scope it is meant
 * to need, and the route table must declare the same: a route registered with the wrong
 * scope fails the suite, as does a route that is registered but has no row here, so no
 * route can ship without a rule.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as jose from 'jose';
import type { Scope } from '../../src/domain/access.js';
import type { Message } from '../../src/protocol/types.js';
import type { RawResponse } from '../helpers/http.js';
import { buildTestApp, type TestApp } from '../helpers/app.js';
import { openStream } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';
import { ensureWebBuilt } from '../helpers/web-build.js';

const ADMIN = 'admin-token-for-the-matrix-0123456789';
const SECRET = 'the-matrix-jwt-secret-of-32-characters-or-more';
const BASE_IDENTITIES = ['none', 'bad', 'owner', 'other', 'admin'] as const;
type BaseIdentity = (typeof BASE_IDENTITIES)[number];
/** The scope axis: the owner's own tokens narrowed to one scope. */
const SCOPED = ['owner-send', 'owner-read'] as const;
/** JWT mode's extra column: the application's JWTs. */
const JWTS = ['jwt', 'jwt-send', 'jwt-read', 'jwt-other', 'jwt-expired'] as const;
type Identity = BaseIdentity | (typeof SCOPED)[number] | (typeof JWTS)[number];

/** What one cell of the matrix sends. */
interface Call {
  path: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/** One route's row: how to call it (with fresh data) as the owner, and what each identity gets. */
interface Row {
  call: (owner: string) => Call | Promise<Call>;
  expect: Record<BaseIdentity, number>;
  /**
   * A user route's scope, as intended (`any`: every scope may call it); absent for public
   * and admin routes. Written here, not read from the route table, which must agree.
   */
  scope?: Scope | 'any';
}

const PUBLIC = { none: 200, bad: 200, owner: 200, other: 200, admin: 200 };
const OWNER_ONLY = (ok: number) => ({ none: 401, bad: 401, owner: ok, other: 403, admin: 403 });
const OWNER_OR_ADMIN = (ok: number) => ({ none: 401, bad: 401, owner: ok, other: 403, admin: ok });
/** A message that is not the caller's is a 404, the same as one that does not exist. */
const PARTY_ONLY = (ok: number) => ({ none: 401, bad: 401, owner: ok, other: 404, admin: 404 });
const ADMIN_ONLY = (ok: number) => ({ none: 401, bad: 401, owner: 403, other: 403, admin: ok });

let server: TestApp;
const tokens = new Map<string, string>();
const scopedTokens = new Map<string, string>();
let counter = 0;

async function makeUser(): Promise<string> {
  const id = `user${++counter}`;
  const res = await server.postJson('/v1/users', { id }, { authorization: `Bearer ${ADMIN}` });
  assert.equal(res.status, 201, res.text);
  tokens.set(id, res.json<{ token: string }>().token);
  return id;
}

/** An endpoint nothing listens on (port 9, discard), told of new users. */
const WEBHOOK = { url: 'http://127.0.0.1:9/hook', events: ['user.created'] };

async function makeWebhook(): Promise<string> {
  const res = await server.postJson('/v1/webhooks', WEBHOOK, { authorization: `Bearer ${ADMIN}` });
  assert.equal(res.status, 201, res.text);
  return res.json<{ id: string }>().id;
}

/** A message from `from` to a fresh peer, sent with `from`'s token. */
async function messageFrom(from: string): Promise<Message> {
  const peer = await makeUser();
  const res = await server.postJson('/v1/messages', { toUser: peer, message: 'matrix' }, { authorization: `Bearer ${tokens.get(from)}` });
  assert.equal(res.status, 201, res.text);
  return res.json<Message>();
}

const ROWS: Record<string, Row> = {
  'GET /healthz': { call: () => ({ path: '/healthz' }), expect: PUBLIC },
  'GET /readyz': { call: () => ({ path: '/readyz' }), expect: PUBLIC },
  'GET /metrics': { call: () => ({ path: '/metrics' }), expect: PUBLIC },
  'GET /openapi.json': { call: () => ({ path: '/openapi.json' }), expect: PUBLIC },
  'GET /problems/:code': { call: () => ({ path: '/problems/forbidden' }), expect: PUBLIC },
  'GET /docs': { call: () => ({ path: '/docs/' }), expect: PUBLIC },
  'GET /docs/json': { call: () => ({ path: '/docs/json' }), expect: PUBLIC },
  'GET /docs/yaml': { call: () => ({ path: '/docs/yaml' }), expect: PUBLIC },
  // The UI's own page redirects to /docs/, for everyone alike.
  'GET /docs/static/index.html': {
    call: () => ({ path: '/docs/static/index.html' }),
    expect: { none: 302, bad: 302, owner: 302, other: 302, admin: 302 },
  },
  'GET /docs/static/swagger-initializer.js': { call: () => ({ path: '/docs/static/swagger-initializer.js' }), expect: PUBLIC },
  'GET /docs/static/*': { call: () => ({ path: '/docs/static/swagger-ui.css' }), expect: PUBLIC },
  // The web app's files need no token: signing in happens inside the app.
  'GET /': { call: () => ({ path: '/' }), expect: PUBLIC },
  'GET /app/:name': {
    call: () => ({ path: '/app/not-part-of-the-build.js' }),
    expect: { none: 404, bad: 404, owner: 404, other: 404, admin: 404 },
  },
  'GET /v1/server': { call: () => ({ path: '/v1/server' }), expect: PUBLIC },

  'POST /post-message': { scope: 'send',
    call: async (owner) => ({ path: '/post-message', body: { fromUser: owner, toUser: await makeUser(), message: 'm' } }),
    expect: OWNER_ONLY(202),
  },
  'GET /get-messages/:user': { scope: 'read', call: (owner) => ({ path: `/get-messages/${owner}` }), expect: OWNER_ONLY(200) },
  'POST /v1/messages': { scope: 'send',
    call: async (owner) => ({ path: '/v1/messages', body: { fromUser: owner, toUser: await makeUser(), message: 'm' } }),
    expect: OWNER_ONLY(201),
  },
  'GET /v1/messages/:id': { scope: 'read', call: async (owner) => ({ path: `/v1/messages/${(await messageFrom(owner)).id}` }), expect: PARTY_ONLY(200) },
  'DELETE /v1/messages/:id': { scope: 'full', call: async (owner) => ({ path: `/v1/messages/${(await messageFrom(owner)).id}` }), expect: PARTY_ONLY(204) },
  'GET /v1/users/:user/messages': { scope: 'read', call: (owner) => ({ path: `/v1/users/${owner}/messages` }), expect: OWNER_ONLY(200) },
  'GET /v1/users/:user/sent': { scope: 'read', call: (owner) => ({ path: `/v1/users/${owner}/sent` }), expect: OWNER_ONLY(200) },
  'GET /v1/users/:user/conversations': { scope: 'read', call: (owner) => ({ path: `/v1/users/${owner}/conversations` }), expect: OWNER_ONLY(200) },
  'GET /v1/users/:user/conversations/:peer': { scope: 'read',
    call: async (owner) => ({ path: `/v1/users/${owner}/conversations/${(await messageFrom(owner)).toUser}` }),
    expect: OWNER_ONLY(200),
  },
  'POST /v1/users/:user/read': { scope: 'read', call: (owner) => ({ path: `/v1/users/${owner}/read`, body: { upTo: '1' } }), expect: OWNER_ONLY(200) },
  'GET /v1/users/:user/stream': { scope: 'read', call: (owner) => ({ path: `/v1/users/${owner}/stream` }), expect: OWNER_ONLY(200) },
  'POST /v1/users/:user/tokens': { scope: 'full', call: (owner) => ({ path: `/v1/users/${owner}/tokens` }), expect: OWNER_OR_ADMIN(201) },
  'DELETE /v1/users/:user/tokens': { scope: 'full', call: (owner) => ({ path: `/v1/users/${owner}/tokens` }), expect: OWNER_OR_ADMIN(204) },
  'POST /v1/users': { call: () => ({ path: '/v1/users', body: { id: `new${++counter}` } }), expect: ADMIN_ONLY(201) },
  'GET /v1/users': { call: () => ({ path: '/v1/users' }), expect: ADMIN_ONLY(200) },
  // Anyone with a valid token may ask who it is.
  'GET /v1/me': { scope: 'any', call: () => ({ path: '/v1/me' }), expect: { none: 401, bad: 401, owner: 200, other: 200, admin: 200 } },
  'DELETE /v1/users/:user': { call: async () => ({ path: `/v1/users/${await makeUser()}` }), expect: ADMIN_ONLY(204) },

  'POST /v1/webhooks': { call: () => ({ path: '/v1/webhooks', body: WEBHOOK }), expect: ADMIN_ONLY(201) },
  'GET /v1/webhooks': { call: () => ({ path: '/v1/webhooks' }), expect: ADMIN_ONLY(200) },
  'GET /v1/webhooks/:id': { call: async () => ({ path: `/v1/webhooks/${await makeWebhook()}` }), expect: ADMIN_ONLY(200) },
  'PATCH /v1/webhooks/:id': {
    call: async () => ({ path: `/v1/webhooks/${await makeWebhook()}`, body: { description: 'changed' } }),
    expect: ADMIN_ONLY(200),
  },
  'DELETE /v1/webhooks/:id': { call: async () => ({ path: `/v1/webhooks/${await makeWebhook()}` }), expect: ADMIN_ONLY(204) },
  'GET /v1/webhooks/:id/deliveries': { call: async () => ({ path: `/v1/webhooks/${await makeWebhook()}/deliveries` }), expect: ADMIN_ONLY(200) },
  'POST /v1/webhooks/:id/deliveries/:deliveryId/retry': {
    call: async () => {
      const id = await makeWebhook();
      await makeUser(); // a user.created event: one delivery to retry
      const page = await server.request(`/v1/webhooks/${id}/deliveries`, { headers: { authorization: `Bearer ${ADMIN}` } });
      const delivery = page.json<{ deliveries: { id: string }[] }>().deliveries[0]!;
      return { path: `/v1/webhooks/${id}/deliveries/${delivery.id}/retry` };
    },
    expect: ADMIN_ONLY(202),
  },
};

const hmac = new TextEncoder().encode(SECRET);

async function jwtFor(sub: string, claims: jose.JWTPayload = {}): Promise<string> {
  return new jose.SignJWT({ sub, exp: Math.floor(Date.now() / 1000) + 600, ...claims }).setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt().sign(hmac);
}

/** A token of `owner` narrowed to `scope`, issued through the API with the owner's full token. */
async function scopedToken(owner: string, scope: Scope): Promise<string> {
  const key = `${owner} ${scope}`;
  let token = scopedTokens.get(key);
  if (!token) {
    const res = await server.postJson(`/v1/users/${owner}/tokens`, { scopes: [scope] }, { authorization: `Bearer ${tokens.get(owner)}` });
    assert.equal(res.status, 201, res.text);
    token = res.json<{ token: string }>().token;
    scopedTokens.set(key, token);
  }
  return token;
}

/** What a cell expects: the row's own columns, and the scoped ones from the row's own scope. */
function expected(row: Row, identity: Identity): number {
  if (identity in row.expect) return row.expect[identity as BaseIdentity];
  if (identity === 'jwt') return row.expect.owner;
  if (identity === 'jwt-other') return row.expect.other;
  if (identity === 'jwt-expired') return row.expect.bad;
  // A public or admin route: a narrowed token of the owner gets what the owner's full one gets.
  if (row.scope === undefined) return row.expect.owner;
  const held = identity.endsWith('send') ? 'send' : 'read';
  return row.scope === 'any' || row.scope === held ? row.expect.owner : 403;
}

/** Which user a cell acts as; the owner is the user the call is about. */
async function authorization(identity: Identity, owner: string, other: string): Promise<Record<string, string>> {
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  switch (identity) {
    case 'owner-send': return bearer(await scopedToken(owner, 'send'));
    case 'owner-read': return bearer(await scopedToken(owner, 'read'));
    case 'jwt': return bearer(await jwtFor(owner));
    case 'jwt-send': return bearer(await jwtFor(owner, { scope: 'send' }));
    case 'jwt-read': return bearer(await jwtFor(owner, { scope: 'openid read' }));
    case 'jwt-other': return bearer(await jwtFor(other));
    case 'jwt-expired': return bearer(await jwtFor(owner, { exp: Math.floor(Date.now() / 1000) - 3600 }));
    case 'none': return {};
    case 'bad': return { authorization: 'Bearer pbx_not-a-real-token-at-all' };
    case 'owner': return { authorization: `Bearer ${tokens.get(owner)}` };
    case 'other': return { authorization: `Bearer ${tokens.get(other)}` };
    case 'admin': return { authorization: `Bearer ${ADMIN}` };
  }
}

async function perform(method: string, route: string, call: Call, headers: Record<string, string>): Promise<RawResponse> {
  if (route.endsWith('/stream')) {
    // A stream that opens stays open: read its status, then close it.
    const s = await openStream(await server.listen(), call.path, headers);
    s.close();
    return { status: s.status, headers: s.headers, text: s.body(), json: <T>() => JSON.parse(s.body()) as T };
  }
  return server.request(call.path, {
    method,
    headers: { ...headers, ...(call.body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: call.body === undefined ? undefined : JSON.stringify(call.body),
  });
}

for (const mode of ['token', 'jwt'] as const) {
describe(`authorization matrix (${mode} mode)`, () => {
  const identities: Identity[] = [...BASE_IDENTITIES, ...SCOPED, ...(mode === 'jwt' ? JWTS : [])];
  before(async () => {
    ensureWebBuilt();
    server = await buildTestApp({
      POSTBOX_AUTH: mode, POSTBOX_ADMIN_TOKEN: ADMIN, POSTBOX_RATE_LIMIT: '0', POSTBOX_WEBHOOK_ALLOW_PRIVATE: 'true',
      ...(mode === 'jwt' ? { POSTBOX_JWT_SECRET: SECRET } : {}),
    });
  });
  after(() => server.stop());

  it('has a row for every registered route', () => {
    const registered = new Set(server.app.routeTable.filter((r) => r.method !== 'HEAD').map((r) => `${r.method} ${r.url}`));
    const missing = [...registered].filter((r) => !(r in ROWS));
    assert.deepEqual(missing, [], 'every route needs a row in the access matrix');
    for (const r of server.app.routeTable) {
      if (r.method === 'HEAD') continue;
      const row = ROWS[`${r.method} ${r.url}`]!;
      const statuses = Object.values(row.expect);
      const refuses = statuses.some((st) => st === 401 || st === 403);
      if (r.access === 'public') assert.ok(!refuses, `${r.method} ${r.url} is public: it refuses no one`);
      else assert.ok(refuses, `${r.method} ${r.url} is not public: someone must be refused`);
    }
  });

  it('finds every route declared with the scope its row intends', () => {
    const disagreements = [];
    for (const r of server.app.routeTable) {
      if (r.method === 'HEAD') continue;
      const row = ROWS[`${r.method} ${r.url}`];
      if (!row) continue; // the test above names it
      const declared = r.access === 'user' ? (r.scope ?? 'any') : undefined;
      if (declared !== row.scope) disagreements.push(`${r.method} ${r.url}: declared ${declared ?? 'no scope'}, intended ${row.scope ?? 'no scope'}`);
    }
    assert.deepEqual(disagreements, [], 'the route table declares the scope each route is meant to need');
  });

  for (const [route, row] of Object.entries(ROWS)) {
    const [method, pattern] = route.split(' ') as [string, string];
    it(`${route}`, async () => {
      const entry = server.app.routeTable.find((r) => r.method === method && r.url === pattern);
      if (!entry) return assert.fail(`${route} is in the matrix but not registered: remove its row`);
      for (const identity of identities) {
        const owner = await makeUser();
        const other = await makeUser();
        const call = await row.call(owner);
        const res = await perform(method, route, call, { ...(await authorization(identity, owner, other)), ...call.headers });
        const want = expected(row, identity);
        assert.equal(res.status, want, `${route} as ${identity}: ${res.status} ${res.text.slice(0, 300)}`);
        if (res.status === 401) assert.match(String(res.headers['www-authenticate']), /^Bearer/);
      }
    });
  }
});

}

describe('token mode rules beyond the matrix', () => {
  before(async () => {
    server = await buildTestApp({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN, POSTBOX_RATE_LIMIT: '0' });
  });
  after(() => server.stop());

  it('fills fromUser from the token when it is omitted, and refuses another sender', async () => {
    const ann = await makeUser();
    const bob = await makeUser();
    const asAnn = { authorization: `Bearer ${tokens.get(ann)}` };
    const sent = await server.postJson('/v1/messages', { toUser: bob, message: 'no fromUser' }, asAnn);
    assert.equal(sent.status, 201);
    assert.equal(sent.json<Message>().fromUser, ann);
    const legacy = await server.request('/post-message', { method: 'POST', headers: asAnn, body: JSON.stringify({ toUser: bob, message: 'legacy' }) });
    assert.equal(legacy.status, 202);
    const forged = await server.postJson('/v1/messages', { fromUser: bob, toUser: ann, message: 'as bob' }, asAnn);
    assert.equal(forged.status, 403);
    const inbox = (await server.request(`/get-messages/${bob}`, { headers: { authorization: `Bearer ${tokens.get(bob)}` } })).json<Message[]>();
    assert.deepEqual(inbox.map((m) => [m.fromUser, m.message]), [[ann, 'no fromUser'], [ann, 'legacy']]);
  });

  it('lets the recipient read and delete a message, and nobody else', async () => {
    const ann = await makeUser();
    const m = await messageFrom(ann);
    const recipient = { authorization: `Bearer ${tokens.get(m.toUser)}` };
    assert.equal((await server.request(`/v1/messages/${m.id}`, { headers: recipient })).status, 200);
    assert.equal((await server.request(`/v1/messages/${m.id}`, { method: 'DELETE', headers: recipient })).status, 204);
  });

  it('marks read only in the caller\'s own inbox', async () => {
    const ann = await makeUser();
    const m = await messageFrom(ann);
    // ann sent it; marking it read through ann's inbox changes nothing in the recipient's.
    const asAnn = { authorization: `Bearer ${tokens.get(ann)}` };
    const res = await server.postJson(`/v1/users/${ann}/read`, { ids: [m.id] }, asAnn);
    assert.deepEqual(res.json(), { unread: 0, marked: 0 });
    const stored = (await server.request(`/v1/messages/${m.id}`, { headers: asAnn })).json<Message>();
    assert.equal(stored.readAt, null);
  });

  it('stops accepting a token once revoked, and accepts a new one', async () => {
    const ann = await makeUser();
    const old = { authorization: `Bearer ${tokens.get(ann)}` };
    const fresh = (await server.request(`/v1/users/${ann}/tokens`, { method: 'POST', headers: old })).json<{ token: string }>().token;
    assert.match(fresh, /^pbx_[A-Za-z0-9_-]{43}$/, '256 random bits behind a recognisable prefix');
    assert.equal((await server.request(`/v1/users/${ann}/tokens`, { method: 'DELETE', headers: old })).status, 204);
    assert.equal((await server.request(`/v1/users/${ann}/messages`, { headers: old })).status, 401);
    assert.equal((await server.request(`/v1/users/${ann}/messages`, { headers: { authorization: `Bearer ${fresh}` } })).status, 401,
      'revoking revokes every token of the user');
  });

  it('opens the stream with sent=true for the owner\'s read-scoped token, carrying its sends; never for another user', async () => {
    const ann = await makeUser();
    const bob = await makeUser();
    const asAnn = { authorization: `Bearer ${tokens.get(ann)}` };
    const read = (await server.postJson(`/v1/users/${ann}/tokens`, { scopes: ['read'] }, asAnn)).json<{ token: string }>().token;
    const url = await server.listen();
    const refused = await openStream(url, `/v1/users/${ann}/stream?sent=true`, { authorization: `Bearer ${tokens.get(bob)}` });
    refused.close();
    assert.equal(refused.status, 403);
    const s = await openStream(url, `/v1/users/${ann}/stream?sent=true`, { authorization: `Bearer ${read}` });
    try {
      assert.equal(s.status, 200);
      await until(() => server.hub.listenersOf(ann) > 0, 'the stream to subscribe');
      const sent = await server.postJson('/v1/messages', { toUser: bob, message: 'seen by my read token' }, asAnn);
      assert.equal(sent.status, 201);
      const [event] = await s.waitFor(1, 'sent');
      assert.deepEqual(JSON.parse(event!.data), sent.json<Message>());
    } finally {
      s.close();
    }
  });

  it('issues scoped tokens, and refuses scopes it does not know', async () => {
    const ann = await makeUser();
    const asAnn = { authorization: `Bearer ${tokens.get(ann)}` };
    const res = await server.postJson(`/v1/users/${ann}/tokens`, { scopes: ['read', 'send', 'read'] }, asAnn);
    assert.equal(res.status, 201, res.text);
    assert.deepEqual(res.json<{ scopes: string[] }>().scopes, ['send', 'read']);
    const full = await server.postJson(`/v1/users/${ann}/tokens`, { scopes: ['full', 'send'] }, asAnn);
    assert.deepEqual(full.json<{ scopes: string[] }>().scopes, ['full']);
    for (const scopes of [['admin'], [], 'send']) {
      const bad = await server.postJson(`/v1/users/${ann}/tokens`, { scopes }, asAnn);
      assert.equal(bad.status, 400, `${JSON.stringify(scopes)}: ${bad.text}`);
      assert.match(String(bad.headers['content-type']), /^application\/problem\+json/);
    }
    const forbidden = await server.postJson(`/v1/users/${ann}/tokens`, {}, { authorization: `Bearer ${res.json<{ token: string }>().token}` });
    assert.equal(forbidden.status, 403, 'a scoped token cannot mint a wider one');
    assert.match(forbidden.json<{ detail: string }>().detail, /needs a full token/);
  });

  it('keeps a token\'s scopes through export and import', async () => {
    const ann = await makeUser();
    await server.postJson(`/v1/users/${ann}/tokens`, { scopes: ['send'] }, { authorization: `Bearer ${tokens.get(ann)}` });
    const records = [];
    for await (const r of server.storage.exportAll()) if (r.type === 'token' && r.user === ann) records.push(r);
    assert.deepEqual(records.map((r) => (r as { scopes?: string }).scopes ?? 'full').sort(), ['full', 'send']);
  });

  it('keeps only hashes of tokens at rest', async () => {
    const ann = await makeUser();
    const token = tokens.get(ann)!;
    const records = [];
    for await (const r of server.storage.exportAll()) records.push(JSON.stringify(r));
    const dump = records.join('\n');
    assert.ok(!dump.includes(token) && !dump.includes(token.slice(4)), 'the token itself is nowhere in storage');
    assert.match(dump, /"hash":"[0-9a-f]{64}"/);
  });
});
