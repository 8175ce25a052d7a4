/**
 * SQLite commits on the main thread and is made durable by a WAL fsync off the event loop.
 * With that fsync held back, nothing of a commit may show: its writer is not answered, its
 * listeners are not told, and no read sees it. Released, all three happen.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openSqliteStorage, type SqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import type { StoreEvent } from '../../src/storage/storage.js';
import type { Fsync } from '../../src/storage/sqlite/wal-sync.js';
import { tempDir } from '../helpers/server.js';
import { objects } from './storage.contract.js';

/** An fsync that waits until the test lets it go. */
function heldFsync(): { fsync: Fsync; calls: () => number; release: () => void } {
  const waiting: (() => void)[] = [];
  let calls = 0;
  return {
    fsync: (_fd, done) => {
      calls++;
      waiting.push(() => done(null));
    },
    calls: () => calls,
    release: () => {
      for (const go of waiting.splice(0)) go();
    },
  };
}

/** Lets every ready callback and timer of this turn run, so a promise that could settle has. */
const turn = () => new Promise((r) => setTimeout(r, 20));

async function withStore(fsync: Fsync | undefined, fn: (s: SqliteStorage) => Promise<void>, durability: 'fsync' | 'relaxed' = 'fsync') {
  const dir = await tempDir('postbox-durability-');
  const s = openSqliteStorage({ path: join(dir, 'p.db'), durability, ...(fsync ? { fsync } : {}) });
  try {
    await fn(s);
  } finally {
    await s.close();
    await rm(dir, { recursive: true, force: true });
  }
}

describe('SQLite durability: nothing shows before the WAL fsync that covers it', () => {
  it('answers no writer, tells no listener and shows no reader a commit until its fsync completes', async () => {
    const held = heldFsync();
    await withStore(held.fsync, async (s) => {
      const heard: StoreEvent[] = [];
      s.onEvents((events) => heard.push(...events));
      let answered = false;
      const sent = s.send({ fromUser: 'a', toUser: 'b', message: 'hello' }).then((out) => {
        answered = true;
        return out;
      });
      await turn();
      assert.equal(held.calls(), 1, 'the fsync started');
      let read = false;
      const page = s.inbox('b', { limit: 10 }).then((p) => {
        read = true;
        return p;
      });
      await turn();
      assert.equal(answered, false, 'the writer waits for the fsync');
      assert.equal(heard.length, 0, 'listeners wait for the fsync');
      assert.equal(read, false, 'a reader waits for the fsync rather than see the commit');
      held.release();
      const out = await sent;
      assert.equal(out.kind, 'stored');
      assert.deepEqual(heard.map((e) => e.type), ['message']);
      assert.deepEqual(objects(await page).messages.map((m) => m.message), ['hello']);
    });
  });

  it('holds a new batch while a reader waits, so the reader sees only what is durable', async () => {
    const held = heldFsync();
    await withStore(held.fsync, async (s) => {
      const first = s.send({ fromUser: 'a', toUser: 'b', message: 'first' });
      await turn();
      const page = s.inbox('b', { limit: 10 });
      const second = s.send({ fromUser: 'a', toUser: 'b', message: 'second' });
      await turn();
      assert.equal(held.calls(), 1, 'the second batch has not committed: no fsync for it yet');
      held.release();
      await first;
      assert.deepEqual(objects(await page).messages.map((m) => m.message), ['first'], 'the reader saw only the durable commit');
      await turn();
      held.release();
      await second;
      assert.deepEqual(objects(await s.inbox('b', { limit: 10 })).messages.map((m) => m.message), ['first', 'second']);
    });
  });

  it('commits what arrives while an fsync is in flight as one batch when it ends, covered by the next', async () => {
    const held = heldFsync();
    await withStore(held.fsync, async (s) => {
      const batches: number[] = [];
      s.onCommit((size) => batches.push(size));
      const first = s.send({ fromUser: 'a', toUser: 'b', message: '0' });
      await turn();
      const more = Array.from({ length: 5 }, (_, i) => s.send({ fromUser: 'a', toUser: 'b', message: String(i + 1) }));
      await turn();
      assert.equal(held.calls(), 1, 'one fsync in flight at a time');
      assert.deepEqual(batches, [1], 'the writes that came meanwhile wait: a commit now would wait for the next fsync anyway');
      held.release();
      await first;
      await turn();
      assert.deepEqual(batches, [1, 5], 'they commit together as the fsync ends');
      assert.equal(held.calls(), 2, 'and share the next fsync');
      held.release();
      assert.deepEqual((await Promise.all(more)).map((o) => o.kind === 'stored' && o.message.message), ['1', '2', '3', '4', '5']);
    });
  });

  it('in relaxed durability answers at the commit and never fsyncs', async () => {
    const held = heldFsync();
    await withStore(held.fsync, async (s) => {
      const out = await s.send({ fromUser: 'a', toUser: 'b', message: 'quick' });
      assert.equal(out.kind, 'stored');
      assert.equal(objects(await s.inbox('b', { limit: 1 })).messages.length, 1);
      assert.equal(held.calls(), 0);
    }, 'relaxed');
  });
});
