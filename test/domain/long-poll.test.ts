/**
 * Long-poll waits on the hub, not on storage: a real SQLite store is wrapped to count
 * its inbox reads (the store itself is real; only the counting is added).
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ANYONE } from '../../src/domain/access.js';
import { MessageService } from '../../src/domain/messages.js';
import { Hub } from '../../src/realtime/hub.js';
import { openSqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import type { Storage } from '../../src/storage/storage.js';
import { tempDir } from '../helpers/app.js';
import { until } from '../helpers/wait.js';

async function setup() {
  const dir = await tempDir();
  const real = openSqliteStorage({ path: join(dir, 'p.db'), durability: 'relaxed' });
  const hub = new Hub();
  real.onEvents((e) => hub.publish(e));
  let inboxReads = 0;
  const counted: Storage = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'inbox') {
        return (...args: Parameters<Storage['inbox']>) => {
          inboxReads++;
          return target.inbox(...args);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const service = new MessageService(counted, hub, { maxMessageBytes: 1000 });
  return {
    service, hub,
    reads: () => inboxReads,
    close: async () => {
      await real.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('long-poll', () => {
  it('reads storage once before waiting and once at the deadline, not in a loop', async () => {
    const t = await setup();
    try {
      const page = await t.service.inbox(ANYONE, 'me', { wait: 1.5 });
      assert.deepEqual(page, { rows: [], next: null });
      assert.equal(t.reads(), 2);
    } finally {
      await t.close();
    }
  });

  it('wakes on a matching message and reads once more; a non-matching one costs one read', async () => {
    const t = await setup();
    try {
      const polling = t.service.inbox(ANYONE, 'me', { from: 'friend', wait: 30 });
      await until(() => t.hub.listeners > 0, 'the poll to watch');
      await t.service.send(ANYONE, { fromUser: 'stranger', toUser: 'me', message: 'not for the filter' });
      await t.service.send(ANYONE, { fromUser: 'friend', toUser: 'me', message: 'this one' });
      const page = await polling;
      assert.deepEqual(page.rows.map(([, json]) => (JSON.parse(json) as { message: string }).message), ['this one']);
      assert.ok(t.reads() >= 2 && t.reads() <= 3, `read ${t.reads()} times`);
      assert.equal(t.hub.listeners, 0);
    } finally {
      await t.close();
    }
  });

  it('is not woken by what the user sends (the hub tells senders too, for their streams)', async () => {
    const t = await setup();
    try {
      const polling = t.service.inbox(ANYONE, 'me', { wait: 30 });
      await until(() => t.hub.listeners > 0, 'the poll to watch');
      for (const text of ['out 1', 'out 2']) await t.service.send(ANYONE, { fromUser: 'me', toUser: 'friend', message: text });
      await t.service.send(ANYONE, { fromUser: 'friend', toUser: 'me', message: 'in' });
      const page = await polling;
      assert.deepEqual(page.rows.map(([, json]) => (JSON.parse(json) as { message: string }).message), ['in']);
      assert.equal(t.reads(), 2, 'one read before waiting, one after the message to the user');
    } finally {
      await t.close();
    }
  });
});
