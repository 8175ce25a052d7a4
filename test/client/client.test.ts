/**
 * The TypeScript client against a real server over real HTTP: every call, paging across
 * pages, problem documents, idempotency, token mode, and a server that is not there.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  PostboxClient, PostboxConnectionError, PostboxError, type Message,
} from '../../src/client/index.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const ADMIN_TOKEN = 'admin-token-for-client-tests';

/** A port on 127.0.0.1 that nothing listens on: taken from the OS, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The URL a fetch call was given. */
function urlOf(input: Parameters<typeof fetch>[0]): string {
  return input instanceof Request ? input.url : input.toString();
}

/** Collects an async iterator. */
async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** Sends `texts` from `from` to `to`, one after another so their order is known. */
async function sendAll(client: PostboxClient, from: string, to: string, texts: string[]): Promise<Message[]> {
  const sent: Message[] = [];
  for (const message of texts) sent.push(await client.send({ fromUser: from, toUser: to, message }));
  return sent;
}

describe('PostboxClient, open mode', () => {
  let server: TestServer;
  let client: PostboxClient;
  before(async () => {
    server = await startTestServer();
    client = new PostboxClient({ url: server.url, token: null });
  });
  after(() => server.stop());

  it('sends, reads and deletes one message', async () => {
    const sent = await client.send({ fromUser: 'c-val', toUser: 'c-steve', message: 'hi' });
    assert.equal(sent.fromUser, 'c-val');
    assert.equal(sent.toUser, 'c-steve');
    assert.equal(sent.message, 'hi');
    assert.equal(sent.readAt, null);
    assert.match(sent.id, /^[1-9][0-9]*$/);
    assert.deepEqual(await client.getMessage(sent.id), sent);

    assert.equal(await client.deleteMessage(sent.id), undefined);
    await assert.rejects(client.getMessage(sent.id), (err: unknown) => err instanceof PostboxError && err.status === 404);
  });

  it('stores a numeric user id as its decimal string', async () => {
    const sent = await client.send({ fromUser: 41, toUser: 42, message: 'numbers' });
    assert.deepEqual([sent.fromUser, sent.toUser], ['41', '42']);
  });

  it('answers a repeated idempotency key with the first message and stores nothing new', async () => {
    const input = { fromUser: 'c-idem-from', toUser: 'c-idem-to', message: 'once' };
    const first = await client.send(input, { idempotencyKey: 'key-1' });
    const again = await client.send(input, { idempotencyKey: 'key-1' });
    assert.deepEqual(again, first);
    const other = await client.send(input, { idempotencyKey: 'key-2' });
    assert.notEqual(other.id, first.id);
    const page = await client.inbox('c-idem-to');
    assert.deepEqual(page.messages.map((m) => m.id), [first.id, other.id]);
  });

  it('reports a problem document as a PostboxError with its fields', async () => {
    const err = await client.send({ fromUser: 'c-bad', toUser: 'a/b', message: 'x' }).then(
      () => assert.fail('the send should have been refused'), (e: unknown) => e);
    assert.ok(err instanceof PostboxError);
    assert.equal(err.status, 400);
    assert.equal(err.type, '/problems/validation');
    assert.equal(err.title, 'Invalid request');
    assert.match(err.detail, /toUser/);
    assert.deepEqual(err.errors.map((e) => e.field), ['toUser']);
    assert.equal(err.problem.status, 400);
    assert.equal(err.method, 'POST');
    assert.equal(err.url, `${server.url}/v1/messages`);
    assert.match(err.message, /toUser .*\(HTTP 400\)/);
  });

  it('reports a reused idempotency key with a different message as 422', async () => {
    await client.send({ fromUser: 'c-reuse', toUser: 'c-reuse-to', message: 'first' }, { idempotencyKey: 'same' });
    await assert.rejects(
      client.send({ fromUser: 'c-reuse', toUser: 'c-reuse-to', message: 'second' }, { idempotencyKey: 'same' }),
      (err: unknown) => err instanceof PostboxError && err.status === 422 && err.type === '/problems/idempotency_mismatch'
        && err.errors[0]?.field === 'Idempotency-Key',
    );
  });

  it('encodes user ids and message ids as path segments', async () => {
    const user = 'Zoë ?#%& 🐙';
    const sent = await client.send({ fromUser: 'c-enc', toUser: user, message: 'encoded' });
    const page = await client.inbox(user);
    assert.deepEqual(page.messages.map((m) => [m.id, m.toUser]), [[sent.id, user]]);
    // Unencoded, "?" would end the path and the server would answer message 1 instead.
    await assert.rejects(client.getMessage('1?x'),
      (err: unknown) => err instanceof PostboxError && err.status === 404 && err.detail.includes('"1?x"'));
  });

  it('pages the inbox with after, before, limit, from and unread', async () => {
    const to = 'c-pages';
    const fromA = await sendAll(client, 'c-a', to, ['a1', 'a2', 'a3']);
    const fromB = await sendAll(client, 'c-b', to, ['b1', 'b2']);
    const ids = [...fromA, ...fromB].map((m) => m.id);

    const first = await client.inbox(to, { limit: 2 });
    assert.deepEqual(first.messages.map((m) => m.id), ids.slice(0, 2));
    assert.equal(first.next, ids[1]);
    const second = await client.inbox(to, { after: first.next, limit: 2 });
    assert.deepEqual(second.messages.map((m) => m.id), ids.slice(2, 4));

    const latest = await client.inbox(to, { before: 'latest', limit: 2 });
    assert.deepEqual(latest.messages.map((m) => m.id), ids.slice(3, 5), 'the newest page, oldest first');
    assert.equal(latest.next, ids[3]);

    const onlyB = await client.inbox(to, { from: 'c-b' });
    assert.deepEqual(onlyB.messages.map((m) => m.message), ['b1', 'b2']);
    assert.equal(onlyB.next, null);

    await client.markRead(to, { ids: [fromA[0]!.id, fromB[0]!.id] });
    const unread = await client.inbox(to, { unread: true });
    assert.deepEqual(unread.messages.map((m) => m.message), ['a2', 'a3', 'b2']);
  });

  it('iterates every page of the inbox, forward and backward', async () => {
    const to = 'c-iterate';
    const texts = Array.from({ length: 7 }, (_, i) => `m${i}`);
    await sendAll(client, 'c-it-from', to, texts);

    const pages: string[] = [];
    const counting = new PostboxClient({
      url: server.url, token: null,
      fetch: (input, init) => {
        pages.push(urlOf(input));
        return fetch(input, init);
      },
    });
    const forward = await collect(counting.messages(to, { limit: 3 }));
    assert.deepEqual(forward.map((m) => m.message), texts);
    assert.equal(pages.length, 3, 'seven messages in pages of three');

    const backward = await collect(client.messages(to, { before: 'latest', limit: 3 }));
    assert.deepEqual(backward.map((m) => m.message), [...texts].reverse(), 'backward runs newest first');

    const rest = await collect(client.messages(to, { after: forward[4]!.id, limit: 1 }));
    assert.deepEqual(rest.map((m) => m.message), ['m5', 'm6']);
  });

  it('iterates the sent box and a conversation across pages', async () => {
    const me = 'c-conv-me';
    const peer = 'c-conv-peer';
    const exchange: Message[] = [];
    for (let i = 0; i < 5; i++) {
      exchange.push(await client.send({ fromUser: me, toUser: peer, message: `out${i}` }));
      exchange.push(await client.send({ fromUser: peer, toUser: me, message: `in${i}` }));
    }
    await client.send({ fromUser: me, toUser: 'c-conv-other', message: 'elsewhere' });

    const sent = await collect(client.sentMessages(me, { limit: 2 }));
    assert.deepEqual(sent.map((m) => m.message), ['out0', 'out1', 'out2', 'out3', 'out4', 'elsewhere']);

    const sentPage = await client.sent(me, { limit: 4 });
    assert.equal(sentPage.messages.length, 4);
    assert.equal(sentPage.next, sentPage.messages[3]!.id);

    const talk = await collect(client.conversationMessages(me, peer, { limit: 3 }));
    assert.deepEqual(talk.map((m) => m.id), exchange.map((m) => m.id));

    const page = await client.conversation(peer, me, { before: 'latest', limit: 2 });
    assert.deepEqual(page.messages.map((m) => m.message), ['out4', 'in4']);
  });

  it('lists conversations with their unread counts, and pages them', async () => {
    const me = 'c-list-me';
    await client.send({ fromUser: 'c-list-p1', toUser: me, message: 'from p1' });
    await client.send({ fromUser: 'c-list-p1', toUser: me, message: 'again p1' });
    await client.send({ fromUser: me, toUser: 'c-list-p2', message: 'to p2' });

    const list = await client.conversations(me);
    assert.deepEqual(list.conversations.map((c) => [c.peer, c.unread, c.lastMessage.message]),
      [['c-list-p2', 0, 'to p2'], ['c-list-p1', 2, 'again p1']]);
    assert.equal(list.next, null);

    const firstOnly = await client.conversations(me, { limit: 1 });
    assert.deepEqual(firstOnly.conversations.map((c) => c.peer), ['c-list-p2']);
    assert.notEqual(firstOnly.next, null);
    const older = await client.conversations(me, { before: firstOnly.next!, limit: 1 });
    assert.deepEqual(older.conversations.map((c) => c.peer), ['c-list-p1']);
  });

  it('marks messages read up to an id or by ids', async () => {
    const me = 'c-read';
    const got = await sendAll(client, 'c-read-from', me, ['r1', 'r2', 'r3', 'r4']);
    assert.deepEqual(await client.markRead(me, { upTo: got[1]!.id }), { unread: 2, marked: 2 });
    assert.deepEqual(await client.markRead(me, { ids: [got[3]!.id] }), { unread: 1, marked: 1 });
    const readAt = (await client.getMessage(got[0]!.id)).readAt;
    assert.ok(readAt !== null && !Number.isNaN(Date.parse(readAt)));
    assert.equal((await client.getMessage(got[2]!.id)).readAt, null);
  });

  it('long-polls the inbox until a message arrives', async () => {
    const me = 'c-wait';
    const [seen] = await sendAll(client, 'c-wait-from', me, ['already here']);
    const waiting = client.inbox(me, { after: seen!.id, wait: 30 });
    const sent = await client.send({ fromUser: 'c-wait-from', toUser: me, message: 'arrived' });
    const page = await waiting;
    assert.deepEqual(page.messages.map((m) => m.id), [sent.id]);
  });

  it('cancels a call with an AbortSignal, handing back the abort itself', async () => {
    const controller = new AbortController();
    const waiting = client.inbox('c-abort', { wait: 30, signal: controller.signal });
    controller.abort();
    await assert.rejects(waiting, (err: unknown) => err instanceof Error && err.name === 'AbortError');
  });

  it('answers health and readiness', async () => {
    assert.deepEqual(await client.health(), { status: 'ok' });
    assert.deepEqual(await client.ready(), { status: 'ok' });
  });

  it('keeps a path prefix of the base URL, and trims a trailing slash', async () => {
    const seen: string[] = [];
    const prefixed = new PostboxClient({
      url: `${server.url}/behind/a/proxy/`,
      token: null,
      fetch: (input, init) => {
        seen.push(urlOf(input));
        return fetch(input, init);
      },
    });
    assert.equal(prefixed.url, `${server.url}/behind/a/proxy`);
    // This server has no such prefix, so the answer is a 404 problem for exactly that path.
    await assert.rejects(prefixed.health(), (err: unknown) => err instanceof PostboxError && err.status === 404);
    assert.deepEqual(seen, [`${server.url}/behind/a/proxy/healthz`]);
  });

  it('describes an error answer that is not a problem document', async () => {
    const client2 = new PostboxClient({
      url: server.url, token: null,
      // A proxy in front of the server answering for it.
      fetch: () => Promise.resolve(new Response('<html>Bad Gateway</html>', { status: 502, statusText: 'Bad Gateway' })),
    });
    await assert.rejects(client2.health(), (err: unknown) =>
      err instanceof PostboxError && err.status === 502 && err.title === 'Bad Gateway' && err.type === 'about:blank'
      && err.detail.includes(`${server.url}/healthz`) && err.errors.length === 0);
  });

  it('refuses a URL that is not http(s)', () => {
    assert.throws(() => new PostboxClient({ url: 'not a url' }), /not a valid Postbox URL: "not a url"/);
    assert.throws(() => new PostboxClient({ url: 'ftp://example.com' }), /http:\/\/ or https:\/\//);
  });

  it('takes POSTBOX_URL and POSTBOX_TOKEN from the environment unless told otherwise', async () => {
    const saved = { url: process.env.POSTBOX_URL, token: process.env.POSTBOX_TOKEN };
    const headers: (string | null)[] = [];
    const recording: typeof fetch = (input, init) => {
      headers.push(new Headers(init?.headers).get('authorization'));
      return fetch(input, init);
    };
    try {
      process.env.POSTBOX_URL = server.url;
      process.env.POSTBOX_TOKEN = 'pbx_from-the-environment';
      const fromEnv = new PostboxClient({ fetch: recording });
      assert.equal(fromEnv.url, server.url);
      await fromEnv.health();
      await new PostboxClient({ fetch: recording, token: 'pbx_given' }).health();
      await new PostboxClient({ fetch: recording, token: null }).health();
      assert.deepEqual(headers, ['Bearer pbx_from-the-environment', 'Bearer pbx_given', null]);

      delete process.env.POSTBOX_URL;
      assert.equal(new PostboxClient().url, 'http://localhost:8080');
    } finally {
      for (const [name, value] of [['POSTBOX_URL', saved.url], ['POSTBOX_TOKEN', saved.token]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});

describe('PostboxClient, token mode', () => {
  let server: TestServer;
  let admin: PostboxClient;
  before(async () => {
    server = await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: ADMIN_TOKEN });
    admin = new PostboxClient({ url: server.url, token: ADMIN_TOKEN });
  });
  after(() => server.stop());

  it('creates, lists and deletes users with the admin token', async () => {
    const created = await admin.createUser('t-alice');
    assert.equal(created.id, 't-alice');
    assert.match(created.token, /^pbx_/);
    const { users } = await admin.listUsers();
    const alice = users.find((u) => u.id === 't-alice');
    assert.ok(alice && !Number.isNaN(Date.parse(alice.createdAt)));

    await assert.rejects(admin.createUser('t-alice'), (err: unknown) => err instanceof PostboxError && err.status === 409);

    await admin.deleteUser('t-alice');
    assert.ok(!(await admin.listUsers()).users.some((u) => u.id === 't-alice'));
    const alice2 = new PostboxClient({ url: server.url, token: created.token });
    await assert.rejects(alice2.inbox('t-alice'), (err: unknown) => err instanceof PostboxError && err.status === 401);
  });

  it('sends as the token\'s user, who reads only their own inbox', async () => {
    const bob = await admin.createUser('t-bob');
    const carol = await admin.createUser('t-carol');
    const asBob = new PostboxClient({ url: server.url, token: bob.token });
    const asCarol = new PostboxClient({ url: server.url, token: carol.token });

    const sent = await asBob.send({ toUser: 't-carol', message: 'from the token' });
    assert.equal(sent.fromUser, 't-bob');
    assert.deepEqual((await asCarol.inbox('t-carol')).messages.map((m) => m.id), [sent.id]);
    await assert.rejects(asBob.inbox('t-carol'), (err: unknown) =>
      err instanceof PostboxError && err.status === 403 && err.type === '/problems/forbidden');
    await assert.rejects(new PostboxClient({ url: server.url, token: null }).inbox('t-carol'),
      (err: unknown) => err instanceof PostboxError && err.status === 401);
  });

  it('issues and revokes a user\'s tokens', async () => {
    const dave = await admin.createUser('t-dave');
    const asDave = new PostboxClient({ url: server.url, token: dave.token });
    const { token } = await asDave.createToken('t-dave');
    assert.match(token, /^pbx_/);
    assert.notEqual(token, dave.token);
    const second = new PostboxClient({ url: server.url, token });
    assert.deepEqual((await second.inbox('t-dave')).messages, []);

    await admin.revokeTokens('t-dave');
    for (const revoked of [asDave, second]) {
      await assert.rejects(revoked.inbox('t-dave'), (err: unknown) => err instanceof PostboxError && err.status === 401);
    }
    const fresh = await admin.createToken('t-dave');
    assert.deepEqual((await new PostboxClient({ url: server.url, token: fresh.token }).inbox('t-dave')).next, null);
  });

  it('keeps user management to the admin token', async () => {
    const erin = await admin.createUser('t-erin');
    const asErin = new PostboxClient({ url: server.url, token: erin.token });
    await assert.rejects(asErin.listUsers(), (err: unknown) => err instanceof PostboxError && err.status === 403);
    await assert.rejects(asErin.createUser('t-mallory'), (err: unknown) => err instanceof PostboxError && err.status === 403);
  });
});

describe('PostboxClient without a server', () => {
  it('names the URL it could not reach', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const client = new PostboxClient({ url, token: null });
    const err = await client.inbox('nobody').then(() => assert.fail('nothing listens there'), (e: unknown) => e);
    assert.ok(err instanceof PostboxConnectionError);
    assert.equal(err.url, `${url}/v1/users/nobody/messages`);
    assert.match(err.message, new RegExp(`^cannot reach ${url}/v1/users/nobody/messages: .*ECONNREFUSED`));
  });
});
