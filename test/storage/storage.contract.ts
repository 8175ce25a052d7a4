/**
 * The Storage contract: one suite that every backend runs unchanged.
 *
 * `storageContract(name, open)` takes a factory that opens a fresh, empty store for each
 * test (a new SQLite file, a new PostgreSQL schema) and disposes of it afterwards.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { AppError } from '../../src/errors.js';
import type { Message } from '../../src/protocol/types.js';
import { ANYONE } from '../../src/domain/access.js';
import { MessageService } from '../../src/domain/messages.js';
import { UserService } from '../../src/domain/users.js';
import { joinedMessages, messageJson, pageJson } from '../../src/protocol/wire.js';
import { Hub } from '../../src/realtime/hub.js';
import { StreamRegistry } from '../../src/realtime/streams.js';
import type { ExportRecord, Storage, StoreEvent, WirePage, WireRow } from '../../src/storage/storage.js';
import { ATTEMPTS_KEPT, type StoredWebhook } from '../../src/storage/webhooks.js';
import { until } from '../helpers/wait.js';

/** A fresh store and how to dispose of it. */
export interface OpenedStore {
  storage: Storage;
  /** Opens a second handle on the same data (another process or instance would). */
  reopen?: () => Promise<Storage>;
  dispose(): Promise<void>;
}

/** Opens a fresh, empty store. */
export type StoreFactory = () => Promise<OpenedStore>;

async function withStore(open: StoreFactory, fn: (s: Storage, opened: OpenedStore) => Promise<void>): Promise<void> {
  const opened = await open();
  try {
    await fn(opened.storage, opened);
  } finally {
    await opened.storage.close();
    await opened.dispose();
  }
}

async function sendMany(s: Storage, n: number, from: string, to: string, prefix = 'm'): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const out = await s.send({ fromUser: from, toUser: to, message: `${prefix}${i}` });
    assert.equal(out.kind, 'stored');
    if (out.kind === 'stored') ids.push(out.message.id);
  }
  return ids;
}

const seqOf = (id: string) => Number(id);

/**
 * Pages forward (each page after the last id seen) while `writing` commits, until it has
 * finished and a page says there is no more: the ids seen, in the order seen.
 */
async function pageWhileWriting(writing: Promise<unknown>, page: (after: number | undefined) => Promise<WirePage>): Promise<string[]> {
  const seen: string[] = [];
  let after: number | undefined;
  let done = false;
  void writing.then(() => (done = true));
  for (;;) {
    const finished = done;
    const { messages, more } = objects(await page(after));
    for (const m of messages) seen.push(m.id);
    if (messages.length > 0) after = seqOf(messages[messages.length - 1]!.id);
    if (finished && !more) break;
    if (messages.length === 0) await new Promise((r) => setImmediate(r));
  }
  await writing;
  return seen;
}

/** A page with its messages parsed from their wire JSON, for assertions about content. */
export function objects(page: WirePage): { messages: Message[]; more: boolean } {
  return { messages: page.rows.map(([, json]) => JSON.parse(json) as Message), more: page.more };
}

/** Registers the contract suite for one backend. */
export function storageContract(name: string, open: StoreFactory): void {
  describe(`Storage contract: ${name}`, () => {
    describe('messages', () => {
      it('stores a message and reads it back faithfully', () => withStore(open, async (s) => {
        const text = 'héllo 👋 مرحبا \u{1F600} "quoted" \\ back\nslash\t tab';
        const out = await s.send({ fromUser: 'Val', toUser: 'Steve', message: text });
        assert.equal(out.kind, 'stored');
        if (out.kind !== 'stored') return;
        const m = out.message;
        assert.match(m.id, /^[1-9][0-9]*$/);
        assert.equal(m.fromUser, 'Val');
        assert.equal(m.toUser, 'Steve');
        assert.equal(m.message, text);
        assert.equal(m.readAt, null);
        assert.ok(Math.abs(Date.parse(m.sentAt) - Date.now()) < 60_000, 'sentAt is now');
        assert.equal(new Date(m.sentAt).toISOString(), m.sentAt, 'sentAt is ISO 8601 UTC with milliseconds');
        assert.deepEqual(await s.getMessage(seqOf(m.id)), m);
      }));

      it('stores an empty message and a large one', () => withStore(open, async (s) => {
        const big = 'x'.repeat(65536);
        const a = await s.send({ fromUser: 'a', toUser: 'b', message: '' });
        const b = await s.send({ fromUser: 'a', toUser: 'b', message: big });
        assert.ok(a.kind === 'stored' && b.kind === 'stored');
        assert.equal((await s.getMessage(seqOf(a.message.id)))?.message, '');
        assert.equal((await s.getMessage(seqOf(b.message.id)))?.message, big);
      }));

      it('answers null for a message that does not exist', () => withStore(open, async (s) => {
        assert.equal(await s.getMessage(999_999), null);
        assert.equal(await s.deleteMessage(999_999), null);
      }));

      it('assigns increasing ids and never reuses one, even after deleting the newest', () => withStore(open, async (s) => {
        const ids = await sendMany(s, 3, 'a', 'b');
        assert.ok(seqOf(ids[0]!) < seqOf(ids[1]!) && seqOf(ids[1]!) < seqOf(ids[2]!));
        await s.deleteMessage(seqOf(ids[2]!));
        const [next] = await sendMany(s, 1, 'a', 'b');
        assert.ok(seqOf(next!) > seqOf(ids[2]!), 'a deleted id is never handed out again');
      }));

      it('gives concurrent sends distinct ids in commit order', () => withStore(open, async (s) => {
        const outs = await Promise.all(Array.from({ length: 50 }, (_, i) =>
          s.send({ fromUser: `u${i % 5}`, toUser: 'inbox', message: String(i) })));
        const ids = outs.map((o) => (o.kind === 'stored' ? o.message.id : ''));
        assert.equal(new Set(ids).size, 50);
        const page = objects(await s.inbox('inbox', { limit: 100 }));
        assert.equal(page.messages.length, 50);
        const times = page.messages.map((m) => Date.parse(m.sentAt));
        assert.deepEqual(times, [...times].sort((x, y) => x - y), 'sentAt never goes back as ids go up');
      }));
    });

    describe('wire bytes, identical on every backend', () => {
      // Hand-written bytes, not made by any renderer: every backend must produce exactly
      // these, so the bytes are identical across backends. The texts cover what JSON
      // escapes (quote, backslash, control characters), what it must not escape (DEL,
      // U+2028, slash, non-ASCII), and timestamps at the edges of a second.
      const tricky = 'say "hi" \\ back\nnew\ttab \u0001\u001f\u007f é👋\u2028 </b>';
      const trickyJson = String.raw`"say \"hi\" \\ back\nnew\ttab \u0001\u001f` + '\u007f é👋\u2028 </b>"';
      const records: ExportRecord[] = [
        { type: 'message', message: { id: '7', fromUser: 'ann', toUser: 'bob', message: tricky, sentAt: '2026-02-03T04:05:06.007Z', readAt: null } },
        { type: 'message', message: { id: '9', fromUser: 'bob', toUser: 'ann', message: '', sentAt: '1999-12-31T23:59:59.999Z', readAt: '2000-01-01T00:00:00.000Z' } },
        { type: 'message', message: { id: '12', fromUser: 'ann', toUser: 'bob', message: 'plain', sentAt: '2026-02-03T04:05:07.000Z', readAt: '2026-02-03T04:05:08.100Z' } },
      ];
      const golden = {
        7: `{"id":"7","fromUser":"ann","toUser":"bob","message":${trickyJson},"sentAt":"2026-02-03T04:05:06.007Z","readAt":null}`,
        9: '{"id":"9","fromUser":"bob","toUser":"ann","message":"","sentAt":"1999-12-31T23:59:59.999Z","readAt":"2000-01-01T00:00:00.000Z"}',
        12: '{"id":"12","fromUser":"ann","toUser":"bob","message":"plain","sentAt":"2026-02-03T04:05:07.000Z","readAt":"2026-02-03T04:05:08.100Z"}',
      };
      const rowsOf = (page: WirePage) => page.rows.map(([id, json]) => [id, json]);

      it('reads pages, single messages, conversations and exports in the canonical bytes', () => withStore(open, async (s) => {
        await s.importAll(Readable.from(records) as AsyncIterable<ExportRecord>);
        assert.deepEqual(rowsOf(await s.inbox('bob', { limit: 10 })), [['7', golden[7]], ['12', golden[12]]]);
        assert.deepEqual(rowsOf(await s.inbox('bob', { before: Infinity, limit: 1 })), [['12', golden[12]]]);
        assert.deepEqual(rowsOf(await s.inbox('bob', { unreadOnly: true, limit: 10 })), [['7', golden[7]]]);
        assert.deepEqual(rowsOf(await s.sent('ann', { limit: 10 })), [['7', golden[7]], ['12', golden[12]]]);
        assert.deepEqual(rowsOf(await s.mailbox('ann', { limit: 10 })), [['7', golden[7]], ['9', golden[9]], ['12', golden[12]]]);
        assert.deepEqual(rowsOf(await s.mailbox('ann', { before: Infinity, limit: 1 })), [['12', golden[12]]]);
        assert.deepEqual(rowsOf(await s.conversation('ann', 'bob', { limit: 10 })), [['7', golden[7]], ['9', golden[9]], ['12', golden[12]]]);
        assert.deepEqual(rowsOf(await s.conversation('bob', 'ann', { before: 12, limit: 1 })), [['9', golden[9]]]);
        assert.equal(messageJson((await s.getMessage(7))!), golden[7]);
        const list = await s.conversations('ann', { limit: 5 });
        assert.equal(messageJson(list.conversations[0]!.lastMessage), golden[12]);
        const exported: string[] = [];
        for await (const r of s.exportAll()) if (r.type === 'message') exported.push(messageJson(r.message));
        assert.deepEqual(exported, [golden[7], golden[9], golden[12]]);
      }));

      it('renders a page document and the legacy inbox around the stored bytes', () => withStore(open, async (s) => {
        await s.importAll(Readable.from(records) as AsyncIterable<ExportRecord>);
        const page = await s.inbox('bob', { limit: 1 });
        assert.equal(pageJson(page.rows, page.more ? page.rows[0]![0] : null), `{"messages":[${golden[7]}],"next":"7"}`);
        const all = await s.inbox('bob', { limit: 10 });
        assert.equal(`[${joinedMessages(all.rows)}]`, `[${golden[7]},${golden[12]}]`);
      }));

      it('streams the same bytes on replay and live', () => withStore(open, async (s) => {
        await s.importAll(Readable.from(records) as AsyncIterable<ExportRecord>);
        const hub = new Hub();
        s.onEvents((events) => hub.publish(events));
        const messages = new MessageService(s, hub, { maxMessageBytes: 100_000 });
        const streams = new StreamRegistry(hub, { perUser: 2, total: 2, heartbeatMs: 60_000, bufferBytes: 1 << 20, retryMs: 1000 },
          { warn: () => undefined, debug: () => undefined }, { messages, users: new UserService(s) });
        const body = streams.start({ actor: ANYONE, user: 'bob', after: '0' });
        let text = '';
        body.setEncoding('utf8');
        body.on('data', (chunk: string) => (text += chunk));
        try {
          const frame = (id: string, json: string) => `event: message\nid: ${id}\ndata: ${json}\n\n`;
          const replayed = frame('7', golden[7]) + frame('12', golden[12]);
          await until(() => text.includes(replayed), 'the replayed frame');
          const out = await s.send({ fromUser: 'ann', toUser: 'bob', message: tricky });
          assert.ok(out.kind === 'stored');
          const [, stored] = (await s.inbox('bob', { after: 12, limit: 1 })).rows[0]!;
          await until(() => text.includes(frame(out.message.id, stored)), 'the live frame');
        } finally {
          body.destroy();
        }
      }));

      it('streams what the user sent, with sent=true: replayed with what it received in id order, then live', () => withStore(open, async (s) => {
        await s.importAll(Readable.from(records) as AsyncIterable<ExportRecord>);
        const hub = new Hub();
        s.onEvents((events) => hub.publish(events));
        const messages = new MessageService(s, hub, { maxMessageBytes: 100_000 });
        const streams = new StreamRegistry(hub, { perUser: 4, total: 4, heartbeatMs: 60_000, bufferBytes: 1 << 20, retryMs: 1000 },
          { warn: () => undefined, debug: () => undefined }, { messages, users: new UserService(s) });
        const read = (body: Readable) => {
          const got = { text: '' };
          body.setEncoding('utf8');
          body.on('data', (chunk: string) => (got.text += chunk));
          return got;
        };
        const withSent = streams.start({ actor: ANYONE, user: 'ann', after: '0', sent: true });
        const plain = streams.start({ actor: ANYONE, user: 'ann', after: '0' });
        const mine = read(withSent);
        const theirs = read(plain);
        try {
          const frame = (event: string, id: string, json: string) => `event: ${event}\nid: ${id}\ndata: ${json}\n\n`;
          const replayed = frame('sent', '7', golden[7]) + frame('message', '9', golden[9]) + frame('sent', '12', golden[12]);
          await until(() => mine.text.includes(replayed), 'the replayed frames');
          const out = await s.send({ fromUser: 'ann', toUser: 'bob', message: 'live' });
          const self = await s.send({ fromUser: 'ann', toUser: 'ann', message: 'note to self' });
          assert.ok(out.kind === 'stored' && self.kind === 'stored');
          const [[, stored], [, selfStored]] = (await s.mailbox('ann', { after: 12, limit: 5 })).rows as [WireRow, WireRow];
          const live = frame('sent', out.message.id, stored) + frame('message', self.message.id, selfStored);
          await until(() => mine.text.includes(live), 'the live frames');
          await until(() => theirs.text.includes(frame('message', self.message.id, selfStored)), 'the plain stream\'s frame');
          // A message to oneself is one `message` event; a stream without sent=true carries no `sent`.
          assert.equal(mine.text.split(`id: ${self.message.id}\n`).length, 2);
          assert.equal(theirs.text, `retry: 1000\n\n${frame('message', '9', golden[9])}${frame('message', self.message.id, selfStored)}`);
          await s.deleteMessage(Number(out.message.id));
          await until(() => mine.text.includes(`event: deleted\ndata: {"id":"${out.message.id}"}\n\n`), 'the sender\'s deleted event');
        } finally {
          withSent.destroy();
          plain.destroy();
        }
      }));

      it('tells live listeners the very bytes a replay reads back, before and after marking read', () => withStore(open, async (s) => {
        const heard: StoreEvent[] = [];
        s.onEvents((evs) => heard.push(...evs));
        const out = await s.send({ fromUser: 'ann', toUser: 'bob', message: tricky });
        assert.ok(out.kind === 'stored');
        await until(() => heard.some((e) => e.type === 'message'), 'a message event');
        const live = heard.find((e) => e.type === 'message');
        assert.ok(live?.type === 'message');
        const [replayed] = (await s.inbox('bob', { limit: 10 })).rows;
        // What a stream writes live (the event rendered by protocol/wire.ts) and on replay
        // (the stored row) are one text.
        assert.equal(messageJson(live.message), replayed![1]);
        assert.equal(messageJson(out.message), replayed![1]);
        assert.equal(replayed![1], `{"id":"${out.message.id}","fromUser":"ann","toUser":"bob","message":${trickyJson},"sentAt":"${out.message.sentAt}","readAt":null}`);
        const read = await s.markRead('bob', { upTo: Number(out.message.id) });
        const [after] = (await s.inbox('bob', { limit: 10 })).rows;
        assert.equal(after![1], `{"id":"${out.message.id}","fromUser":"ann","toUser":"bob","message":${trickyJson},"sentAt":"${out.message.sentAt}","readAt":"${read.readAt}"}`);
      }));
    });

    describe('paging', () => {
      it('pages forward from the oldest, with more=true until the end', () => withStore(open, async (s) => {
        const ids = await sendMany(s, 5, 'a', 'b');
        const p1 = objects(await s.inbox('b', { limit: 2 }));
        assert.deepEqual(p1.messages.map((m) => m.id), ids.slice(0, 2));
        assert.equal(p1.more, true);
        const p2 = objects(await s.inbox('b', { after: seqOf(ids[1]!), limit: 2 }));
        assert.deepEqual(p2.messages.map((m) => m.id), ids.slice(2, 4));
        assert.equal(p2.more, true);
        const p3 = objects(await s.inbox('b', { after: seqOf(ids[3]!), limit: 2 }));
        assert.deepEqual(p3.messages.map((m) => m.id), ids.slice(4));
        assert.equal(p3.more, false);
        const p4 = objects(await s.inbox('b', { after: seqOf(ids[4]!), limit: 2 }));
        assert.deepEqual(p4, { messages: [], more: false });
      }));

      it('pages backward from the latest, each page oldest first', () => withStore(open, async (s) => {
        const ids = await sendMany(s, 5, 'a', 'b');
        const p1 = objects(await s.inbox('b', { before: Infinity, limit: 2 }));
        assert.deepEqual(p1.messages.map((m) => m.id), ids.slice(3));
        assert.equal(p1.more, true);
        const p2 = objects(await s.inbox('b', { before: seqOf(ids[3]!), limit: 2 }));
        assert.deepEqual(p2.messages.map((m) => m.id), ids.slice(1, 3));
        const p3 = objects(await s.inbox('b', { before: seqOf(ids[1]!), limit: 2 }));
        assert.deepEqual(p3.messages.map((m) => m.id), ids.slice(0, 1));
        assert.equal(p3.more, false);
      }));

      it('reads a bounded range with after and before together', () => withStore(open, async (s) => {
        const ids = await sendMany(s, 6, 'a', 'b');
        const p = objects(await s.inbox('b', { after: seqOf(ids[0]!), before: seqOf(ids[4]!), limit: 10 }));
        assert.deepEqual(p.messages.map((m) => m.id), ids.slice(1, 4));
        assert.equal(p.more, false);
      }));

      it('keeps inboxes apart and filters by sender and by unread', () => withStore(open, async (s) => {
        const fromA = await sendMany(s, 3, 'a', 'me', 'a');
        const fromB = await sendMany(s, 2, 'b', 'me', 'b');
        await sendMany(s, 2, 'a', 'someone-else');
        const all = objects(await s.inbox('me', { limit: 50 }));
        assert.deepEqual(all.messages.map((m) => m.id), [...fromA, ...fromB]);
        const onlyB = objects(await s.inbox('me', { from: 'b', limit: 50 }));
        assert.deepEqual(onlyB.messages.map((m) => m.id), fromB);
        await s.markRead('me', { ids: [seqOf(fromA[0]!), seqOf(fromB[1]!)] });
        const unread = objects(await s.inbox('me', { unreadOnly: true, limit: 50 }));
        assert.deepEqual(unread.messages.map((m) => m.id), [fromA[1], fromA[2], fromB[0]]);
        const unreadFromA = objects(await s.inbox('me', { unreadOnly: true, from: 'a', limit: 1 }));
        assert.deepEqual(unreadFromA.messages.map((m) => m.id), [fromA[1]]);
        assert.equal(unreadFromA.more, true);
      }));

      it('lists what a user sent', () => withStore(open, async (s) => {
        const toB = await sendMany(s, 2, 'me', 'b');
        const toC = await sendMany(s, 2, 'me', 'c');
        await sendMany(s, 2, 'b', 'me');
        const p = objects(await s.sent('me', { limit: 3 }));
        assert.deepEqual(p.messages.map((m) => m.id), [...toB, toC[0]]);
        assert.equal(p.more, true);
        const back = objects(await s.sent('me', { before: Infinity, limit: 1 }));
        assert.deepEqual(back.messages.map((m) => m.id), [toC[1]]);
      }));

      it('lists what a user received and sent together, in id order, a message to oneself once', () => withStore(open, async (s) => {
        const order: string[] = [];
        for (let i = 0; i < 4; i++) {
          order.push(...await sendMany(s, 1, 'me', 'b', `out${i}`));
          order.push(...await sendMany(s, 1, 'c', 'me', `in${i}`));
          order.push(...await sendMany(s, 1, 'me', 'me', `self${i}`));
          await sendMany(s, 1, 'b', 'c', 'elsewhere');
        }
        const all = objects(await s.mailbox('me', { limit: 50 }));
        assert.deepEqual(all.messages.map((m) => m.id), order);
        assert.equal(all.more, false);
        // Forward from a cursor, page by page: every message once.
        const seen: string[] = [];
        let after = 0;
        for (;;) {
          const page = objects(await s.mailbox('me', { after, limit: 5 }));
          seen.push(...page.messages.map((m) => m.id));
          if (!page.more) break;
          after = seqOf(page.messages[page.messages.length - 1]!.id);
        }
        assert.deepEqual(seen, order);
        const resumed = objects(await s.mailbox('me', { after: seqOf(order[4]!), limit: 3 }));
        assert.deepEqual(resumed.messages.map((m) => m.id), order.slice(5, 8));
        assert.equal(resumed.more, true);
        const latest = objects(await s.mailbox('me', { before: Infinity, limit: 2 }));
        assert.deepEqual(latest.messages.map((m) => m.id), order.slice(-2));
        const back = objects(await s.mailbox('me', { before: seqOf(order[3]!), limit: 10 }));
        assert.deepEqual(back.messages.map((m) => m.id), order.slice(0, 3));
        assert.equal(back.more, false);
        const range = objects(await s.mailbox('me', { after: seqOf(order[1]!), before: seqOf(order[6]!), limit: 10 }));
        assert.deepEqual(range.messages.map((m) => m.id), order.slice(2, 6));
        assert.deepEqual(objects(await s.mailbox('nobody', { limit: 5 })), { messages: [], more: false });
      }));

      it('never skips or repeats a message of a user\'s inbox and sent box while writers commit concurrently', () => withStore(open, async (s) => {
        const perWriter = 40;
        const written: string[] = [];
        const pairs = [['me', 'a'], ['a', 'me'], ['me', 'me'], ['b', 'me'], ['a', 'b']] as const;
        const writing = Promise.all(pairs.map(async ([from, to]) => {
          for (let i = 0; i < perWriter; i++) {
            const out = await s.send({ fromUser: from, toUser: to, message: `${from}>${to}:${i}` });
            if (out.kind === 'stored' && (from === 'me' || to === 'me')) written.push(out.message.id);
          }
        }));
        const seen = await pageWhileWriting(writing, (after) => s.mailbox('me', { after, limit: 7 }));
        assert.equal(new Set(seen).size, seen.length, 'no message seen twice');
        assert.deepEqual(seen, [...seen].sort((x, y) => seqOf(x) - seqOf(y)), 'in id order');
        assert.deepEqual([...seen].sort(), [...written].sort(), 'every committed message seen');
      }));

      it('gives every page in the canonical wire bytes, for every query shape', () => withStore(open, async (s) => {
        // Imported, so the test picks timestamps at the edges of a second and odd texts.
        const stamps = ['2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.001Z', '2026-12-31T23:59:59.999Z', '1999-03-04T05:06:07.089Z'];
        const texts = ['plain', '', 'quote " backslash \\ newline \n tab \t', 'ünïcödé 👋 \u2028 sep', '<b>&amp;</b>'];
        const records: ExportRecord[] = [];
        for (let i = 1; i <= 40; i++) {
          records.push({
            type: 'message',
            message: {
              id: String(i * 3), fromUser: i % 3 === 0 ? 'friend' : `u${i % 4}`, toUser: i % 5 === 0 ? 'other' : 'me',
              message: texts[i % texts.length]!, sentAt: stamps[i % stamps.length]!,
              readAt: i % 2 === 0 ? stamps[(i + 1) % stamps.length]! : null,
            },
          });
        }
        await s.importAll(Readable.from(records) as AsyncIterable<ExportRecord>);
        const live = await sendMany(s, 3, 'friend', 'me');
        await s.markRead('me', { ids: [seqOf(live[0]!)] });
        const queries = [
          { limit: 7 }, { limit: 500 }, { after: 30, limit: 5 }, { before: 90, limit: 4 }, { before: Infinity, limit: 6 },
          { after: 9, before: 60, limit: 50 }, { from: 'friend', limit: 50 }, { unreadOnly: true, limit: 50 },
          { unreadOnly: true, from: 'friend', before: Infinity, limit: 3 }, { after: 10_000, limit: 5 },
        ];
        for (const q of queries) {
          const wire = await s.inbox('me', q);
          for (const [id, json] of wire.rows) {
            const m = JSON.parse(json) as Message;
            assert.equal(id, m.id, JSON.stringify(q));
            assert.equal(json, messageJson(m), `${JSON.stringify(q)}: the canonical bytes`);
          }
        }
        const imported = (objects(await s.inbox('me', { limit: 500 }))).messages.filter((m) => Number(m.id) <= 120);
        const expected = records.flatMap((r) => (r.type === 'message' && r.message.toUser === 'me' ? [r.message] : []));
        assert.deepEqual(imported, expected, 'imported messages read back exactly, timestamps included');
      }));

      it('never skips a message while writers commit concurrently', () => withStore(open, async (s) => {
        const writers = 4;
        const perWriter = 60;
        const written: string[] = [];
        const writing = Promise.all(Array.from({ length: writers }, async (_, w) => {
          for (let i = 0; i < perWriter; i++) {
            const out = await s.send({ fromUser: `w${w}`, toUser: 'reader', message: `${w}:${i}` });
            if (out.kind === 'stored') written.push(out.message.id);
          }
        }));
        const seen = await pageWhileWriting(writing, (after) => s.inbox('reader', { after, limit: 7 }));
        assert.equal(new Set(seen).size, seen.length, 'no message seen twice');
        assert.deepEqual([...seen].sort(), [...written].sort(), 'every committed message seen');
      }));
    });

    describe('conversations', () => {
      it('shows both directions of a conversation in order, with paging', () => withStore(open, async (s) => {
        const order: string[] = [];
        for (let i = 0; i < 6; i++) {
          const [from, to] = i % 2 === 0 ? ['me', 'you'] : ['you', 'me'];
          order.push(...(await sendMany(s, 1, from, to)));
          await sendMany(s, 1, 'me', 'third');
        }
        const p1 = objects(await s.conversation('me', 'you', { limit: 4 }));
        assert.deepEqual(p1.messages.map((m) => m.id), order.slice(0, 4));
        assert.equal(p1.more, true);
        const p2 = objects(await s.conversation('me', 'you', { after: seqOf(order[3]!), limit: 4 }));
        assert.deepEqual(p2.messages.map((m) => m.id), order.slice(4));
        assert.equal(p2.more, false);
        const latest = objects(await s.conversation('you', 'me', { before: Infinity, limit: 3 }));
        assert.deepEqual(latest.messages.map((m) => m.id), order.slice(3));
        const older = objects(await s.conversation('you', 'me', { before: seqOf(order[3]!), limit: 3 }));
        assert.deepEqual(older.messages.map((m) => m.id), order.slice(0, 3));
        assert.equal(older.more, false);
      }));

      it('handles a conversation with oneself', () => withStore(open, async (s) => {
        const ids = await sendMany(s, 3, 'me', 'me');
        const p = objects(await s.conversation('me', 'me', { limit: 10 }));
        assert.deepEqual(p.messages.map((m) => m.id), ids);
        const list = await s.conversations('me', { limit: 10 });
        assert.equal(list.conversations.length, 1);
        assert.equal(list.conversations[0]!.peer, 'me');
        assert.equal(list.conversations[0]!.unread, 3);
      }));

      it('lists conversations most recent first with last message and unread count', () => withStore(open, async (s) => {
        await sendMany(s, 2, 'alice', 'me');
        await sendMany(s, 1, 'me', 'bob');
        const [lastFromCarol] = await sendMany(s, 3, 'carol', 'me');
        const [lastToAlice] = await sendMany(s, 1, 'me', 'alice');
        const list = await s.conversations('me', { limit: 10 });
        assert.deepEqual(list.conversations.map((c) => c.peer), ['alice', 'carol', 'bob']);
        assert.deepEqual(list.conversations.map((c) => c.unread), [2, 3, 0]);
        assert.equal(list.conversations[0]!.lastMessage.id, lastToAlice);
        assert.equal(list.conversations[1]!.lastMessage.fromUser, 'carol');
        assert.equal(list.more, false);
        void lastFromCarol;
        const page1 = await s.conversations('me', { limit: 2 });
        assert.equal(page1.more, true);
        const page2 = await s.conversations('me', { before: seqOf(page1.conversations[1]!.lastMessage.id), limit: 2 });
        assert.deepEqual(page2.conversations.map((c) => c.peer), ['bob']);
        assert.equal(page2.more, false);
        const theirs = await s.conversations('alice', { limit: 10 });
        assert.deepEqual(theirs.conversations.map((c) => [c.peer, c.unread]), [['me', 1]]);
      }));
    });

    describe('read state', () => {
      it('marks up to an id, answering the remaining unread count', () => withStore(open, async (s) => {
        const ids = await sendMany(s, 4, 'a', 'me');
        await sendMany(s, 1, 'b', 'me');
        const out = await s.markRead('me', { upTo: seqOf(ids[2]!) });
        assert.deepEqual(out.ids, ids.slice(0, 3));
        assert.equal(out.unread, 2);
        assert.deepEqual(out.senders, ['a', 'a', 'a'], 'each id with its sender, for read receipts');
        const m = await s.getMessage(seqOf(ids[0]!));
        assert.equal(m?.readAt, out.readAt);
        assert.equal((await s.getMessage(seqOf(ids[3]!)))?.readAt, null);
        const list = await s.conversations('me', { limit: 10 });
        assert.deepEqual(Object.fromEntries(list.conversations.map((c) => [c.peer, c.unread])), { a: 1, b: 1 });
        const again = await s.markRead('me', { upTo: seqOf(ids[2]!) });
        assert.deepEqual(again.ids, [], 'marking again changes nothing');
        assert.equal((await s.getMessage(seqOf(ids[0]!)))?.readAt, out.readAt, 'the first readAt stays');
      }));

      it('marks listed ids, ignoring ids that are not to the user', () => withStore(open, async (s) => {
        const mine = await sendMany(s, 3, 'a', 'me');
        const theirs = await sendMany(s, 1, 'me', 'a');
        const out = await s.markRead('me', { ids: [seqOf(mine[1]!), seqOf(theirs[0]!), 999_999] });
        assert.deepEqual(out.ids, [mine[1]]);
        assert.deepEqual(out.senders, ['a']);
        assert.equal(out.unread, 2);
        assert.equal((await s.getMessage(seqOf(theirs[0]!)))?.readAt, null);
      }));
    });

    describe('delete', () => {
      it('removes a message from every view and keeps conversation state right', () => withStore(open, async (s) => {
        const [first, second] = await sendMany(s, 2, 'a', 'b');
        const deleted = await s.deleteMessage(seqOf(second!));
        assert.equal(deleted?.id, second);
        assert.equal(await s.getMessage(seqOf(second!)), null);
        assert.deepEqual((objects(await s.inbox('b', { limit: 10 }))).messages.map((m) => m.id), [first]);
        assert.deepEqual((objects(await s.sent('a', { limit: 10 }))).messages.map((m) => m.id), [first]);
        assert.deepEqual((objects(await s.conversation('a', 'b', { limit: 10 }))).messages.map((m) => m.id), [first]);
        const forB = await s.conversations('b', { limit: 10 });
        assert.equal(forB.conversations[0]!.lastMessage.id, first, 'last message falls back to the previous one');
        assert.equal(forB.conversations[0]!.unread, 1, 'a deleted unread message no longer counts');
        await s.deleteMessage(seqOf(first!));
        assert.deepEqual((await s.conversations('b', { limit: 10 })).conversations, [], 'an emptied conversation disappears');
        assert.deepEqual((await s.conversations('a', { limit: 10 })).conversations, []);
      }));

      it('deleting a read message leaves the unread count alone', () => withStore(open, async (s) => {
        const ids = await sendMany(s, 3, 'a', 'b');
        await s.markRead('b', { ids: [seqOf(ids[0]!)] });
        await s.deleteMessage(seqOf(ids[0]!));
        const list = await s.conversations('b', { limit: 10 });
        assert.equal(list.conversations[0]!.unread, 2);
        assert.equal((await s.markRead('b', { ids: [] })).unread, 2);
      }));
    });

    describe('retention: prune, claims, stats', () => {
      const DAY = 86_400_000;
      /** Imports messages sent `ageMs` ago (one ms apart, in id order), from id `first` on. */
      const importOld = (s: Storage, first: number, pairs: [from: string, to: string, read: boolean][], ageMs: number) => {
        const base = Date.now() - ageMs;
        return s.importAll(Readable.from(pairs.map(([from, to, read], i): ExportRecord => {
          const sentAt = new Date(base + i).toISOString();
          return { type: 'message', message: { id: String(first + i), fromUser: from, toUser: to, message: `old ${first + i}`, sentAt, readAt: read ? sentAt : null } };
        })) as AsyncIterable<ExportRecord>);
      };

      it('prunes by age in writes of at most `limit`, saying whether more remains; conversations and unread counts follow', () => withStore(open, async (s) => {
        await importOld(s, 1, [['alice', 'bob', false], ['alice', 'bob', false], ['bob', 'alice', true], ['carol', 'bob', false], ['alice', 'bob', true]], 2 * DAY);
        const [recent] = await sendMany(s, 1, 'alice', 'bob', 'recent');
        const before = Date.now() - DAY;
        assert.deepEqual(await s.prune({ before, limit: 2 }), { removed: 2, more: true });
        assert.deepEqual(await s.prune({ before, limit: 2 }), { removed: 2, more: true });
        assert.deepEqual(await s.prune({ before, limit: 2 }), { removed: 1, more: false });
        assert.deepEqual(await s.prune({ before, limit: 2 }), { removed: 0, more: false });
        assert.deepEqual(objects(await s.inbox('bob', { limit: 10 })).messages.map((m) => m.id), [recent]);
        for (const id of [1, 2, 3, 4, 5]) assert.equal(await s.getMessage(id), null, `old ${id} is gone`);
        const bob = await s.conversations('bob', { limit: 10 });
        assert.deepEqual(bob.conversations.map((c) => [c.peer, c.unread, c.lastMessage.id]), [['alice', 1, recent]],
          'carol\'s conversation went with its last message; alice\'s unread count counts only what remains');
        const alice = await s.conversations('alice', { limit: 10 });
        assert.deepEqual(alice.conversations.map((c) => [c.peer, c.unread, c.lastMessage.id]), [['bob', 0, recent]]);
        assert.deepEqual((await s.conversations('carol', { limit: 10 })).conversations, []);
        assert.equal((await s.markRead('bob', { ids: [] })).unread, 1);
      }));

      it('prunes an inbox up to a cutoff; inboxCutoff and nextInbox find the inboxes and what to keep', () => withStore(open, async (s) => {
        assert.equal(await s.nextInbox(''), null, 'an empty store has no inbox');
        const toAmy = await sendMany(s, 4, 'x', 'amy');
        const toBen = await sendMany(s, 2, 'amy', 'ben');
        const toCal = await sendMany(s, 1, 'x', 'cal');
        assert.equal(await s.nextInbox(''), 'amy');
        assert.equal(await s.nextInbox('amy'), 'ben');
        assert.equal(await s.nextInbox('ben'), 'cal');
        assert.equal(await s.nextInbox('cal'), null);
        assert.equal(await s.inboxCutoff('amy', 1), seqOf(toAmy[2]!), 'the newest beyond the newest one kept');
        assert.equal(await s.inboxCutoff('amy', 4), null, 'an inbox at the limit keeps everything');
        assert.equal(await s.inboxCutoff('ben', 5), null);
        assert.deepEqual(await s.prune({ inbox: 'amy', upTo: seqOf(toAmy[2]!), limit: 2 }), { removed: 2, more: true });
        assert.deepEqual(await s.prune({ inbox: 'amy', upTo: seqOf(toAmy[2]!), limit: 2 }), { removed: 1, more: false });
        assert.deepEqual(objects(await s.inbox('amy', { limit: 10 })).messages.map((m) => m.id), [toAmy[3]]);
        assert.deepEqual(objects(await s.inbox('ben', { limit: 10 })).messages.map((m) => m.id), toBen, 'other inboxes are untouched');
        assert.deepEqual((await s.conversations('amy', { limit: 10 })).conversations.map((c) => [c.peer, c.unread, c.lastMessage.id]),
          [['ben', 0, toBen[1]], ['x', 1, toAmy[3]]]);
        assert.deepEqual((await s.conversations('x', { limit: 10 })).conversations.map((c) => [c.peer, c.unread, c.lastMessage.id]),
          [['cal', 0, toCal[0]], ['amy', 0, toAmy[3]]], 'the sender\'s rows follow too');
        assert.equal(await s.inboxCutoff('amy', 1), null);
      }));

      it('grants a claim to one holder at a time, until released or its lease runs out; a prune under a lost lease removes nothing', () => withStore(open, async (s, opened) => {
        const long = { everyMs: 60_000, leaseMs: 60_000 };
        assert.equal(await s.claimTask('t', { holder: 'x', ...long }), true);
        assert.equal(await s.claimTask('t', { holder: 'y', everyMs: 0, leaseMs: 60_000 }), false, 'held by x, however often y runs');
        const claims = await Promise.all(['p', 'q', 'r'].map((holder) => s.claimTask('other', { holder, ...long })));
        assert.deepEqual(claims.filter(Boolean).length, 1, 'concurrent claims: exactly one wins');
        if (opened.reopen) {
          const other = await opened.reopen();
          try {
            assert.equal(await other.claimTask('t', { holder: 'z', everyMs: 0, leaseMs: 60_000 }), false, 'another instance sees the claim');
          } finally {
            await other.close();
          }
        }
        await sendMany(s, 3, 'a', 'b');
        const lost = await s.prune({ before: Date.now() + 1000, limit: 10, lease: { task: 't', holder: 'y', leaseMs: 60_000 } });
        assert.deepEqual(lost, { removed: 0, more: false, lost: true });
        assert.equal(objects(await s.inbox('b', { limit: 10 })).messages.length, 3, 'nothing pruned without the claim');
        assert.deepEqual(await s.prune({ before: Date.now() + 1000, limit: 2, lease: { task: 't', holder: 'x', leaseMs: 60_000 } }), { removed: 2, more: true });
        assert.equal(await s.releaseTask('t', 'y'), false, 'only the holder releases');
        assert.equal(await s.releaseTask('t', 'x'), true);
        assert.equal(await s.releaseTask('t', 'x'), false, 'released once');
        assert.equal(await s.claimTask('t', { holder: 'y', ...long }), false, 'ran within the period');
        assert.equal(await s.claimTask('t', { holder: 'y', everyMs: 0, leaseMs: 60_000 }), true, 'due for a task run this often');
        // A lease that runs out (its holder died) frees the task without a release.
        assert.equal(await s.claimTask('brief', { holder: 'dies', everyMs: 0, leaseMs: 30 }), true);
        await until(() => s.claimTask('brief', { holder: 'next', everyMs: 0, leaseMs: 60_000 }), 'the short lease to run out', 5000, 10);
      }));

      it('reports the messages it holds, the oldest one\'s time and its size', () => withStore(open, async (s) => {
        await importOld(s, 10, [['a', 'b', false], ['b', 'a', true]], 3 * DAY);
        await sendMany(s, 1, 'a', 'b');
        const stats = await s.stats();
        assert.equal(stats.messages, 3);
        assert.ok(stats.oldestSentAt !== null && Math.abs(Date.parse(stats.oldestSentAt) - (Date.now() - 3 * DAY)) < 60_000, stats.oldestSentAt ?? 'null');
        assert.equal(objects(await s.inbox('b', { limit: 10 })).messages[0]!.sentAt, stats.oldestSentAt, 'the oldest stored message\'s own sentAt');
        assert.ok(stats.storeBytes > 0);
        assert.ok(stats.walBytes === null || stats.walBytes >= 0);
      }));
    });

    describe('idempotency', () => {
      it('answers a repeated key with the first result and stores nothing new', () => withStore(open, async (s) => {
        const claim = { key: 'k-1', fingerprint: 'f1' };
        const first = await s.send({ fromUser: 'a', toUser: 'b', message: 'once' }, claim);
        const again = await s.send({ fromUser: 'a', toUser: 'b', message: 'once' }, claim);
        assert.equal(first.kind, 'stored');
        assert.equal(again.kind, 'replayed');
        if (first.kind === 'stored' && again.kind === 'replayed') assert.deepEqual(again.message, first.message);
        assert.equal((objects(await s.inbox('b', { limit: 10 }))).messages.length, 1);
      }));

      it('reports a key reused with a different request', () => withStore(open, async (s) => {
        await s.send({ fromUser: 'a', toUser: 'b', message: 'one' }, { key: 'k', fingerprint: 'f1' });
        const out = await s.send({ fromUser: 'a', toUser: 'b', message: 'two' }, { key: 'k', fingerprint: 'f2' });
        assert.equal(out.kind, 'mismatch');
        assert.equal((objects(await s.inbox('b', { limit: 10 }))).messages.length, 1);
      }));

      it('scopes keys to their sender', () => withStore(open, async (s) => {
        const a = await s.send({ fromUser: 'a', toUser: 'b', message: 'x' }, { key: 'same', fingerprint: 'f' });
        const c = await s.send({ fromUser: 'c', toUser: 'b', message: 'x' }, { key: 'same', fingerprint: 'f' });
        assert.equal(a.kind, 'stored');
        assert.equal(c.kind, 'stored');
      }));

      it('stores one message for concurrent repeats of one key', () => withStore(open, async (s) => {
        const claim = { key: 'burst', fingerprint: 'f' };
        const outs = await Promise.all(Array.from({ length: 20 }, () =>
          s.send({ fromUser: 'a', toUser: 'b', message: 'burst' }, claim)));
        assert.equal(outs.filter((o) => o.kind === 'stored').length, 1);
        assert.equal(outs.filter((o) => o.kind === 'replayed').length, 19);
        assert.equal((objects(await s.inbox('b', { limit: 50 }))).messages.length, 1);
      }));

      it('still replays the first result after that message is deleted', () => withStore(open, async (s) => {
        const claim = { key: 'k', fingerprint: 'f' };
        const first = await s.send({ fromUser: 'a', toUser: 'b', message: 'x' }, claim);
        assert.equal(first.kind, 'stored');
        if (first.kind !== 'stored') return;
        await s.deleteMessage(seqOf(first.message.id));
        const again = await s.send({ fromUser: 'a', toUser: 'b', message: 'x' }, claim);
        assert.equal(again.kind, 'replayed');
        assert.equal((objects(await s.inbox('b', { limit: 10 }))).messages.length, 0);
      }));
    });

    describe('users and tokens', () => {
      it('creates users once, lists them, and finds users by token hash', () => withStore(open, async (s) => {
        assert.equal(await s.createUser('alice', 'hash-a1'), true);
        assert.equal(await s.createUser('alice', 'hash-other'), false);
        assert.equal(await s.createUser('bob', 'hash-b1'), true);
        assert.deepEqual((await s.listUsers()).map((u) => u.id), ['alice', 'bob']);
        assert.equal(await s.userForToken('hash-a1'), 'alice');
        assert.equal(await s.userForToken('hash-other'), null);
        assert.equal(await s.addToken('alice', 'hash-a2'), true);
        assert.equal(await s.userForToken('hash-a2'), 'alice');
        assert.equal(await s.addToken('nobody', 'hash-n'), false);
        assert.equal(await s.userForToken('hash-n'), null);
      }));

      it('revokes all tokens of a user, and removes a user with its tokens', () => withStore(open, async (s) => {
        await s.createUser('alice', 'a1');
        await s.addToken('alice', 'a2');
        await s.createUser('bob', 'b1');
        assert.equal(await s.revokeTokens('alice'), 2);
        assert.equal(await s.userForToken('a1'), null);
        assert.equal(await s.userForToken('a2'), null);
        assert.equal(await s.userForToken('b1'), 'bob');
        await s.send({ fromUser: 'bob', toUser: 'alice', message: 'kept' });
        assert.equal(await s.deleteUser('bob'), true);
        assert.equal(await s.deleteUser('bob'), false);
        assert.equal(await s.userForToken('b1'), null);
        assert.equal((objects(await s.inbox('alice', { limit: 5 }))).messages.length, 1, 'messages outlive their sender');
      }));

      it('names every stored user id: users, reserved ids, recipients and senders', () => withStore(open, async (s) => {
        await s.createUser('live', 'h-live');
        await s.createUser('gone', 'h-gone');
        await s.deleteUser('gone');
        for (let i = 0; i < 30; i++) await s.send({ fromUser: `from-${i % 3}`, toUser: `to-${i % 4}`, message: 'm' });
        const ids = new Set<string>();
        for await (const id of s.storedUserIds()) ids.add(id);
        assert.deepEqual([...ids].sort(), ['from-0', 'from-1', 'from-2', 'gone', 'live', 'to-0', 'to-1', 'to-2', 'to-3']);
      }));

      it('creates a user without a token, and tells a user, a reserved id and an unknown id apart', () => withStore(open, async (s) => {
        assert.equal(await s.userStatus('jay'), 'none');
        assert.equal(await s.createUser('jay'), true, 'a JWT user\'s record: no token');
        assert.equal(await s.userStatus('jay'), 'user');
        assert.equal(await s.createUser('jay'), false);
        const exported: ExportRecord[] = [];
        for await (const r of s.exportAll()) exported.push(r);
        assert.deepEqual(exported.filter((r) => r.type === 'token'), []);
        assert.equal(await s.deleteUser('jay'), true);
        assert.equal(await s.userStatus('jay'), 'reserved');
        assert.equal(await s.createUser('jay'), false, 'a reserved id is not created again');
        assert.equal(await s.deleteUser('jay', { purge: true }), true);
        assert.equal(await s.userStatus('jay'), 'none');
      }));
    });

    describe('token scopes', () => {
      it('keeps each token\'s scopes, full by default, and exports only narrower ones', () => withStore(open, async (s) => {
        await s.createUser('alice', 'hash-full');
        assert.equal(await s.addToken('alice', 'hash-send', 'send'), true);
        assert.equal(await s.addToken('alice', 'hash-rs', 'send read'), true);
        assert.deepEqual(await s.tokenOwner('hash-full'), { user: 'alice', scopes: 'full' });
        assert.deepEqual(await s.tokenOwner('hash-send'), { user: 'alice', scopes: 'send' });
        assert.deepEqual(await s.tokenOwner('hash-rs'), { user: 'alice', scopes: 'send read' });
        assert.equal(await s.tokenOwner('nope'), null);
        const tokens = [];
        for await (const r of s.exportAll()) if (r.type === 'token') tokens.push(r);
        assert.deepEqual(tokens.map((t) => [t.hash, t.scopes]), [['hash-full', undefined], ['hash-rs', 'send read'], ['hash-send', 'send']]);
      }));
    });

    describe('webhooks', () => {
      const endpoint = (id: string, events: StoredWebhook['events']): StoredWebhook => ({
        id, url: `http://example.com/${id}`, events, description: null, secret: 'whsec_c2VjcmV0', enabled: true,
        disabledReason: null, failingSince: null, createdAt: 1,
      });

      it('writes a delivery per subscribed endpoint in the change\'s commit, in order', () => withStore(open, async (s) => {
        await s.webhooks.createWebhook(endpoint('wh_a', ['message.created', 'user.created']));
        await s.webhooks.createWebhook(endpoint('wh_b', ['user.removed']));
        await s.createUser('u1', 'h1');
        const sent = await s.send({ fromUser: 'u1', toUser: 'u2', message: 'hi' });
        await s.deleteUser('u1');
        await s.importAll(Readable.from([{ type: 'user', id: 'imported', createdAt: new Date(0).toISOString() }]) as AsyncIterable<ExportRecord>);
        const a = (await s.webhooks.listDeliveries('wh_a', { limit: 10 })).deliveries;
        assert.deepEqual(a.map((d) => d.type), ['message.created', 'user.created'], 'newest first; imports are history, not news');
        assert.deepEqual((JSON.parse(a[0]!.payload) as { data: unknown }).data, sent.kind === 'stored' ? sent.message : null);
        assert.ok(a[0]!.id > a[1]!.id);
        const b = (await s.webhooks.listDeliveries('wh_b', { limit: 10 })).deliveries;
        assert.deepEqual(b.map((d) => [d.type, (JSON.parse(d.payload) as { data: unknown }).data]), [['user.removed', { id: 'u1' }]]);
      }));

      it('leases an endpoint to one owner at a time, and records attempts', () => withStore(open, async (s) => {
        await s.webhooks.createWebhook(endpoint('wh_l', ['user.created']));
        await s.createUser('u1', 'h1');
        await s.createUser('u2', 'h2');
        const now = Date.now() + 1000;
        assert.deepEqual((await s.webhooks.leaseEndpoints('one', now, 60_000, 10)).map((w) => w.id), ['wh_l']);
        assert.deepEqual(await s.webhooks.leaseEndpoints('two', now, 60_000, 10), [], 'leased already');
        const head = (await s.webhooks.headDelivery('wh_l'))!;
        await s.webhooks.recordAttempt(head.id, { at: now, status: 'delivered', nextAttemptAt: now, httpStatus: 204, error: null });
        const next = (await s.webhooks.headDelivery('wh_l'))!;
        assert.ok(next.id > head.id, 'the next in order');
        await s.webhooks.recordAttempt(next.id, { at: now, status: 'pending', nextAttemptAt: now + 5000, httpStatus: 500, error: 'answered HTTP 500' });
        await s.webhooks.releaseEndpoint('wh_l', 'one');
        assert.deepEqual(await s.webhooks.leaseEndpoints('two', now, 60_000, 10), [], 'its head is not due yet');
        assert.deepEqual((await s.webhooks.leaseEndpoints('two', now + 5000, 60_000, 10)).map((w) => w.id), ['wh_l']);
        const list = (await s.webhooks.listDeliveries('wh_l', { limit: 10 })).deliveries;
        assert.deepEqual(list.map((d) => [d.status, d.attempts, d.lastStatus, d.lastError]),
          [['pending', 1, 500, 'answered HTTP 500'], ['delivered', 1, 204, null]]);
        assert.deepEqual(list.map((d) => d.history), [
          [{ at: now, httpStatus: 500, error: 'answered HTTP 500' }], [{ at: now, httpStatus: 204, error: null }],
        ]);
        assert.equal(await s.webhooks.pruneDelivered(now + 1), 1);
        // Every attempt is kept, oldest first, up to the last ATTEMPTS_KEPT.
        for (let i = 2; i <= ATTEMPTS_KEPT + 2; i++) {
          await s.webhooks.recordAttempt(next.id, { at: now + i, status: 'pending', nextAttemptAt: now + 5000, httpStatus: null, error: `try ${i}` });
        }
        const retried = (await s.webhooks.retryDelivery('wh_l', next.id, now))!;
        assert.equal(retried.status, 'pending');
        assert.equal(retried.attempts, ATTEMPTS_KEPT + 2);
        assert.deepEqual(retried.history!.map((a) => a.error),
          Array.from({ length: ATTEMPTS_KEPT }, (_, k) => `try ${k + 3}`));
        const [listed] = (await s.webhooks.listDeliveries('wh_l', { limit: 10 })).deliveries;
        assert.deepEqual(listed!.history, retried.history);
        assert.equal(await s.webhooks.retryDelivery('wh_other', next.id, now), null);
      }));

      it('tells after each commit that wrote deliveries, and after no other', () => withStore(open, async (s) => {
        let told = 0;
        const off = s.webhooks.onDeliveries(() => told++);
        await s.createUser('u0', 'h0');
        assert.equal(told, 0, 'no endpoint: no delivery, nothing to tell');
        await s.webhooks.createWebhook(endpoint('wh_t', ['user.created']));
        await s.send({ fromUser: 'u0', toUser: 'u1', message: 'not subscribed' });
        assert.equal(told, 0, 'an event no endpoint takes writes no delivery');
        await s.createUser('u1', 'h1');
        assert.equal(told, 1, 'told by the time the write is answered');
        off();
        await s.createUser('u2', 'h2');
        assert.equal(told, 1);
      }));

      it('changes and removes endpoints, their deliveries going with them', () => withStore(open, async (s) => {
        await s.webhooks.createWebhook(endpoint('wh_c', ['user.created']));
        await s.createUser('u1', 'h1');
        const changed = await s.webhooks.updateWebhook('wh_c', { enabled: false, disabledReason: 'why', events: ['user.removed'] });
        assert.deepEqual([changed!.enabled, changed!.disabledReason, changed!.events], [false, 'why', ['user.removed']]);
        await s.createUser('u2', 'h2');
        assert.equal((await s.webhooks.listDeliveries('wh_c', { limit: 10 })).deliveries.length, 1, 'a disabled endpoint gets no new deliveries');
        assert.equal(await s.webhooks.updateWebhook('nope', { enabled: true }), null);
        assert.equal(await s.webhooks.deleteWebhook('wh_c'), true);
        assert.equal(await s.webhooks.getWebhook('wh_c'), null);
        assert.equal((await s.webhooks.listDeliveries('wh_c', { limit: 10 })).deliveries.length, 0);
        assert.equal(await s.webhooks.deleteWebhook('wh_c'), false);
      }));
    });

    describe('events', () => {
      it('tells listeners what committed, after it committed', () => withStore(open, async (s) => {
        const events: StoreEvent[] = [];
        const seenAtEvent: (string | null)[] = [];
        const off = s.onEvents((evs) => {
          events.push(...evs);
          for (const e of evs) if (e.type === 'message') seenAtEvent.push(e.message.id);
        });
        const sent = await s.send({ fromUser: 'a', toUser: 'b', message: 'hi' });
        assert.equal(sent.kind, 'stored');
        if (sent.kind !== 'stored') return;
        const id = sent.message.id;
        // Readable from storage by the time the event was delivered:
        assert.deepEqual(await s.getMessage(seqOf(id)), sent.message);
        await s.markRead('b', { upTo: seqOf(id) });
        await s.deleteMessage(seqOf(id));
        await s.createUser('u', 'h');
        await s.revokeTokens('u');
        await s.deleteUser('u');
        await until(() => events.length >= 5, 'five events');
        off();
        await s.send({ fromUser: 'a', toUser: 'b', message: 'unheard' });
        assert.deepEqual(events.map((e) => e.type), ['message', 'read', 'deleted', 'tokens-revoked', 'user-removed']);
        assert.deepEqual(events[0], { type: 'message', message: sent.message });
        const read = events[1];
        assert.ok(read?.type === 'read' && read.user === 'b' && read.ids.length === 1 && read.ids[0] === id);
        assert.deepEqual(events[2], { type: 'deleted', id, fromUser: 'a', toUser: 'b' });
        assert.deepEqual(seenAtEvent, [id]);
      }));

      it('does not tell of a replayed send or a no-op', () => withStore(open, async (s) => {
        const events: StoreEvent[] = [];
        await s.send({ fromUser: 'a', toUser: 'b', message: 'x' }, { key: 'k', fingerprint: 'f' });
        s.onEvents((evs) => events.push(...evs));
        await s.send({ fromUser: 'a', toUser: 'b', message: 'x' }, { key: 'k', fingerprint: 'f' });
        await s.markRead('b', { ids: [] });
        await s.deleteMessage(123_456);
        await s.send({ fromUser: 'a', toUser: 'b', message: 'marker' });
        await until(() => events.length >= 1, 'the first event');
        assert.deepEqual(events.map((e) => e.type), ['message']);
      }));

      it('keeps telling other listeners, and keeps writing, when a listener throws', () => withStore(open, async (s) => {
        const heard: StoreEvent[] = [];
        s.onEvents(() => {
          throw new Error('a broken listener');
        });
        s.onEvents((evs) => heard.push(...evs));
        const first = await s.send({ fromUser: 'a', toUser: 'b', message: 'one' });
        const second = await s.send({ fromUser: 'a', toUser: 'b', message: 'two' });
        assert.ok(first.kind === 'stored' && second.kind === 'stored');
        await until(() => heard.length >= 2, 'two events');
        assert.deepEqual(heard.map((e) => (e.type === 'message' ? e.message.id : e.type)), [first.message.id, second.message.id]);
      }));
    });

    describe('export and import', () => {
      it('round-trips users, token hashes, messages and read state into an empty store', async () => {
        const records: ExportRecord[] = [];
        await withStore(open, async (s) => {
          await s.createUser('alice', 'hash-a');
          await s.addToken('alice', 'hash-a2');
          await s.createUser('bob', 'hash-b');
          const ids = await sendMany(s, 1200, 'alice', 'bob');
          await sendMany(s, 3, 'bob', 'alice');
          await s.markRead('bob', { upTo: seqOf(ids[9]!) });
          await s.deleteMessage(seqOf(ids[20]!));
          for await (const r of s.exportAll()) records.push(r);
        });
        assert.equal(records.filter((r) => r.type === 'user').length, 2);
        assert.equal(records.filter((r) => r.type === 'token').length, 3);
        assert.equal(records.filter((r) => r.type === 'message').length, 1202);
        await withStore(open, async (t) => {
          const replay = () => Readable.from(records) as AsyncIterable<ExportRecord>;
          const counts = await t.importAll(replay());
          assert.deepEqual(counts, { users: 2, tokens: 3, messages: 1202, reservations: 0 });
          const again: ExportRecord[] = [];
          for await (const r of t.exportAll()) again.push(r);
          assert.deepEqual(again, records, 'an export of the import is the same export');
          assert.equal(await t.userForToken('hash-a2'), 'alice');
          const bob = await t.conversations('bob', { limit: 5 });
          assert.equal(bob.conversations[0]!.unread, 1199 - 10, 'unread counts rebuilt from read state');
          const next = await t.send({ fromUser: 'x', toUser: 'y', message: 'after import' });
          const maxImported = Math.max(...records.flatMap((r) => (r.type === 'message' ? [seqOf(r.message.id)] : [])));
          assert.ok(next.kind === 'stored' && seqOf(next.message.id) > maxImported, 'new ids continue past imported ones');
          const twice = await t.importAll(replay());
          assert.deepEqual(twice, { users: 0, tokens: 0, messages: 0, reservations: 0 }, 'importing again stores nothing twice');
        });
      });

      it('carries a removed user\'s reservation: after the round trip its id still cannot be re-created', async () => {
        const records: ExportRecord[] = [];
        let removedAt = '';
        await withStore(open, async (s) => {
          await s.createUser('zed', 'hash-z');
          await s.createUser('amy', 'hash-a');
          await s.send({ fromUser: 'amy', toUser: 'zed', message: 'for zed only' });
          const before = Date.now();
          await s.deleteUser('zed');
          for await (const r of s.exportAll()) records.push(r);
          const reservation = records.find((r) => r.type === 'reservation');
          assert.ok(reservation?.type === 'reservation');
          removedAt = reservation.removedAt;
          assert.ok(Date.parse(removedAt) >= before - 1000, removedAt);
        });
        assert.deepEqual(records.map((r) => r.type), ['user', 'reservation', 'token', 'message'], 'users, reservations, tokens, messages');
        assert.deepEqual(records[1], { type: 'reservation', id: 'zed', removedAt });
        await withStore(open, async (t) => {
          const counts = await t.importAll(Readable.from(records) as AsyncIterable<ExportRecord>);
          assert.deepEqual(counts, { users: 1, tokens: 1, messages: 1, reservations: 1 });
          assert.equal(await t.userStatus('zed'), 'reserved');
          assert.equal(await t.createUser('zed', 'hash-new'), false, 'no one inherits zed\'s inbox');
          const again: ExportRecord[] = [];
          for await (const r of t.exportAll()) again.push(r);
          assert.deepEqual(again, records, 'an export of the import is the same export');
          // An id is never both a user and reserved, whatever a file says.
          const clash = await t.importAll(Readable.from([
            { type: 'user', id: 'zed', createdAt: new Date(0).toISOString() },
            { type: 'reservation', id: 'amy', removedAt: new Date(0).toISOString() },
          ]) as AsyncIterable<ExportRecord>);
          assert.deepEqual(clash, { users: 0, tokens: 0, messages: 0, reservations: 0 });
          assert.equal(await t.userStatus('zed'), 'reserved');
          assert.equal(await t.userStatus('amy'), 'user');
        });
      });
      it('refuses a NUL character in an imported record, naming it, after storing the records before it', () => withStore(open, async (s) => {
        const sentAt = new Date().toISOString();
        const message = (id: string, text: string, fromUser = 'a'): ExportRecord =>
          ({ type: 'message', message: { id, fromUser, toUser: 'b', message: text, sentAt, readAt: null } });
        const refused = (n: number, field: string) => (err: unknown) => {
          assert.ok(err instanceof AppError, `an AppError, not ${String(err)}`);
          assert.equal(err.code, 'validation');
          assert.match(err.message, new RegExp(`record ${n}\\b.*${field.replace('.', '\\.')}.*NUL`));
          assert.deepEqual(err.errors.map((e) => e.field), [`records/${n}/${field}`]);
          return true;
        };
        const records: ExportRecord[] = [
          { type: 'user', id: 'a', createdAt: sentAt },
          message('1', 'fine'),
          message('2', 'bad\u0000text'),
          message('3', 'after'),
        ];
        await assert.rejects(s.importAll(Readable.from(records) as AsyncIterable<ExportRecord>), refused(3, 'message.message'));
        assert.deepEqual((await s.listUsers()).map((u) => u.id), ['a']);
        assert.deepEqual((objects(await s.inbox('b', { limit: 10 }))).messages.map((m) => m.id), ['1']);
        await assert.rejects(
          s.importAll(Readable.from([message('4', 'x', 'nul\u0000user')]) as AsyncIterable<ExportRecord>),
          refused(1, 'message.fromUser'),
        );
        await assert.rejects(
          s.importAll(Readable.from([{ type: 'user', id: 'u\u0000', createdAt: sentAt }]) as AsyncIterable<ExportRecord>),
          refused(1, 'id'),
        );
        assert.deepEqual((objects(await s.inbox('b', { limit: 10 }))).messages.map((m) => m.id), ['1'], 'nothing else stored');
        assert.deepEqual((await s.listUsers()).map((u) => u.id), ['a']);
      }));
    });

    describe('operations', () => {
      it('answers ping while open and can be closed twice', () => withStore(open, async (s) => {
        await s.ping();
        await s.close();
        await s.close();
      }));

      it('fails a write alone, committing the writes grouped with it', () => withStore(open, async (s) => {
        // The first send keeps the writer busy, so what follows queues up and commits together.
        const first = s.send({ fromUser: 'a', toUser: 'b', message: 'first' });
        const orphan: ExportRecord = { type: 'token', user: 'nobody', hash: 'orphan', createdAt: new Date().toISOString() };
        const bad = s.importAll(Readable.from([orphan]) as AsyncIterable<ExportRecord>);
        const rest = Array.from({ length: 5 }, (_, i) => s.send({ fromUser: 'a', toUser: 'b', message: `m${i}` }));
        await assert.rejects(bad, 'a token for a user that does not exist is refused');
        const outs = await Promise.all([first, ...rest]);
        assert.deepEqual(outs.map((o) => o.kind), Array(6).fill('stored'));
        assert.equal((objects(await s.inbox('b', { limit: 10 }))).messages.length, 6);
        assert.equal(await s.userForToken('orphan'), null);
      }));

      it('sees writes made through another handle on the same data', async () => {
        const opened = await open();
        if (!opened.reopen) {
          await opened.storage.close();
          await opened.dispose();
          return;
        }
        const other = await opened.reopen();
        try {
          const out = await opened.storage.send({ fromUser: 'a', toUser: 'b', message: 'shared' });
          assert.equal(out.kind, 'stored');
          const page = objects(await other.inbox('b', { limit: 5 }));
          assert.deepEqual(page.messages.map((m) => m.message), ['shared']);
        } finally {
          await other.close();
          await opened.storage.close();
          await opened.dispose();
        }
      });
    });
  });
}
