/**
 * client.subscribe() against real servers: live delivery, resume, reconnecting by itself
 * across a server restart without gap or duplicate, backoff when refused for now, and
 * stopping for good on a refusal retrying cannot fix.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PostboxClient, PostboxError, type Message, type StreamEvent } from '../../src/client/index.js';
import { openSqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import { postJson } from '../helpers/http.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

/** Collects what a subscription hears and lets a test await a count of messages. */
function collector() {
  const messages: Message[] = [];
  const events: StreamEvent[] = [];
  return {
    messages,
    events,
    onMessage: (m: Message) => {
      messages.push(m);
    },
    onEvent: (e: StreamEvent) => {
      events.push(e);
    },
    /** Waits for `check`, naming what was heard so far if it never holds. */
    until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
      return until(check, () => `${what}; have ${messages.length} messages, events ${events.map((e) => e.type).join(',')}`, timeoutMs);
    },
  };
}

describe('client.subscribe', () => {
  it('delivers new messages, then resumes after a cursor', async () => {
    const server = await startTestServer();
    const client = new PostboxClient({ url: server.url, token: null });
    try {
      await client.send({ fromUser: 'x', toUser: 'me', message: 'before' });
      const live = collector();
      const sub = client.subscribe('me', { onMessage: live.onMessage, onEvent: live.onEvent });
      await live.until(() => live.events.some((e) => e.type === 'open') && server.hub.listenersOf('me') > 0, 'open');
      const sent = [];
      for (const text of ['one', 'two', 'three']) sent.push(await client.send({ fromUser: 'x', toUser: 'me', message: text }));
      await live.until(() => live.messages.length >= 3, '3 messages');
      assert.deepEqual(live.messages, sent, 'only what came after subscribing, in order');
      assert.equal(sub.lastEventId, sent[2]!.id);
      sub.close();
      await sub.closed;

      const replay = collector();
      const again = client.subscribe('me', { after: sent[0]!.id, onMessage: replay.onMessage });
      await replay.until(() => replay.messages.length >= 2, 'replay');
      assert.deepEqual(replay.messages.map((m) => m.message), ['two', 'three']);
      again.close();
      await again.closed;
    } finally {
      await server.stop();
    }
  });

  it('reconnects by itself after the server restarts, missing nothing and repeating nothing', async () => {
    const dir = await tempDir();
    let server = await startTestServer({}, { dir });
    const port = new URL(server.url).port;
    const client = new PostboxClient({ url: server.url, token: null });
    const got = collector();
    const sub = client.subscribe('me', { onMessage: got.onMessage, onEvent: got.onEvent, reconnect: { minMs: 50, maxMs: 200 } });
    try {
      await got.until(() => server.hub.listenersOf('me') > 0, 'subscribed');
      await client.send({ fromUser: 'x', toUser: 'me', message: 'a' });
      await client.send({ fromUser: 'x', toUser: 'me', message: 'b' });
      await got.until(() => got.messages.length >= 2, 'first two');
      await server.stop();
      await got.until(() => got.events.some((e) => e.type === 'disconnected'), 'the disconnect');
      // While the server is down, messages arrive through the store itself.
      const store = openSqliteStorage({ path: join(dir, 'postbox.db'), durability: 'fsync' });
      for (const text of ['c', 'd', 'e']) await store.send({ fromUser: 'offline', toUser: 'me', message: text });
      await store.close();
      server = await startTestServer({ PORT: port }, { dir });
      await got.until(() => got.messages.length >= 5, 'the missed three');
      await got.until(() => server.hub.listenersOf('me') > 0, 'resubscribed');
      await client.send({ fromUser: 'x', toUser: 'me', message: 'f' });
      await got.until(() => got.messages.length >= 6, 'the live one');
      assert.deepEqual(got.messages.map((m) => m.message), ['a', 'b', 'c', 'd', 'e', 'f']);
      const ids = got.messages.map((m) => Number(m.id));
      assert.deepEqual(ids, [...ids].sort((x, y) => x - y));
    } finally {
      sub.close();
      await sub.closed;
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('with sent: true follows what the user sends too, from after the newest of both boxes, and resumes both across a restart', async () => {
    const dir = await tempDir();
    let server = await startTestServer({}, { dir });
    const port = new URL(server.url).port;
    const client = new PostboxClient({ url: server.url, token: null });
    const got = collector();
    const sentByMe: Message[] = [];
    const plain = collector();
    await client.send({ fromUser: 'x', toUser: 'me', message: 'old in' });
    // The newest message of the user is one it sent: "from now on" starts after it, not after the inbox's newest.
    await client.send({ fromUser: 'me', toUser: 'x', message: 'old out' });
    const sub = client.subscribe('me', {
      sent: true, onMessage: got.onMessage, onEvent: got.onEvent, onSent: (m) => sentByMe.push(m), reconnect: { minMs: 50, maxMs: 200 },
    });
    const plainSub = client.subscribe('me', { onMessage: plain.onMessage, onEvent: plain.onEvent });
    try {
      await got.until(() => server.hub.listenersOf('me') >= 2, 'subscribed');
      const out = await client.send({ fromUser: 'me', toUser: 'x', message: 'out' });
      await client.send({ fromUser: 'x', toUser: 'me', message: 'in' });
      const self = await client.send({ fromUser: 'me', toUser: 'me', message: 'self' });
      await got.until(() => got.messages.length >= 2, 'the two received');
      await plain.until(() => plain.messages.length >= 2, 'the plain subscription\'s two');
      assert.deepEqual(sentByMe, [out]);
      assert.deepEqual(got.messages.map((m) => m.message), ['in', 'self']);
      assert.deepEqual(got.events.filter((e) => e.type === 'sent' || e.type === 'message').map((e) => e.type), ['sent', 'message', 'message']);
      assert.equal(sub.lastEventId, self.id);
      assert.ok(!plain.events.some((e) => e.type === 'sent'), 'without sent: true, no sent event');
      plainSub.close();
      await plainSub.closed;

      await server.stop();
      await got.until(() => got.events.some((e) => e.type === 'disconnected'), 'the disconnect');
      const store = openSqliteStorage({ path: join(dir, 'postbox.db'), durability: 'fsync' });
      await store.send({ fromUser: 'me', toUser: 'y', message: 'offline out' });
      await store.send({ fromUser: 'y', toUser: 'me', message: 'offline in' });
      await store.close();
      server = await startTestServer({ PORT: port }, { dir });
      await got.until(() => got.messages.length >= 3 && sentByMe.length >= 2, 'the missed two');
      await got.until(() => server.hub.listenersOf('me') > 0, 'resubscribed');
      await client.send({ fromUser: 'me', toUser: 'y', message: 'live out' });
      await got.until(() => sentByMe.length >= 3, 'the live one');
      assert.deepEqual(sentByMe.map((m) => m.message), ['out', 'offline out', 'live out']);
      assert.deepEqual(got.messages.map((m) => m.message), ['in', 'self', 'offline in']);
      const ids = got.events.flatMap((e) => (e.type === 'sent' || e.type === 'message' ? [Number(e.message.id)] : []));
      assert.deepEqual(ids, [...new Set(ids)].sort((a, b) => a - b), 'every one once, in id order');
    } finally {
      sub.close();
      plainSub.close();
      await sub.closed;
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('backs off while refused for now (429), then connects', async () => {
    const server = await startTestServer({ POSTBOX_STREAMS_PER_USER: '1' });
    const client = new PostboxClient({ url: server.url, token: null });
    const first = client.subscribe('me', { onMessage: () => undefined });
    const second = collector();
    let sub: ReturnType<PostboxClient['subscribe']> | undefined;
    try {
      await until(() => server.hub.listenersOf('me') > 0, 'the subscription to be heard');
      sub = client.subscribe('me', { onMessage: second.onMessage, onEvent: second.onEvent, reconnect: { minMs: 50, maxMs: 100 } });
      await second.until(() => second.events.some((e) => e.type === 'disconnected'), 'a refusal');
      const refusal = second.events.find((e) => e.type === 'disconnected');
      assert.ok(refusal?.type === 'disconnected' && refusal.error instanceof PostboxError && refusal.error.status === 429);
      first.close();
      await first.closed;
      await second.until(() => second.events.some((e) => e.type === 'open'), 'the connection once a slot is free');
      await second.until(() => server.hub.listenersOf('me') > 0, 'subscribed');
      const m = await client.send({ fromUser: 'x', toUser: 'me', message: 'now' });
      await second.until(() => second.messages.length >= 1, 'the message');
      assert.equal(second.messages[0]!.id, m.id);
    } finally {
      sub?.close();
      await sub?.closed;
      await server.stop();
    }
  });

  it('stops on a refusal retrying cannot fix, and when the server ends the stream', async () => {
    const admin = 'admin-token-for-tests-0123456789';
    const server = await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: admin });
    try {
      const bad = new PostboxClient({ url: server.url, token: 'pbx_wrong' });
      const refused = bad.subscribe('ann', { onMessage: () => undefined });
      await assert.rejects(refused.closed, (err: unknown) => err instanceof PostboxError && err.status === 401);

      const token = (await postJson(server.url, '/v1/users', { id: 'ann' }, { authorization: `Bearer ${admin}` })).json<{ token: string }>().token;
      const ann = new PostboxClient({ url: server.url, token });
      const heard = collector();
      const sub = ann.subscribe('ann', { onMessage: heard.onMessage, onEvent: heard.onEvent });
      await heard.until(() => server.hub.listenersOf('ann') > 0, 'subscribed');
      await ann.revokeTokens('ann');
      await sub.closed;
      assert.deepEqual(heard.events.find((e) => e.type === 'end'), { type: 'end', reason: 'the token was revoked' });
    } finally {
      await server.stop();
    }
  });
});
