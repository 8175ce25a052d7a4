/**
 * The v1 message API through the app (inject): send, read, delete, paging, filters, the sent
 * box, conversations, read state, idempotent sends and long-poll (over a socket where the
 * client going away is the point).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ConversationList, Message, MessagePage, Problem, ReadResult } from '../../src/protocol/types.js';
import { buildTestApp, type TestApp } from '../helpers/app.js';
import { until } from '../helpers/wait.js';

let server: TestApp;
let counter = 0;
/** A user id no other test uses: each test makes its own data. */
const fresh = (name: string) => `${name}-${++counter}`;

async function send(from: string, to: string, message: string, headers: Record<string, string> = {}): Promise<Message> {
  const res = await server.postJson('/v1/messages', { fromUser: from, toUser: to, message }, headers);
  assert.equal(res.status, 201, res.text);
  return res.json<Message>();
}

async function get<T>(path: string): Promise<T> {
  const res = await server.request(path);
  assert.equal(res.status, 200, `${path}: ${res.text}`);
  return res.json<T>();
}

const ids = (page: { messages: Message[] }) => page.messages.map((m) => m.id);

before(async () => {
  server = await buildTestApp();
});
after(() => server.stop());

describe('v1 messages', () => {
  it('sends with 201, Location and the Message; reads it back by id', async () => {
    const res = await server.postJson('/v1/messages', { fromUser: 'Val', toUser: 7, message: 'hi' });
    assert.equal(res.status, 201);
    const m = res.json<Message>();
    assert.equal(res.headers.location, `/v1/messages/${m.id}`);
    assert.deepEqual(Object.keys(m), ['id', 'fromUser', 'toUser', 'message', 'sentAt', 'readAt']);
    assert.equal(m.toUser, '7');
    assert.deepEqual(await get<Message>(`/v1/messages/${m.id}`), m);
  });

  it('answers 404 for an unknown or malformed message id', async () => {
    for (const id of ['999999999', 'abc', '0', '01']) {
      const res = await server.request(`/v1/messages/${id}`);
      assert.equal(res.status, 404, id);
      assert.equal(res.json<Problem>().type, '/problems/not_found');
    }
  });

  it('deletes a message from every view, the legacy inbox included', async () => {
    const [a, b] = [fresh('a'), fresh('b')];
    const keep = await send(a, b, 'keep');
    const gone = await send(a, b, 'gone');
    const del = await server.request(`/v1/messages/${gone.id}`, { method: 'DELETE' });
    assert.equal(del.status, 204);
    assert.equal(del.text, '');
    assert.equal((await server.request(`/v1/messages/${gone.id}`)).status, 404);
    assert.deepEqual((await get<Message[]>(`/get-messages/${b}`)).map((m) => m.id), [keep.id]);
    assert.deepEqual(ids(await get<MessagePage>(`/v1/users/${b}/messages`)), [keep.id]);
    assert.deepEqual(ids(await get<MessagePage>(`/v1/users/${a}/sent`)), [keep.id]);
    assert.deepEqual(ids(await get<MessagePage>(`/v1/users/${a}/conversations/${b}`)), [keep.id]);
    const list = await get<ConversationList>(`/v1/users/${b}/conversations`);
    assert.equal(list.conversations[0]!.lastMessage.id, keep.id);
    assert.equal((await server.request(`/v1/messages/${gone.id}`, { method: 'DELETE' })).status, 404);
  });
});

describe('paging', () => {
  it('pages forward from the oldest with a default limit of 50, next null at the end', async () => {
    const [a, b] = [fresh('a'), fresh('b')];
    const sent: string[] = [];
    for (let i = 0; i < 60; i++) sent.push((await send(a, b, `m${i}`)).id);
    const p1 = await get<MessagePage>(`/v1/users/${b}/messages`);
    assert.deepEqual(ids(p1), sent.slice(0, 50));
    assert.equal(p1.next, sent[49]);
    const p2 = await get<MessagePage>(`/v1/users/${b}/messages?after=${p1.next}`);
    assert.deepEqual(ids(p2), sent.slice(50));
    assert.equal(p2.next, null);
    const p3 = await get<MessagePage>(`/v1/users/${b}/messages?after=${sent[59]}&limit=500`);
    assert.deepEqual(p3, { messages: [], next: null });
  });

  it('pages backward from latest, newest page first, each page oldest first', async () => {
    const [a, b] = [fresh('a'), fresh('b')];
    const sent: string[] = [];
    for (let i = 0; i < 7; i++) sent.push((await send(a, b, `m${i}`)).id);
    const p1 = await get<MessagePage>(`/v1/users/${b}/messages?before=latest&limit=3`);
    assert.deepEqual(ids(p1), sent.slice(4));
    assert.equal(p1.next, sent[4]);
    const p2 = await get<MessagePage>(`/v1/users/${b}/messages?before=${p1.next}&limit=3`);
    assert.deepEqual(ids(p2), sent.slice(1, 4));
    const p3 = await get<MessagePage>(`/v1/users/${b}/messages?before=${p2.next}&limit=3`);
    assert.deepEqual(ids(p3), sent.slice(0, 1));
    assert.equal(p3.next, null);
  });

  it('never skips or repeats a message while several writers post concurrently', async () => {
    const reader = fresh('reader');
    const writers = 6;
    const each = 40;
    const acknowledged: string[] = [];
    let finished = false;
    const writing = Promise.all(Array.from({ length: writers }, async (_, w) => {
      for (let i = 0; i < each; i++) acknowledged.push((await send(`writer${w}`, reader, `${w}.${i}`)).id);
    })).then(() => (finished = true));
    const seen: string[] = [];
    let cursor: string | undefined;
    for (;;) {
      // inject answers a cached page without leaving the microtask queue: give the event
      // loop a turn, or the writers' commits (and every timer) would wait on this loop forever.
      await new Promise((r) => setImmediate(r));
      const done = finished;
      const page = await get<MessagePage>(`/v1/users/${reader}/messages?limit=9${cursor ? `&after=${cursor}` : ''}`);
      seen.push(...ids(page));
      if (page.messages.length > 0) cursor = page.messages[page.messages.length - 1]!.id;
      if (done && page.next === null) break;
    }
    await writing;
    assert.equal(new Set(seen).size, seen.length, 'nothing repeated');
    assert.deepEqual([...seen].sort(), [...acknowledged].sort(), 'nothing skipped');
    assert.equal(seen.length, writers * each);
  });
});

describe('filters, sent box and conversations', () => {
  it('filters the inbox by sender and by unread', async () => {
    const me = fresh('me');
    const [x, y] = [fresh('x'), fresh('y')];
    const x1 = await send(x, me, 'x1');
    const y1 = await send(y, me, 'y1');
    const x2 = await send(x, me, 'x2');
    assert.deepEqual(ids(await get<MessagePage>(`/v1/users/${me}/messages?from=${x}`)), [x1.id, x2.id]);
    await server.postJson(`/v1/users/${me}/read`, { ids: [x1.id] });
    assert.deepEqual(ids(await get<MessagePage>(`/v1/users/${me}/messages?unread=true`)), [y1.id, x2.id]);
    assert.deepEqual(ids(await get<MessagePage>(`/v1/users/${me}/messages?unread=true&from=${x}`)), [x2.id]);
  });

  it('lists the sent box', async () => {
    const me = fresh('me');
    const s1 = await send(me, fresh('p'), 'one');
    await send(fresh('q'), me, 'received, not sent');
    const s2 = await send(me, fresh('r'), 'two');
    const page = await get<MessagePage>(`/v1/users/${me}/sent`);
    assert.deepEqual(ids(page), [s1.id, s2.id]);
  });

  it('lists conversations most recent first, and shows one both ways in order', async () => {
    const me = fresh('me');
    const [ann, bob] = [fresh('ann'), fresh('bob')];
    const m1 = await send(ann, me, 'hi');
    const m2 = await send(me, ann, 'hello ann');
    const m3 = await send(bob, me, 'yo');
    const m4 = await send(ann, me, 'how are you');
    const list = await get<ConversationList>(`/v1/users/${me}/conversations`);
    assert.deepEqual(list.conversations.map((c) => [c.peer, c.lastMessage.id, c.unread]), [[ann, m4.id, 2], [bob, m3.id, 1]]);
    assert.equal(list.next, null);
    const firstOnly = await get<ConversationList>(`/v1/users/${me}/conversations?limit=1`);
    assert.equal(firstOnly.next, m4.id);
    const rest = await get<ConversationList>(`/v1/users/${me}/conversations?before=${firstOnly.next}`);
    assert.deepEqual(rest.conversations.map((c) => c.peer), [bob]);
    const conv = await get<MessagePage>(`/v1/users/${me}/conversations/${ann}`);
    assert.deepEqual(ids(conv), [m1.id, m2.id, m4.id]);
    const latest = await get<MessagePage>(`/v1/users/${ann}/conversations/${me}?before=latest&limit=2`);
    assert.deepEqual(ids(latest), [m2.id, m4.id]);
    assert.equal(latest.next, m2.id);
  });
});

describe('read state', () => {
  it('marks up to an id and by ids, setting readAt and answering the unread count', async () => {
    const [a, me] = [fresh('a'), fresh('me')];
    const ms: Message[] = [];
    for (let i = 0; i < 5; i++) ms.push(await send(a, me, `m${i}`));
    const r1 = await server.postJson(`/v1/users/${me}/read`, { upTo: ms[2]!.id });
    assert.equal(r1.status, 200);
    assert.deepEqual(r1.json<ReadResult>(), { unread: 2, marked: 3 });
    const read = await get<Message>(`/v1/messages/${ms[0]!.id}`);
    assert.ok(read.readAt !== null && Date.parse(read.readAt) > 0);
    assert.equal((await get<Message>(`/v1/messages/${ms[3]!.id}`)).readAt, null);
    const r2 = await server.postJson(`/v1/users/${me}/read`, { ids: [ms[4]!.id, ms[0]!.id] });
    assert.deepEqual(r2.json<ReadResult>(), { unread: 1, marked: 1 });
    const legacy = await get<Message[]>(`/get-messages/${me}`);
    assert.deepEqual(legacy.map((m) => m.readAt !== null), [true, true, true, false, true]);
  });

  it('rejects a read request that gives neither or both selectors', async () => {
    const me = fresh('me');
    for (const body of [{}, { upTo: '1', ids: ['1'] }, { upTo: 'x' }, { ids: ['1', 'two'] }]) {
      const res = await server.postJson(`/v1/users/${me}/read`, body);
      assert.equal(res.status, 400, JSON.stringify(body));
    }
  });
});

describe('idempotent sends', () => {
  it('answers a repeat with the first result and stores nothing new', async () => {
    const [a, b] = [fresh('a'), fresh('b')];
    const key = { 'idempotency-key': `order-${counter}` };
    const first = await server.postJson('/v1/messages', { fromUser: a, toUser: b, message: 'once' }, key);
    const again = await server.postJson('/v1/messages', { fromUser: a, toUser: b, message: 'once' }, key);
    assert.equal(first.status, 201);
    assert.equal(again.status, 201);
    assert.equal(again.text, first.text);
    assert.equal(again.headers.location, first.headers.location);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal((await get<MessagePage>(`/v1/users/${b}/messages`)).messages.length, 1);
  });

  it('stores one message for concurrent repeats of one key', async () => {
    const [a, b] = [fresh('a'), fresh('b')];
    const key = { 'idempotency-key': 'burst' };
    const answers = await Promise.all(Array.from({ length: 25 }, () =>
      server.postJson('/v1/messages', { fromUser: a, toUser: b, message: 'burst' }, key)));
    assert.ok(answers.every((r) => r.status === 201));
    assert.equal(new Set(answers.map((r) => r.json<Message>().id)).size, 1);
    assert.equal((await get<MessagePage>(`/v1/users/${b}/messages`)).messages.length, 1);
  });

  it('answers 422 for the same key with a different body', async () => {
    const [a, b] = [fresh('a'), fresh('b')];
    const key = { 'idempotency-key': 'reused' };
    await server.postJson('/v1/messages', { fromUser: a, toUser: b, message: 'first' }, key);
    const res = await server.postJson('/v1/messages', { fromUser: a, toUser: b, message: 'second' }, key);
    assert.equal(res.status, 422);
    const p = res.json<Problem>();
    assert.equal(p.type, '/problems/idempotency_mismatch');
    assert.equal(p.errors[0]!.field, 'Idempotency-Key');
    assert.equal((await get<MessagePage>(`/v1/users/${b}/messages`)).messages.length, 1);
  });

  it('works on the legacy send too', async () => {
    const [a, b] = [fresh('a'), fresh('b')];
    const opts = { method: 'POST', headers: { 'idempotency-key': 'legacy-1' }, body: JSON.stringify({ fromUser: a, toUser: b, message: 'm' }) };
    const first = await server.request('/post-message', opts);
    const again = await server.request('/post-message', opts);
    assert.equal(first.status, 202);
    assert.equal(again.headers.location, first.headers.location);
    assert.equal((await get<Message[]>(`/get-messages/${b}`)).length, 1);
  });

  it('rejects a key that is not 1 to 255 printable characters', async () => {
    for (const key of ['x'.repeat(256), 'tab\there']) {
      const res = await server.postJson('/v1/messages', { fromUser: 'a', toUser: 'b', message: 'm' }, { 'idempotency-key': key });
      assert.equal(res.status, 400, key);
    }
  });
});

describe('long-poll', () => {
  it('answers as soon as a message arrives after the cursor', async () => {
    const [a, me] = [fresh('a'), fresh('me')];
    const old = await send(a, me, 'already read');
    const started = Date.now();
    const polling = get<MessagePage>(`/v1/users/${me}/messages?after=${old.id}&wait=30`);
    // Once the poll is registered, send the message it waits for.
    await until(() => server.hub.listeners > 0, 'the poll to watch');
    const fresh1 = await send(a, me, 'new');
    const page = await polling;
    assert.deepEqual(ids(page), [fresh1.id]);
    assert.ok(Date.now() - started < 20_000, 'woken by the message, not by the 30 s deadline');
    assert.equal(server.hub.listeners, 0, 'the watch is released');
  });

  it('answers an empty page once the wait runs out', async () => {
    const me = fresh('me');
    const started = Date.now();
    const page = await get<MessagePage>(`/v1/users/${me}/messages?wait=1`);
    assert.deepEqual(page, { messages: [], next: null });
    assert.ok(Date.now() - started >= 950, 'it waited');
  });

  it('releases its watch when the client goes away', async () => {
    const me = fresh('me');
    const controller = new AbortController();
    const url = await server.listen();
    const polling = fetch(`${url}/v1/users/${me}/messages?wait=30`, { signal: controller.signal }).catch((e: unknown) => e);
    await until(() => server.hub.listeners > 0, 'the poll to watch');
    controller.abort();
    assert.equal((await polling as Error).name, 'AbortError');
    await until(() => server.hub.listeners === 0, 'the watch to be released', 5000);
  });

  it('rejects wait with backward paging', async () => {
    const res = await server.request(`/v1/users/${fresh('me')}/messages?before=latest&wait=5`);
    assert.equal(res.status, 400);
    assert.equal(res.json<Problem>().errors[0]!.field, 'wait');
  });
});
