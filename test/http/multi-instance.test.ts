/**
 * Two Postbox servers on one PostgreSQL schema, over real HTTP: to a client they are one
 * server. Each server has its own app, pool and change feed, as two processes would.
 *
 * - A burst written through both at once, read meanwhile by a pager hopping between them and
 *   by streams that resume mid-burst or move from one server to the other: every
 *   acknowledged message is seen once, in id order, by each.
 * - Messages, reads and deletions made through one server reach streams open on the other.
 * - One Idempotency-Key raced through both stores one message, and both answer it.
 *
 * Without a reachable PostgreSQL the suite is skipped, saying why (a failure under CI=true).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Message, MessagePage, Problem } from '../../src/protocol/types.js';
import { postJson, request, type RawResponse } from '../helpers/http.js';
import { createSchema, describeWithPostgres } from '../helpers/pg.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { openStream, type SseConnection, type SseEvent } from '../helpers/sse.js';
import { Tally, byId, until } from '../helpers/wait.js';

let counter = 0;
const fresh = (name: string) => `${name}-${++counter}-${process.pid}`;

/** Two servers on a schema made for the test, stopped and dropped after it, whatever happens. */
async function withPair(fn: (a: TestServer, b: TestServer) => Promise<void>): Promise<void> {
  const schema = await createSchema();
  const env = {
    DATABASE_URL: schema.url(),
    // Small pools: other suites share the server's max_connections. No rate limit: every
    // request here comes from one address, far faster than a person would send.
    POSTBOX_PG_POOL_SIZE: '4',
    POSTBOX_RATE_LIMIT: '0',
    LOG_LEVEL: 'warn',
  };
  // Started together, so that both migrate the empty schema at once, as a fleet would.
  const started = await Promise.allSettled([startTestServer(env), startTestServer(env)]);
  const servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  try {
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    await fn(servers[0]!, servers[1]!);
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await schema.drop();
  }
}

/** Sends one message (by the v1 route, or the seed's) and answers its id; anything but success fails the test. */
async function send(server: TestServer, body: { fromUser: string; toUser: string; message: string }, legacy = false): Promise<string> {
  if (legacy) {
    const res = await postJson(server.url, '/post-message', body);
    assert.equal(res.status, 202, res.text);
    const m = /^\/v1\/messages\/(\d+)$/.exec(String(res.headers.location));
    assert.ok(m, `a Location naming the message, got ${String(res.headers.location)}`);
    return m[1]!;
  }
  const res = await postJson(server.url, '/v1/messages', body);
  assert.equal(res.status, 201, res.text);
  return res.json<Message>().id;
}

const messageIds = (events: readonly SseEvent[]) => events.filter((e) => e.event === 'message').map((e) => e.id!);

/** Waits until `server` holds `n` live subscriptions for `user` (streams past their first read). */
function subscribed(server: TestServer, user: string, n = 1): Promise<void> {
  return until(() => server.hub.listenersOf(user) >= n, `${n} subscription(s) for ${user}`);
}

/**
 * Sends a marker message after everything else and waits until every stream has it: events
 * arrive in id order, so once a stream shows the marker it has shown all it ever will of what
 * came before, and a repeat arriving late cannot slip past the assertions.
 */
async function settle(via: TestServer, user: string, streams: readonly SseConnection[]): Promise<string> {
  const marker = await send(via, { fromUser: 'marker', toUser: user, message: 'the end' });
  await Promise.all(streams.map((s) => until(() => messageIds(s.events).includes(marker), `the marker on a stream`, 60_000)));
  return marker;
}

await describeWithPostgres('two instances on one PostgreSQL, over HTTP', () => {
  it('pages and streams every acknowledged message once, in id order, while both take a concurrent burst', () => withPair(async (a, b) => {
    const user = fresh('burst');
    const clientsPerInstance = 4;
    const perClient = 60;
    const total = 2 * clientsPerInstance * perClient;
    const acked = new Tally();

    // The hopper: a stream on A from the very start, which drops mid-burst and resumes on B.
    const hopFirst = await openStream(a.url, `/v1/users/${user}/stream?after=0`);
    assert.equal(hopFirst.status, 200);
    await subscribed(a, user);

    let writing = true;
    const writers = Promise.all([a, b].flatMap((server, s) => Array.from({ length: clientsPerInstance }, async (_, c) => {
      for (let i = 0; i < perClient; i++) {
        // One client per instance speaks the seed's dialect, so both send paths are in the race.
        acked.add(await send(server, { fromUser: `w${s}${c}`, toUser: user, message: `${s}:${c}:${i}` }, c === 0));
      }
    }))).finally(() => (writing = false));

    // (a) A reader paging forward, its requests alternating between A and B.
    const reading = (async () => {
      const seen: string[] = [];
      let cursor = '0';
      let pagesDuringBurst = 0;
      for (let turn = 0; ; turn++) {
        // Read before the request: if writing is over now, this page sees every commit.
        const finished = !writing;
        const server = turn % 2 === 0 ? a : b;
        const res = await request(server.url, `/v1/users/${user}/messages?after=${cursor}&limit=10`);
        assert.equal(res.status, 200, res.text);
        const page = res.json<MessagePage>();
        for (const m of page.messages) seen.push(m.id);
        if (page.messages.length > 0) cursor = page.messages[page.messages.length - 1]!.id;
        if (!finished && page.messages.length > 0) pagesDuringBurst++;
        if (finished && page.next === null) return { seen, pagesDuringBurst };
      }
    })();

    // (b) Streams resuming from cursors read while the burst is under way, at six points of
    // it: each cursor read on one instance, its stream opened on the other.
    const resuming = Promise.all(Array.from({ length: 6 }, async (_, k) => {
      const [readOn, streamOn] = k % 2 === 0 ? [a, b] : [b, a];
      await acked.reached(Math.floor(((k + 1) * total) / 8));
      const latest = await request(readOn.url, `/v1/users/${user}/messages?before=latest&limit=1`);
      const cursor = latest.json<MessagePage>().messages[0]!.id;
      const midBurst = writing;
      const stream = await openStream(streamOn.url, `/v1/users/${user}/stream?after=${cursor}`);
      assert.equal(stream.status, 200);
      return { cursor, stream, midBurst, on: streamOn === a ? 'A' : 'B' };
    }));

    // (b) The hopper drops once it has a quarter of the burst, and reconnects to B with its Last-Event-ID.
    const hopping = (async () => {
      await hopFirst.waitFor(total / 4, 'message', 60_000);
      hopFirst.close();
      const got = messageIds(hopFirst.events);
      const midBurst = writing;
      const second = await openStream(b.url, `/v1/users/${user}/stream`, { 'last-event-id': got[got.length - 1]! });
      assert.equal(second.status, 200);
      return { got, second, midBurst };
    })();

    // If the burst fails, its error is the one to report, not these tasks' loss of their streams
    // when the servers stop: each is still awaited (and its error seen) below.
    for (const task of [reading, resuming, hopping]) task.catch(() => undefined);
    await writers;
    const expected = [...acked.ids].sort(byId);
    assert.equal(expected.length, total);
    assert.equal(new Set(expected).size, total, 'every send got an id of its own');

    const { seen, pagesDuringBurst } = await reading;
    assert.ok(pagesDuringBurst >= 2, `the reader paged while the burst was under way (${pagesDuringBurst} pages)`);
    assert.deepEqual(seen, expected, 'the pager saw every acknowledged message once, in id order');

    const resumed = await resuming;
    const hop = await hopping;
    assert.ok(resumed.every((r) => r.midBurst), 'every resume cursor was taken mid-burst');
    assert.ok(hop.midBurst, 'the hopper dropped mid-burst');
    const marker = await settle(a, user, [...resumed.map((r) => r.stream), hop.second]);
    for (const r of resumed) r.stream.close();
    hop.second.close();

    for (const { cursor, stream, on } of resumed) {
      assert.deepEqual(messageIds(stream.events), [...expected.filter((id) => byId(id, cursor) > 0), marker],
        `the stream resumed on ${on} after ${cursor}: everything after it once, in id order`);
      for (const e of stream.events.filter((ev) => ev.event === 'message')) {
        const m = JSON.parse(e.data) as Message;
        assert.equal(m.id, e.id, 'the event id is the message id');
        assert.equal(m.toUser, user);
      }
    }
    assert.ok(hop.got.length >= total / 4 && hop.got.length < total);
    assert.deepEqual([...hop.got, ...messageIds(hop.second.events)], [...expected, marker],
      'the stream that moved from A to B saw everything once, in id order');
  }));

  it('delivers messages, reads and deletions made through either instance to streams open on the other', () => withPair(async (a, b) => {
    const user = fresh('live');
    const onA = await openStream(a.url, `/v1/users/${user}/stream`);
    const onB = await openStream(b.url, `/v1/users/${user}/stream`);
    try {
      await subscribed(a, user);
      await subscribed(b, user);
      // Each step waits for its answer, so each commits after the one before: every stream,
      // whichever instance it is on, must show them in this order.
      const m1 = (await postJson(a.url, '/v1/messages', { fromUser: 'x', toUser: user, message: 'through A' })).json<Message>();
      const m2 = (await postJson(b.url, '/v1/messages', { fromUser: 'y', toUser: user, message: 'through B' })).json<Message>();
      const read = async (server: TestServer, id: string) => {
        const res = await postJson(server.url, `/v1/users/${user}/read`, { ids: [id] });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.json<{ marked: number }>().marked, 1);
      };
      const remove = async (server: TestServer, id: string) => {
        assert.equal((await request(server.url, `/v1/messages/${id}`, { method: 'DELETE' })).status, 204);
      };
      await read(a, m1.id);
      await read(b, m2.id);
      await remove(b, m1.id);
      await remove(a, m2.id);

      const shown: { event: string; id?: string; data: unknown }[][] = [];
      for (const s of [onA, onB]) {
        const events = await s.waitFor(6);
        shown.push(events.map((e) => ({ event: e.event, ...(e.id === undefined ? {} : { id: e.id }), data: JSON.parse(e.data) as unknown })));
      }
      const [fromA, fromB] = shown as [typeof shown[0], typeof shown[0]];
      const readAt = (i: number) => (fromA[i]?.data as { readAt?: string } | undefined)?.readAt;
      assert.ok(Date.parse(readAt(2) ?? '') > 0 && Date.parse(readAt(3) ?? '') > 0, 'read events carry the time set');
      assert.deepEqual(fromA, [
        { event: 'message', id: m1.id, data: m1 },
        { event: 'message', id: m2.id, data: m2 },
        { event: 'read', data: { ids: [m1.id], readAt: readAt(2) } },
        { event: 'read', data: { ids: [m2.id], readAt: readAt(3) } },
        { event: 'deleted', data: { id: m1.id } },
        { event: 'deleted', data: { id: m2.id } },
      ], 'the stream on A heard its own and B\'s changes, in commit order');
      assert.deepEqual(fromB, fromA, 'the stream on B heard exactly the same');
    } finally {
      onA.close();
      onB.close();
    }
  }));

  it('delivers what a user sends through either instance, and its deletion, to the user\'s sent=true streams on the other', () => withPair(async (a, b) => {
    const user = fresh('sender');
    const onA = await openStream(a.url, `/v1/users/${user}/stream?sent=true`);
    const onB = await openStream(b.url, `/v1/users/${user}/stream?sent=true`);
    try {
      await subscribed(a, user);
      await subscribed(b, user);
      const m1 = (await postJson(a.url, '/v1/messages', { fromUser: user, toUser: 'x', message: 'sent through A' })).json<Message>();
      const m2 = (await postJson(b.url, '/v1/messages', { fromUser: user, toUser: 'y', message: 'sent through B' })).json<Message>();
      const m3 = (await postJson(a.url, '/v1/messages', { fromUser: 'x', toUser: user, message: 'a reply' })).json<Message>();
      assert.equal((await request(b.url, `/v1/messages/${m1.id}`, { method: 'DELETE' })).status, 204);
      const expected = [
        { event: 'sent', id: m1.id, data: m1 },
        { event: 'sent', id: m2.id, data: m2 },
        { event: 'message', id: m3.id, data: m3 },
        { event: 'deleted', data: { id: m1.id } },
      ];
      for (const s of [onA, onB]) {
        const events = await s.waitFor(4);
        assert.deepEqual(events.map((e) => ({ event: e.event, ...(e.id === undefined ? {} : { id: e.id }), data: JSON.parse(e.data) as unknown })), expected);
      }
    } finally {
      onA.close();
      onB.close();
    }
  }));

  it('stores one message for one Idempotency-Key sent concurrently to both, and both answer the same Message', () => withPair(async (a, b) => {
    const user = fresh('idem');
    const key = `race-${user}`;
    const body = { fromUser: 'idem-sender', toUser: user, message: 'exactly once' };
    const answers: RawResponse[] = await Promise.all(Array.from({ length: 12 }, (_, i) =>
      postJson((i % 2 === 0 ? a : b).url, '/v1/messages', body, { 'idempotency-key': key })));
    for (const res of answers) assert.equal(res.status, 201, res.text);
    const first = answers[0]!.json<Message>();
    for (const res of answers) {
      assert.deepEqual(res.json<Message>(), first, 'every answer is the one stored Message');
      assert.equal(res.headers.location, `/v1/messages/${first.id}`);
    }
    assert.equal(answers.filter((r) => r.headers['idempotent-replayed'] !== 'true').length, 1,
      'one answer stored it; the other eleven say they replayed it');

    for (const server of [a, b]) {
      const page = (await request(server.url, `/v1/users/${user}/messages`)).json<MessagePage>();
      assert.deepEqual(page.messages, [first], 'one message stored, the same through either instance');
      assert.deepEqual((await request(server.url, `/v1/messages/${first.id}`)).json<Message>(), first);
    }
    // The key is the store's, not an instance's: a different text under it is refused by both.
    for (const server of [a, b]) {
      const res = await postJson(server.url, '/v1/messages', { ...body, message: 'something else' }, { 'idempotency-key': key });
      assert.equal(res.status, 422, res.text);
      assert.equal(res.json<Problem>().type, '/problems/idempotency_mismatch');
    }
  }));
});
