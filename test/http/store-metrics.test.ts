/**
 * What /metrics tells an operator about the store, and that it moves when it should: the
 * messages the store holds, its size and its WAL's, the last checkpoint, writes waiting for
 * a commit, the group commits' size and duration, and the WAL fsyncs' duration; and on
 * PostgreSQL, that the figures it has no equivalent of are left out rather than reported as
 * 0, and that every instance reports the cluster's last retention run.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { postJson, request } from '../helpers/http.js';
import { createSchema, describeWithPostgres } from '../helpers/pg.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';

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
      const answeredAt = Date.now();
      const after = await scrapeUntil(server, (m) => m.get('postbox_store_messages') === 20, 'the message count to reach 20');
      const groups = after.get('postbox_commit_batch_size_count')! - before.get('postbox_commit_batch_size_count')!;
      const writes = after.get('postbox_commit_batch_size_sum')! - before.get('postbox_commit_batch_size_sum')!;
      assert.ok(writes >= 20, `every send was in a committed group (${writes})`);
      assert.ok(groups >= 1 && groups <= writes, `${groups} groups`);
      assert.equal(after.get('postbox_commit_duration_seconds_count')! - before.get('postbox_commit_duration_seconds_count')!, groups);
      assert.equal(after.get('postbox_writes_pending'), 0, 'nothing waits once all are answered');
      assert.ok(after.get('postbox_store_oldest_message_age_seconds')! < 3600);
      // The checkpointer folds the WAL back a moment after the writes: the figure moves past
      // what it read before them (the store's creation may already have been folded back),
      // to a checkpoint made after the last send was answered, which had their pages to copy.
      const checkpoint = 'postbox_store_last_checkpoint_timestamp_seconds';
      const folded = await scrapeUntil(server, (m) => m.get(checkpoint)! > Math.max(before.get(checkpoint)!, answeredAt / 1000),
        'a checkpoint after the sends');
      assert.ok(folded.get(checkpoint)! * 1000 <= Date.now() + 1000);
    } finally {
      await server.stop();
    }
  });

  it('counts writes waiting for a commit while another connection holds the write lock', async () => {
    const server = await startTestServer({ POSTBOX_RATE_LIMIT: '0' });
    // A real cause of waiting: another process's transaction (here a connection of this one) holds SQLite's write lock.
    const other = new Database(join(server.dir, 'postbox.db'));
    try {
      other.exec('BEGIN IMMEDIATE');
      const send = postJson(server.url, '/v1/messages', { fromUser: 'a', toUser: 'b', message: 'waits' });
      let pending: number | undefined;
      try {
        pending = (await scrapeUntil(server, (m) => m.get('postbox_writes_pending')! > 0, 'a write to wait for the lock')).get('postbox_writes_pending');
      } finally {
        other.exec('COMMIT');
      }
      assert.ok(pending! >= 1, 'the send waits, counted, while the lock is held elsewhere');
      assert.equal((await send).status, 201, 'the write commits once the lock is let go');
      assert.equal((await metrics(server)).get('postbox_writes_pending'), 0);
    } finally {
      other.close();
      await server.stop();
    }
  });

  it('WAL and store bytes grow with writes, and each WAL fsync is timed', async () => {
    const server = await startTestServer({ POSTBOX_RATE_LIMIT: '0' });
    try {
      const before = await metrics(server);
      assert.ok(before.has('postbox_fsync_duration_seconds_count'), 'the fsync histogram is reported');
      const body = 'x'.repeat(16 * 1024);
      for (let i = 0; i < 40; i++) {
        assert.equal((await postJson(server.url, '/v1/messages', { fromUser: 'a', toUser: 'b', message: `${i} ${body}` })).status, 201);
      }
      const grown = await scrapeUntil(server, (m) => m.get('postbox_store_wal_bytes')! > before.get('postbox_store_wal_bytes')! + 40 * 16 * 1024,
        'the WAL to hold the writes');
      const fsyncs = grown.get('postbox_fsync_duration_seconds_count')! - before.get('postbox_fsync_duration_seconds_count')!;
      assert.ok(fsyncs >= 1, `the sends' fsyncs were timed (${fsyncs})`);
      assert.ok(grown.get('postbox_fsync_duration_seconds_sum')! > before.get('postbox_fsync_duration_seconds_sum')!);
      // Once the checkpointer folds the WAL back, the database file holds them.
      await scrapeUntil(server, (m) => m.get('postbox_store_bytes')! > before.get('postbox_store_bytes')! + 40 * 16 * 1024, 'the store file to grow');
    } finally {
      await server.stop();
    }
  });
});

await describeWithPostgres('store metrics on PostgreSQL', () => {
  it('report what PostgreSQL has, leave out the SQLite-only figures, and show the cluster\'s last retention run on every instance', async () => {
    const schema = await createSchema();
    const dir = await tempDir();
    const env = { DATABASE_URL: schema.url(), POSTBOX_RETENTION: '1d', POSTBOX_RATE_LIMIT: '0' };
    const a = await startTestServer(env, { dir });
    const b = await startTestServer(env, { dir });
    try {
      const before = await metrics(b);
      for (const name of ['postbox_store_messages', 'postbox_store_bytes', 'postbox_store_oldest_message_age_seconds', 'postbox_writes_pending',
        'postbox_commit_batch_size_count', 'postbox_commit_duration_seconds_count', 'postbox_retention_last_run_timestamp_seconds']) {
        assert.ok(before.has(name), `${name} is reported`);
      }
      for (const name of ['postbox_store_wal_bytes', 'postbox_store_last_checkpoint_timestamp_seconds', 'postbox_fsync_duration_seconds_count']) {
        assert.ok(!before.has(name), `${name} is left out: PostgreSQL's WAL, checkpoints and fsyncs are the server's`);
      }
      assert.ok(before.get('postbox_store_bytes')! > 0);
      assert.equal(before.get('postbox_retention_last_run_timestamp_seconds'), 0, 'no run yet');
      assert.equal((await postJson(b.url, '/v1/messages', { fromUser: 'a', toUser: 'b', message: 'counted' })).status, 201);
      const after = await scrapeUntil(b, (m) => m.get('postbox_store_messages') === 1, 'the message count to reach 1');
      assert.ok(after.get('postbox_commit_duration_seconds_count')! > before.get('postbox_commit_duration_seconds_count')!);

      const started = Date.now();
      assert.ok(await a.retention!.runOnce(), 'instance a ran retention');
      const seen = await scrapeUntil(b, (m) => m.get('postbox_retention_last_run_timestamp_seconds')! > 0, 'b to report a\'s run');
      assert.equal(b.retention!.last, undefined, 'b never ran itself');
      assert.ok(Math.abs(seen.get('postbox_retention_last_run_timestamp_seconds')! * 1000 - started) < 60_000);
    } finally {
      await a.stop();
      await b.stop();
      await schema.drop();
    }
  });
});
