/**
 * The live stream over real HTTP: delivery, resume without gap or duplicate (under a
 * concurrent burst too), heartbeats, deleted/read events, limits, and shutdown.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Message, MessagePage, Problem } from '../../src/protocol/types.js';
import { openSqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import { postJson, request } from '../helpers/http.js';
import { buildTestApp } from '../helpers/app.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { openStream, type SseConnection, type SseEvent } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';

let server: TestServer;
let counter = 0;
const fresh = (name: string) => `${name}-${++counter}`;

async function send(from: string, to: string, message: string): Promise<Message> {
  const res = await postJson(server.url, '/v1/messages', { fromUser: from, toUser: to, message });
  assert.equal(res.status, 201, res.text);
  return res.json<Message>();
}

const messageIds = (events: SseEvent[]) => events.filter((e) => e.event === 'message').map((e) => e.id!);

/** Waits until `user` has a live subscription on the hub (a stream has subscribed). */
function subscribed(user: string, n = 1): Promise<void> {
  return until(() => server.hub.listenersOf(user) >= n, `${n} subscription(s) for ${user}`);
}

before(async () => {
  server = await startTestServer({ POSTBOX_HEARTBEAT_SECONDS: '1' });
});
after(() => server.stop());

describe('stream', () => {
  it('delivers new messages live as message events with id and Message data', async () => {
    const me = fresh('me');
    await send('x', me, 'old news');
    const s = await openStream(server.url, `/v1/users/${me}/stream`);
    try {
      assert.equal(s.status, 200);
      assert.match(String(s.headers['content-type']), /^text\/event-stream/);
      await subscribed(me);
      const sent = [await send('x', me, 'one'), await send('y', me, 'two\nlines')];
      const events = await s.waitFor(2, 'message');
      assert.deepEqual(events.map((e) => e.id), sent.map((m) => m.id), 'from now on: old news is not replayed');
      assert.deepEqual(events.map((e) => JSON.parse(e.data) as Message), sent);
      assert.match(s.raw(), /^retry: \d+\n\n/);
    } finally {
      s.close();
    }
  });

  it('resumes after ?after=, replaying what was missed, then goes live', async () => {
    const me = fresh('me');
    const sent: Message[] = [];
    for (let i = 0; i < 5; i++) sent.push(await send('x', me, `m${i}`));
    const s = await openStream(server.url, `/v1/users/${me}/stream?after=${sent[1]!.id}`);
    try {
      await s.waitFor(3, 'message');
      await subscribed(me);
      sent.push(await send('x', me, 'live'));
      const events = await s.waitFor(4, 'message');
      assert.deepEqual(events.map((e) => e.id), sent.slice(2).map((m) => m.id));
    } finally {
      s.close();
    }
  });

  it('replays everything from after=0, and Last-Event-ID wins over after=', async () => {
    const me = fresh('me');
    const sent: Message[] = [];
    for (let i = 0; i < 4; i++) sent.push(await send('x', me, `m${i}`));
    const all = await openStream(server.url, `/v1/users/${me}/stream?after=0`);
    const resumed = await openStream(server.url, `/v1/users/${me}/stream?after=0`, { 'last-event-id': sent[2]!.id });
    try {
      assert.deepEqual(messageIds(await all.waitFor(4, 'message')), sent.map((m) => m.id));
      assert.deepEqual(messageIds(await resumed.waitFor(1, 'message')), [sent[3]!.id]);
    } finally {
      all.close();
      resumed.close();
    }
  });

  it('has no gap and no duplicate when subscribers connect and reconnect during a burst', async () => {
    const me = fresh('me');
    const total = 600;
    const writers = 12;
    const acknowledged: string[] = [];
    let next = 0;
    const burst = Promise.all(Array.from({ length: writers }, async () => {
      while (next < total) {
        const i = next++;
        acknowledged.push((await send(`w${i % writers}`, me, `burst ${i}`)).id);
      }
    }));
    // Subscribers join at different moments: each reads a page, then streams after its end.
    const joins = Array.from({ length: 6 }, async (_, k) => {
      await until(() => acknowledged.length >= k * 80, `${k * 80} sends acknowledged`, 60_000);
      const page = (await request(server.url, `/v1/users/${me}/messages?before=latest&limit=1`)).json<MessagePage>();
      const cursor = page.messages[0]?.id ?? '0';
      const s = await openStream(server.url, `/v1/users/${me}/stream?after=${cursor}`);
      return { s, cursor };
    });
    // One more subscriber drops mid-burst and resumes with Last-Event-ID.
    const hopper = (async () => {
      const first = await openStream(server.url, `/v1/users/${me}/stream?after=0`);
      const got = messageIds(await first.waitFor(150, 'message'));
      first.close();
      const second = await openStream(server.url, `/v1/users/${me}/stream`, { 'last-event-id': got[got.length - 1]! });
      return { got, second };
    })();
    await burst;
    const expectAll = [...acknowledged].sort((a, b) => Number(a) - Number(b));
    for (const { s, cursor } of await Promise.all(joins)) {
      const want = expectAll.filter((id) => Number(id) > Number(cursor));
      const got = messageIds(await s.waitFor(want.length, 'message'));
      s.close();
      assert.deepEqual(got, want, `subscriber after ${cursor}: every message once, in order`);
    }
    const { got, second } = await hopper;
    const rest = messageIds(await second.waitFor(total - got.length, 'message'));
    second.close();
    assert.deepEqual([...got, ...rest], expectAll, 'the reconnecting subscriber saw everything once');
  });

  it('sends comment heartbeats on an idle stream', async () => {
    const s = await openStream(server.url, `/v1/users/${fresh('idle')}/stream`);
    try {
      await until(() => s.comments.length >= 2, 'two heartbeats');
      assert.ok(s.comments.filter((c) => c === 'keep-alive').length >= 2, s.raw());
    } finally {
      s.close();
    }
  });

  it('tells the stream when a message to it is deleted or marked read elsewhere', async () => {
    const me = fresh('me');
    const s = await openStream(server.url, `/v1/users/${me}/stream`);
    try {
      await subscribed(me);
      const m = await send('x', me, 'to be read, then deleted');
      await s.waitFor(1, 'message');
      await postJson(server.url, `/v1/users/${me}/read`, { upTo: m.id });
      await request(server.url, `/v1/messages/${m.id}`, { method: 'DELETE' });
      const [read] = await s.waitFor(1, 'read');
      const readData = JSON.parse(read!.data) as { ids: string[]; readAt: string };
      assert.deepEqual(readData.ids, [m.id]);
      assert.ok(Date.parse(readData.readAt) > 0);
      const [deleted] = await s.waitFor(1, 'deleted');
      assert.deepEqual(JSON.parse(deleted!.data), { id: m.id });
      assert.equal(deleted!.id, undefined, 'only message events move the resume cursor');
    } finally {
      s.close();
    }
  });

  it('re-reads storage after a resync, delivering what the change feed missed', async () => {
    const me = fresh('me');
    const s = await openStream(server.url, `/v1/users/${me}/stream`);
    const other = openSqliteStorage({ path: join(server.dir, 'postbox.db'), durability: 'fsync' });
    try {
      await subscribed(me);
      // Written through another handle (as another instance would): this hub never hears it.
      const missed = await other.send({ fromUser: 'elsewhere', toUser: me, message: 'unheard' });
      assert.equal(missed.kind, 'stored');
      server.hub.publish([{ type: 'resync' }]);
      const [event] = await s.waitFor(1, 'message');
      assert.equal((JSON.parse(event!.data) as Message).message, 'unheard');
      const live = await send('x', me, 'after the resync');
      const events = await s.waitFor(2, 'message');
      assert.equal(events[1]!.id, live.id);
    } finally {
      s.close();
      await other.close();
    }
  });

  it('rejects a bad cursor and another user\'s bad id with 400', async () => {
    for (const [path, headers] of [
      ['/v1/users/a/stream?after=x', {}],
      ['/v1/users/a/stream', { 'last-event-id': 'nope' }],
      ['/v1/users/a%2Fb/stream', {}],
    ] as [string, Record<string, string>][]) {
      const res = await request(server.url, path, { headers });
      assert.equal(res.status, 400, path);
      assert.match(String(res.headers['content-type']), /problem\+json/);
    }
  });
});

describe('stream with sent=true', () => {
  /** The message and sent events of a stream, as `event id`, once `n` have arrived. */
  async function mail(s: SseConnection, n: number): Promise<string[]> {
    const of = () => s.events.filter((e) => e.event === 'message' || e.event === 'sent');
    await until(() => of().length >= n, `${n} message and sent events`, 60_000);
    return of().map((e) => `${e.event} ${e.id}`);
  }

  it('carries what the user sends as sent events; a message to oneself is one message event; the default stream is unchanged', async () => {
    const me = fresh('me');
    await send(me, 'x', 'before connecting');
    const withSent = await openStream(server.url, `/v1/users/${me}/stream?sent=true`);
    const plain = await openStream(server.url, `/v1/users/${me}/stream`);
    try {
      assert.equal(withSent.status, 200);
      await subscribed(me, 2);
      const out = await send(me, 'x', 'from another tab');
      const into = await send('x', me, 'a reply');
      const self = await send(me, me, 'note to self');
      assert.deepEqual(await mail(withSent, 3), [`sent ${out.id}`, `message ${into.id}`, `message ${self.id}`]);
      const [sentEvent] = withSent.events.filter((e) => e.event === 'sent');
      assert.equal(sentEvent!.data, JSON.stringify(out), 'the same Message JSON as a message event');
      // The sender's delete reaches its own stream; the plain stream hears nothing of it.
      await request(server.url, `/v1/messages/${out.id}`, { method: 'DELETE' });
      const [deleted] = await withSent.waitFor(1, 'deleted');
      assert.deepEqual(JSON.parse(deleted!.data), { id: out.id });
      const marker = await send('x', me, 'marker');
      await plain.waitFor(3, 'message');
      assert.deepEqual(plain.events.map((e) => `${e.event} ${e.id}`), [`message ${into.id}`, `message ${self.id}`, `message ${marker.id}`]);
      assert.doesNotMatch(plain.raw(), /event: (sent|deleted)/);
    } finally {
      withSent.close();
      plain.close();
    }
  });

  it('resumes after Last-Event-ID or after=, replaying received and sent messages in id order, then goes live', async () => {
    const me = fresh('me');
    const order: string[] = [];
    for (let i = 0; i < 3; i++) {
      order.push(`sent ${(await send(me, 'peer', `out ${i}`)).id}`);
      order.push(`message ${(await send('peer', me, `in ${i}`)).id}`);
      await send('peer', 'someone-else', 'not mine');
    }
    const cursor = order[1]!.split(' ')[1]!;
    const resumed = await openStream(server.url, `/v1/users/${me}/stream?sent=true&after=0`, { 'last-event-id': cursor });
    const all = await openStream(server.url, `/v1/users/${me}/stream?after=0&sent=true`);
    try {
      assert.deepEqual(await mail(resumed, 4), order.slice(2));
      assert.deepEqual(await mail(all, 6), order);
      await subscribed(me, 2);
      order.push(`sent ${(await send(me, 'peer', 'live')).id}`);
      assert.deepEqual(await mail(resumed, 5), order.slice(2));
      assert.deepEqual(await mail(all, 7), order);
    } finally {
      resumed.close();
      all.close();
    }
  });

  it('has no gap and no duplicate of sent and received messages when subscribers join and reconnect during a burst', async () => {
    const me = fresh('me');
    const total = 400;
    const writers = 8;
    const acknowledged: string[] = [];
    let next = 0;
    // Half the writers send to `me`, half send as `me`; some of each to oneself.
    const burst = Promise.all(Array.from({ length: writers }, async (_, w) => {
      while (next < total) {
        const i = next++;
        const m = w % 2 === 0
          ? await send(`w${w}`, me, `in ${i}`)
          : await send(me, i % 10 === 1 ? me : `w${w}`, `out ${i}`);
        acknowledged.push(m.id);
      }
    }));
    const joins = Array.from({ length: 4 }, async (_, k) => {
      await until(() => acknowledged.length >= k * 90, `${k * 90} sends acknowledged`, 60_000);
      const cursor = [...acknowledged].sort((a, b) => Number(a) - Number(b))[Math.max(0, acknowledged.length - 5)] ?? '0';
      return { s: await openStream(server.url, `/v1/users/${me}/stream?sent=true&after=${cursor}`), cursor };
    });
    const hopper = (async () => {
      const first = await openStream(server.url, `/v1/users/${me}/stream?after=0&sent=true`);
      const got = await mail(first, 120);
      first.close();
      const last = got[got.length - 1]!.split(' ')[1]!;
      return { got, second: await openStream(server.url, `/v1/users/${me}/stream?sent=true`, { 'last-event-id': last }) };
    })();
    await burst;
    const expectAll = [...acknowledged].sort((a, b) => Number(a) - Number(b));
    const ids = (events: string[]) => events.map((e) => e.split(' ')[1]!);
    for (const { s, cursor } of await Promise.all(joins)) {
      const want = expectAll.filter((id) => Number(id) > Number(cursor));
      const got = ids(await mail(s, want.length));
      s.close();
      assert.deepEqual(got, want, `subscriber after ${cursor}: every message once, in order`);
    }
    const { got, second } = await hopper;
    const rest = await mail(second, total - got.length);
    second.close();
    assert.deepEqual(ids([...got, ...rest]), expectAll, 'the reconnecting subscriber saw everything once');
  });

  it('rejects a sent= that is not a boolean with 400', async () => {
    const res = await request(server.url, `/v1/users/${fresh('me')}/stream?sent=maybe`);
    assert.equal(res.status, 400);
    assert.match(String(res.headers['content-type']), /problem\+json/);
  });
});

describe('stream limits and lifecycle', () => {
  it('refuses streams past the per-user limit (429) and the total (503)', async () => {
    const limited = await startTestServer({ POSTBOX_STREAMS_PER_USER: '2', POSTBOX_STREAMS_MAX: '3' });
    const open: Awaited<ReturnType<typeof openStream>>[] = [];
    try {
      open.push(await openStream(limited.url, '/v1/users/u/stream'), await openStream(limited.url, '/v1/users/u/stream'));
      const third = await request(limited.url, '/v1/users/u/stream');
      assert.equal(third.status, 429);
      assert.equal(third.headers['retry-after'], '5');
      assert.equal(third.json<Problem>().type, '/problems/too_many_streams');
      open.push(await openStream(limited.url, '/v1/users/v/stream'));
      const fourth = await request(limited.url, '/v1/users/w/stream');
      assert.equal(fourth.status, 503);
      assert.equal(fourth.json<Problem>().type, '/problems/server_busy');
      const metrics = (await request(limited.url, '/metrics')).text;
      assert.match(metrics, /^postbox_streams_open 3$/m);
      open.pop()!.close();
      await until(async () => /^postbox_streams_open 2$/m.test((await request(limited.url, '/metrics')).text), 'the closed stream to be freed', 10_000, 20);
      open.push(await openStream(limited.url, '/v1/users/w/stream'));
      assert.equal(open.at(-1)!.status, 200, 'a freed slot is usable again');
    } finally {
      for (const s of open) s.close();
      await limited.stop();
    }
  });

  it('ends a stream with an end event when its token is revoked or its user removed', async () => {
    const admin = 'admin-token-for-tests-0123456789';
    const secure = await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_ADMIN_TOKEN: admin });
    const asAdmin = { authorization: `Bearer ${admin}` };
    try {
      const create = async (id: string) => (await postJson(secure.url, '/v1/users', { id }, asAdmin)).json<{ token: string }>().token;
      const [ann, bob] = [await create('ann'), await create('bob')];
      const annStream = await openStream(secure.url, '/v1/users/ann/stream', { authorization: `Bearer ${ann}` });
      const bobStream = await openStream(secure.url, '/v1/users/bob/stream', { authorization: `Bearer ${bob}` });
      assert.equal(annStream.status, 200);
      await until(() => secure.hub.listenersOf('ann') > 0 && secure.hub.listenersOf('bob') > 0, 'both streams to subscribe');

      assert.equal((await request(secure.url, '/v1/users/ann/tokens', { method: 'DELETE', headers: asAdmin })).status, 204);
      const [annEnd] = await annStream.waitFor(1, 'end');
      assert.deepEqual(JSON.parse(annEnd!.data), { reason: 'the token was revoked' });
      await annStream.ended;

      assert.equal((await request(secure.url, '/v1/users/bob', { method: 'DELETE', headers: asAdmin })).status, 204);
      const [bobEnd] = await bobStream.waitFor(1, 'end');
      assert.deepEqual(JSON.parse(bobEnd!.data), { reason: 'the user was removed' });
      await bobStream.ended;
      const again = await request(secure.url, '/v1/users/bob/stream', { headers: { authorization: `Bearer ${bob}` } });
      assert.equal(again.status, 401, 'the removed user\'s token no longer opens a stream');
    } finally {
      await secure.stop();
    }
  });

  it('answers HEAD with a stream\'s headers and keeps no stream open behind it', async () => {
    const app = await buildTestApp();
    try {
      const head = await app.request('/v1/users/u/stream', { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.match(String(head.headers['content-type']), /^text\/event-stream/);
      assert.equal(head.text, '');
      await until(async () => /^postbox_streams_open 0$/m.test((await app.request('/metrics')).text), 'no open stream', 10_000, 20);
      assert.equal(app.hub.listenersOf('u'), 0);
    } finally {
      await app.stop();
    }
  });

  it('ends open streams at shutdown, so a graceful close does not hang', async () => {
    const short = await startTestServer();
    const s = await openStream(short.url, '/v1/users/u/stream');
    const polling = request(short.url, '/v1/users/u/messages?wait=60');
    await until(() => short.hub.listeners >= 2, 'the stream and the long-poll to subscribe');
    const started = Date.now();
    await short.stop();
    await s.ended;
    const poll = await polling;
    assert.equal(poll.status, 200, 'the long-poll answered instead of being cut');
    assert.ok(Date.now() - started < 10_000);
  });
});
