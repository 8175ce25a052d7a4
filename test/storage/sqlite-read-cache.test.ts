/**
 * The SQLite read side keeps pages until the database changes (read-cache.ts). A page
 * must never be served after a commit that could change it: not after this process's own
 * writes, and not after another process's writes to the same file.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openSqliteStorage, type SqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import { ReadCache } from '../../src/storage/read-cache.js';
import type { WirePage } from '../../src/storage/storage.js';
import { tempDir } from '../helpers/server.js';

const ids = (page: WirePage) => page.rows.map(([id]) => id);
const texts = (page: WirePage) => page.rows.map(([, json]) => (JSON.parse(json) as { message: string; readAt: string | null }));

async function twoConnections(): Promise<{ a: SqliteStorage; b: SqliteStorage; dispose: () => Promise<void> }> {
  const dir = await tempDir('postbox-read-cache-');
  const path = join(dir, 'p.db');
  // Two stores on one file: each has its own read connection and writer, as two processes would.
  const a = openSqliteStorage({ path, durability: 'relaxed' });
  const b = openSqliteStorage({ path, durability: 'relaxed' });
  return {
    a, b,
    dispose: async () => {
      await a.close();
      await b.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('SQLite read cache', () => {
  it('answers a repeated read with the same page until something is committed', async () => {
    const { a, dispose } = await twoConnections();
    try {
      await a.send({ fromUser: 'x', toUser: 'r', message: 'one' });
      const first = await a.inbox('r', { limit: 10 });
      assert.equal(await a.inbox('r', { limit: 10 }), first, 'the second read is the kept page');
      await a.send({ fromUser: 'x', toUser: 'r', message: 'two' });
      assert.deepEqual(texts(await a.inbox('r', { limit: 10 })).map((m) => m.message), ['one', 'two']);
    } finally {
      await dispose();
    }
  });

  it('sees sends, reads and deletes committed by another connection to the same file', async () => {
    const { a, b, dispose } = await twoConnections();
    try {
      const sent = await a.send({ fromUser: 'x', toUser: 'r', message: 'one' });
      assert.equal(sent.kind, 'stored');
      const before = await a.inbox('r', { limit: 10 });
      assert.equal(before.rows.length, 1);

      await b.send({ fromUser: 'y', toUser: 'r', message: 'from elsewhere' });
      const afterSend = await a.inbox('r', { limit: 10 });
      assert.deepEqual(texts(afterSend).map((m) => m.message), ['one', 'from elsewhere']);

      await b.markRead('r', { upTo: Number(afterSend.rows[1]![0]) });
      assert.ok(texts(await a.inbox('r', { limit: 10 })).every((m) => m.readAt !== null), 'read state shows at once');

      await b.deleteMessage(Number(afterSend.rows[0]![0]));
      assert.deepEqual(ids(await a.inbox('r', { limit: 10 })), [afterSend.rows[1]![0]]);
    } finally {
      await dispose();
    }
  });

  it('keeps the conversation list only until another connection changes it', async () => {
    const { a, b, dispose } = await twoConnections();
    try {
      await a.send({ fromUser: 'x', toUser: 'r', message: 'one' });
      const first = await a.conversations('r', { limit: 10 });
      assert.equal(await a.conversations('r', { limit: 10 }), first, 'the second read is the kept page');
      const sent = await b.send({ fromUser: 'y', toUser: 'r', message: 'two' });
      assert.equal(sent.kind, 'stored');
      const list = await a.conversations('r', { limit: 10 });
      assert.deepEqual(list.conversations.map((c) => [c.peer, c.unread, c.lastMessage.message]), [['y', 1, 'two'], ['x', 1, 'one']]);
      await b.markRead('r', { upTo: Number(list.conversations[0]!.lastMessage.id) });
      assert.deepEqual((await a.conversations('r', { limit: 10 })).conversations.map((c) => c.unread), [0, 0]);
    } finally {
      await dispose();
    }
  });

  it('keeps pages of different queries apart', async () => {
    const { a, dispose } = await twoConnections();
    try {
      for (let i = 0; i < 5; i++) await a.send({ fromUser: i % 2 ? 'odd' : 'even', toUser: 'r', message: `m${i}` });
      const all = await a.inbox('r', { limit: 10 });
      const two = await a.inbox('r', { limit: 2 });
      const fromOdd = await a.inbox('r', { limit: 10, from: 'odd' });
      const after = await a.inbox('r', { limit: 10, after: Number(all.rows[2]![0]) });
      const latest = await a.inbox('r', { limit: 2, before: Infinity });
      assert.equal(all.rows.length, 5);
      assert.deepEqual([two.rows.length, two.more], [2, true]);
      assert.deepEqual(texts(fromOdd).map((m) => m.message), ['m1', 'm3']);
      assert.deepEqual(ids(after), ids(all).slice(3));
      assert.deepEqual(ids(latest), ids(all).slice(3));
      assert.deepEqual(ids(await a.inbox('r', { limit: 10, unreadOnly: true })), ids(all));
      assert.deepEqual(ids(await a.inbox('other', { limit: 10 })), []);
    } finally {
      await dispose();
    }
  });

  it('does not keep pages in the middle of a longer read, only its ends', async () => {
    const { a, dispose } = await twoConnections();
    try {
      for (let i = 0; i < 6; i++) await a.send({ fromUser: 'x', toUser: 'r', message: `m${i}` });
      const first = await a.inbox('r', { limit: 2 });
      const middle = await a.inbox('r', { limit: 2, after: Number(first.rows[1]![0]) });
      const last = await a.inbox('r', { limit: 2, after: Number(middle.rows[1]![0]) });
      assert.deepEqual([first.more, middle.more, last.more], [true, true, false]);
      assert.equal(await a.inbox('r', { limit: 2 }), first, 'the first page is kept');
      assert.notEqual(await a.inbox('r', { limit: 2, after: Number(first.rows[1]![0]) }), middle, 'a middle page is read again');
      assert.equal(await a.inbox('r', { limit: 2, after: Number(middle.rows[1]![0]) }), last, 'the last page is kept');
    } finally {
      await dispose();
    }
  });

  it('holds no more text than its budget, dropping the least recently used page first', () => {
    const page = (n: number) => ({ n });
    const cache = new ReadCache(350);
    cache.observe(1);
    cache.set('a', page(1), 100);
    cache.set('b', page(2), 100);
    cache.set('c', page(3), 100);
    assert.ok(cache.get('a'), 'a is used again, so b is now the oldest');
    cache.set('d', page(4), 100);
    assert.equal(cache.get('b'), undefined);
    assert.ok(cache.get('a') && cache.get('c') && cache.get('d'));
    assert.ok(cache.heldSize <= 350);
    cache.set('huge', page(5), 400);
    assert.equal(cache.get('huge'), undefined, 'a page over the whole budget is not kept');
    cache.observe(2);
    assert.equal(cache.get('a'), undefined, 'a new data version empties the cache');
    assert.equal(cache.heldSize, 0);
  });
});
