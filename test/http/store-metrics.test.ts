/**
 * What /metrics tells an operator about the store, and that it moves when it should: the
 * messages the store holds, its size and its WAL's, the last checkpoint, writes waiting for
 * a commit, and the group commits' size and duration.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { postJson, request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

async function metrics(server: TestServer): Promise<Map<string, number>> {
  const text = (await request(server.url, '/metrics')).text;
  return new Map([...text.matchAll(/^(postbox_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
}

/** Scrapes until `check` holds (the store's figures are kept a moment between counts), with a deadline. */
async function scrapeUntil(server: TestServer, check: (m: Map<string, number>) => boolean, what: string): Promise<Map<string, number>> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const m = await metrics(server);
    if (check(m)) return m;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify([...m].filter(([k]) => k.startsWith('postbox_store')))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('store metrics', () => {
  it('are present, and move with writes, commits and checkpoints', async () => {
    const server = await startTestServer({ POSTBOX_RATE_LIMIT: '0' });
    try {
      const before = await metrics(server);
      for (const name of ['postbox_store_messages', 'postbox_store_bytes', 'postbox_store_wal_bytes', 'postbox_store_oldest_message_age_seconds',
        'postbox_store_last_checkpoint_timestamp_seconds', 'postbox_writes_pending', 'postbox_commit_batch_size_count',
        'postbox_commit_duration_seconds_count', 'postbox_retention_last_run_timestamp_seconds', 'postbox_retention_removed']) {
        assert.ok(before.has(name), `${name} is reported`);
      }
      assert.equal(before.get('postbox_store_messages'), 0);
      assert.equal(before.get('postbox_store_oldest_message_age_seconds'), 0, 'an empty store has no oldest message');
      assert.ok(before.get('postbox_store_bytes')! > 0);

      // Twenty concurrent sends: committed in groups, every one counted in a group.
      const sent = await Promise.all(Array.from({ length: 20 }, (_, i) =>
        postJson(server.url, '/v1/messages', { fromUser: 'a', toUser: 'b', message: `m${i}` })));
      assert.ok(sent.every((r) => r.status === 201));
      const after = await scrapeUntil(server, (m) => m.get('postbox_store_messages') === 20, 'the message count to reach 20');
      const groups = after.get('postbox_commit_batch_size_count')! - before.get('postbox_commit_batch_size_count')!;
      const writes = after.get('postbox_commit_batch_size_sum')! - before.get('postbox_commit_batch_size_sum')!;
      assert.ok(writes >= 20, `every send was in a committed group (${writes})`);
      assert.ok(groups >= 1 && groups <= writes, `${groups} groups`);
      assert.equal(after.get('postbox_commit_duration_seconds_count')! - before.get('postbox_commit_duration_seconds_count')!, groups);
      assert.equal(after.get('postbox_writes_pending'), 0, 'nothing waits once all are answered');
      assert.ok(after.get('postbox_store_oldest_message_age_seconds')! < 3600);
      // The checkpointer folds the WAL back a moment after the writes.
      const folded = await scrapeUntil(server, (m) => m.get('postbox_store_last_checkpoint_timestamp_seconds')! > 0, 'a checkpoint');
      assert.ok(folded.get('postbox_store_last_checkpoint_timestamp_seconds')! * 1000 <= Date.now() + 1000);
    } finally {
      await server.stop();
    }
  });
});
