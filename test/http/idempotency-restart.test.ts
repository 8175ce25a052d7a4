/**
 * An idempotency key is stored in the same transaction as its message, so a client whose
 * answer was lost to a crash can retry after the restart and get the first result.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ANYONE } from '../../src/domain/access.js';
import { MessageService } from '../../src/domain/messages.js';
import type { Message } from '../../src/protocol/types.js';
import { Hub } from '../../src/realtime/hub.js';
import { openSqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import { buildTestApp, tempDir } from '../helpers/app.js';

describe('idempotency across a restart', () => {
  it('finds the key of a send whose answer never reached the client', async () => {
    const dir = await tempDir();
    try {
      // The send commits through the real write path; its answer is then "lost" with the process.
      const store = openSqliteStorage({ path: join(dir, 'postbox.db'), durability: 'fsync' });
      const before = await new MessageService(store, new Hub(), { maxMessageBytes: 65536 })
        .send(ANYONE, { fromUser: 'client', toUser: 'shop', message: 'order #42' }, 'order-42');
      await store.close();

      const server = await buildTestApp({}, { dir });
      try {
        const retry = await server.postJson('/v1/messages', { fromUser: 'client', toUser: 'shop', message: 'order #42' },
          { 'idempotency-key': 'order-42' });
        assert.equal(retry.status, 201);
        assert.deepEqual(retry.json<Message>(), before.message);
        assert.equal(retry.headers['idempotent-replayed'], 'true');
        const inbox = (await server.request('/get-messages/shop')).json<Message[]>();
        assert.equal(inbox.length, 1, 'the retry stored nothing new');
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
