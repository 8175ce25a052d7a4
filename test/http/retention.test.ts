/**
 * Retention over real HTTP, on SQLite and PostgreSQL alike: messages made old by importing
 * them with old times (no sleeping), a run started by the test, and then what clients see.
 * Old messages go and recent ones stay; conversation rows and unread counts follow; pruned
 * messages send no stream events; a send during a prune is answered (that it commits between
 * two prune writes, never after the whole run, test/storage/retention.test.ts proves, where
 * the order of commits can be seen); the inbox limit keeps each
 * inbox's newest; two instances on one PostgreSQL prune once; and /metrics says so.
 */
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Message } from '../../src/protocol/types.js';
import { cli } from '../helpers/cli.js';
import { postJson, request } from '../helpers/http.js';
import { createSchema, describeWithPostgres } from '../helpers/pg.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { openStream } from '../helpers/sse.js';
import { until } from '../helpers/wait.js';

const DAY = 86_400_000;

/** JSON Lines of messages sent `ageMs` ago, ids from `first` on. */
function oldMessages(first: number, pairs: [from: string, to: string, read: boolean][], ageMs: number): string {
  const sentAt = new Date(Date.now() - ageMs).toISOString();
  return pairs.map(([from, to, read], i) => JSON.stringify({
    type: 'message',
    message: { id: String(first + i), fromUser: from, toUser: to, message: `old ${first + i}`, sentAt, readAt: read ? sentAt : null },
  })).join('\n') + '\n';
}

/** Imports a JSON Lines text through the real command, into the store a running server uses. */
async function importText(dir: string, db: string, text: string): Promise<void> {
  const file = join(dir, `import-${Math.random().toString(36).slice(2)}.jsonl`);
  await writeFile(file, text);
  const run = await cli(['import', file, '--db', db]);
  assert.equal(run.code, 0, run.stderr);
}

async function conversations(server: TestServer, user: string): Promise<{ peer: string; unread: number; lastMessage: Message }[]> {
  return (await request(server.url, `/v1/users/${user}/conversations`)).json<{ conversations: { peer: string; unread: number; lastMessage: Message }[] }>().conversations;
}

async function metric(server: TestServer, name: string): Promise<number | undefined> {
  const text = (await request(server.url, '/metrics')).text;
  const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

/** The retention cases, against one backend. */
function retentionSuite(backend: () => Promise<{ db: string; dir: string; done: () => Promise<void> }>): void {
  it('removes old messages and keeps recent ones; conversations, unread counts and streams follow', async () => {
    const { db, dir, done } = await backend();
    const server = await startTestServer({ DATABASE_URL: db, POSTBOX_RETENTION: '1d', POSTBOX_RATE_LIMIT: '0' }, { dir });
    try {
      assert.ok(server.retention, 'retention runs when POSTBOX_RETENTION is set');
      // Old: alice↔bob (two unread for bob, one read), carol→bob (unread). Many more old ones
      // for dave, so that the run takes several batches.
      await importText(dir, db, oldMessages(1, [['alice', 'bob', false], ['alice', 'bob', false], ['alice', 'bob', true], ['bob', 'alice', false], ['carol', 'bob', false]], 2 * DAY));
      const bulk = Array.from({ length: 900 }, (): [string, string, boolean] => ['eve', 'dave', false]);
      await importText(dir, db, oldMessages(100, bulk, 3 * DAY));
      // Recent: sent now, over HTTP.
      const recent: string[] = [];
      for (const text of ['new 1', 'new 2']) {
        recent.push((await postJson(server.url, '/v1/messages', { fromUser: 'alice', toUser: 'bob', message: text })).json<Message>().id);
      }
      const before = await conversations(server, 'bob');
      assert.deepEqual(before.map((c) => [c.peer, c.unread]).sort(), [['alice', 4], ['carol', 1]]);
      assert.equal(await metric(server, 'postbox_store_messages'), 907);
      assert.ok((await metric(server, 'postbox_store_oldest_message_age_seconds'))! >= 3 * 86_400 - 60);
      assert.equal(await metric(server, 'postbox_retention_last_run_timestamp_seconds'), 0, 'no run yet');

      const stream = await openStream(server.url, '/v1/users/bob/stream?after=0');
      assert.equal(stream.status, 200);
      await stream.waitFor(6, 'message', 20_000);
      const seen = stream.events.length;

      // A send issued while the prune runs is answered, and before the prune has finished. This
      // alone would pass with one prune write of everything (the send could land first): the
      // order of commits is proved in test/storage/retention.test.ts.
      let pruneDone = false;
      const run = server.retention.runOnce().finally(() => (pruneDone = true));
      const during = await postJson(server.url, '/v1/messages', { fromUser: 'dave', toUser: 'bob', message: 'during' });
      assert.equal(during.status, 201);
      assert.equal(pruneDone, false, 'the send did not wait for the whole prune');
      const result = await run;
      assert.ok(result, 'this instance claimed the run');
      assert.equal(result.removed, 905);

      for (const id of ['1', '3', '5', '100', '999']) assert.equal((await request(server.url, `/v1/messages/${id}`)).status, 404, `old ${id} is gone`);
      for (const id of recent) assert.equal((await request(server.url, `/v1/messages/${id}`)).status, 200, `recent ${id} stays`);
      const inbox = (await request(server.url, '/v1/users/bob/messages')).json<{ messages: Message[] }>().messages;
      assert.deepEqual(inbox.map((m) => m.message), ['new 1', 'new 2', 'during']);
      const after = await conversations(server, 'bob');
      assert.deepEqual(after.map((c) => [c.peer, c.unread, c.lastMessage.message]).sort(), [['alice', 2, 'new 2'], ['dave', 1, 'during']],
        'carol\'s conversation went with its last message; alice\'s unread count follows');
      assert.deepEqual((await conversations(server, 'dave')).map((c) => c.peer), ['bob'], 'eve\'s old conversation with dave is gone');
      assert.deepEqual(await conversations(server, 'eve'), []);

      // The stream heard the send, and nothing of the prune.
      await postJson(server.url, '/v1/messages', { fromUser: 'alice', toUser: 'bob', message: 'marker' });
      await until(() => stream.events.some((e) => e.data.includes('"marker"')), 'the marker on the stream');
      const types = stream.events.slice(seen).map((e) => e.event);
      assert.deepEqual(types, ['message', 'message'], 'the send during the prune and the marker; no event for pruned messages');
      stream.close();

      assert.equal(await metric(server, 'postbox_retention_last_run_removed'), 905);
      assert.ok((await metric(server, 'postbox_retention_last_run_timestamp_seconds'))! > 0);
      assert.ok((await metric(server, 'postbox_retention_last_run_duration_seconds'))! >= 0);
      assert.equal(await metric(server, 'postbox_retention_removed'), 905);
      // The count is kept for a moment between scrapes: asked again until it moves, with a deadline.
      let messages: number | undefined;
      const deadline = Date.now() + 20_000;
      while ((messages = await metric(server, 'postbox_store_messages')) !== 4 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(messages, 4, 'the store\'s message count moved');
      assert.ok((await metric(server, 'postbox_store_oldest_message_age_seconds'))! < 3600);
    } finally {
      await server.stop();
      await done();
    }
  });

  it('keeps only the newest messages of each inbox with POSTBOX_INBOX_LIMIT', async () => {
    const { db, dir, done } = await backend();
    const server = await startTestServer({ DATABASE_URL: db, POSTBOX_INBOX_LIMIT: '3', POSTBOX_RATE_LIMIT: '0' }, { dir });
    try {
      for (let i = 1; i <= 6; i++) await postJson(server.url, '/v1/messages', { fromUser: i % 2 ? 'x' : 'y', toUser: 'bob', message: `to bob ${i}` });
      for (let i = 1; i <= 2; i++) await postJson(server.url, '/v1/messages', { fromUser: 'x', toUser: 'amy', message: `to amy ${i}` });
      const result = await server.retention!.runOnce();
      assert.equal(result?.removed, 3);
      const bob = (await request(server.url, '/v1/users/bob/messages')).json<{ messages: Message[] }>().messages;
      assert.deepEqual(bob.map((m) => m.message), ['to bob 4', 'to bob 5', 'to bob 6']);
      const amy = (await request(server.url, '/v1/users/amy/messages')).json<{ messages: Message[] }>().messages;
      assert.equal(amy.length, 2, 'an inbox under the limit keeps everything');
      const conv = await conversations(server, 'bob');
      assert.deepEqual(conv.map((c) => [c.peer, c.unread]).sort(), [['x', 1], ['y', 2]]);
      // x's own view of its conversation with bob follows too.
      assert.deepEqual((await request(server.url, '/v1/users/x/conversations/bob')).json<{ messages: Message[] }>().messages.map((m) => m.message), ['to bob 5']);
    } finally {
      await server.stop();
      await done();
    }
  });

  it('answers a retry of a pruned message\'s idempotency key with the first answer, and stores nothing twice', async () => {
    const { db, dir, done } = await backend();
    const server = await startTestServer({ DATABASE_URL: db, POSTBOX_INBOX_LIMIT: '1', POSTBOX_RATE_LIMIT: '0' }, { dir });
    try {
      const body = { fromUser: 'shop', toUser: 'kim', message: 'order #7 shipped' };
      const first = await postJson(server.url, '/v1/messages', body, { 'idempotency-key': 'ship-7' });
      assert.equal(first.status, 201);
      const original = first.json<Message>();
      await postJson(server.url, '/v1/messages', { fromUser: 'shop', toUser: 'kim', message: 'newer' });
      assert.equal((await server.retention!.runOnce())?.removed, 1);
      assert.equal((await request(server.url, `/v1/messages/${original.id}`)).status, 404, 'the keyed message was pruned');

      const retry = await postJson(server.url, '/v1/messages', body, { 'idempotency-key': 'ship-7' });
      assert.equal(retry.status, 201);
      assert.equal(retry.headers['idempotent-replayed'], 'true');
      assert.deepEqual(retry.json<Message>(), original, 'the first answer, byte for byte: its id, sentAt and readAt as then');
      assert.equal(retry.headers.location, `/v1/messages/${original.id}`);
      const inbox = (await request(server.url, '/v1/users/kim/messages')).json<{ messages: Message[] }>().messages;
      assert.deepEqual(inbox.map((m) => m.message), ['newer'], 'the retry stored nothing');
      const other = await postJson(server.url, '/v1/messages', { ...body, message: 'something else' }, { 'idempotency-key': 'ship-7' });
      assert.equal(other.status, 422, 'the key still refuses a different message');
    } finally {
      await server.stop();
      await done();
    }
  });
}

describe('retention on SQLite', () => {
  retentionSuite(async () => {
    const dir = await tempDir();
    return { db: `sqlite:${join(dir, 'postbox.db')}`, dir, done: () => rm(dir, { recursive: true, force: true }) };
  });

  it('is off by default', async () => {
    const server = await startTestServer();
    try {
      assert.equal(server.retention, undefined);
      assert.equal(await metric(server, 'postbox_retention_last_run_timestamp_seconds'), 0);
      assert.equal(await metric(server, 'postbox_retention_removed'), 0);
    } finally {
      await server.stop();
    }
  });
});

await describeWithPostgres('retention on PostgreSQL', () => {
  const pgBackend = async () => {
    const dir = await tempDir();
    const schema = await createSchema();
    return {
      db: schema.url(), dir,
      done: async () => {
        await schema.drop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  };
  retentionSuite(pgBackend);

  it('two instances on one database prune once', async () => {
    const { db, dir, done } = await pgBackend();
    const a = await startTestServer({ DATABASE_URL: db, POSTBOX_RETENTION: '1d' }, { dir });
    const b = await startTestServer({ DATABASE_URL: db, POSTBOX_RETENTION: '1d' }, { dir });
    try {
      await importText(dir, db, oldMessages(1, Array.from({ length: 450 }, (): [string, string, boolean] => ['p', 'q', false]), 2 * DAY));
      const runs = await Promise.all([a.retention!.runOnce(), b.retention!.runOnce()]);
      const ran = runs.filter((r) => r !== undefined);
      assert.equal(ran.length, 1, 'exactly one instance ran');
      assert.equal(ran[0]!.removed, 450);
      // And the one that did not run does not run again this period either.
      assert.equal(await (runs[0] ? b : a).retention!.runOnce(), undefined);
      assert.deepEqual((await request(a.url, '/v1/users/q/messages')).json<{ messages: Message[] }>().messages, []);
    } finally {
      await a.stop();
      await b.stop();
      await done();
    }
  });
});
