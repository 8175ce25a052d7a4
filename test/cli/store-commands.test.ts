/**
 * The store commands, run in-process through runCli (as the executable does), each opening
 * the store itself as a separate process would: users before any server exists, a removal
 * that ends a live stream on a running server, migrate, and moving a store from SQLite to
 * PostgreSQL and back without losing anything.
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Message } from '../../src/protocol/types.js';
import { createSchema, describeWithPostgres } from '../helpers/pg.js';
import { request } from '../helpers/http.js';
import { buildTestApp } from '../helpers/app.js';
import { cli, type CliRun } from '../helpers/cli.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { openStream } from '../helpers/sse.js';

/** Runs the command line in this process with exactly `env`, `input` as its standard input. */
function postbox(args: string[], env: Record<string, string> = {}, input?: string): Promise<CliRun> {
  return cli(args, env, input === undefined ? {} : { input });
}

describe('postbox users', () => {
  it('makes the first user before the server exists; the token then works', async () => {
    const dir = await tempDir();
    const db = `sqlite:${join(dir, 'postbox.db')}`;
    try {
      const added = await postbox(['users', 'add', 'alice', '--db', db]);
      assert.equal(added.code, 0, added.stderr);
      const token = added.stdout.trim();
      assert.match(token, /^pbx_[A-Za-z0-9_-]{43}$/);
      assert.match(added.stderr, /shown only this once/);
      const json = await postbox(['users', 'add', 'bob', '--json'], { DATABASE_URL: db });
      assert.equal((JSON.parse(json.stdout) as { id: string }).id, 'bob');
      const list = await postbox(['users', 'list', '--json', '--db', db]);
      assert.deepEqual((JSON.parse(list.stdout) as { users: { id: string }[] }).users.map((u) => u.id), ['alice', 'bob']);

      const server = await buildTestApp({ POSTBOX_AUTH: 'token' }, { dir });
      try {
        const sent = await server.postJson('/v1/messages', { toUser: 'bob', message: 'hi' }, { authorization: `Bearer ${token}` });
        assert.equal(sent.status, 201, sent.text);
        assert.equal(sent.json<Message>().fromUser, 'alice');
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('removes a user: the token stops working and a stream open on a running server ends', async () => {
    const dir = await tempDir();
    const db = `sqlite:${join(dir, 'postbox.db')}`;
    try {
      const token = (await postbox(['users', 'add', 'carol', '--db', db])).stdout.trim();
      // No heartbeat comes within the test: the server hears the other process's commit.
      const server = await startTestServer({ POSTBOX_AUTH: 'token', POSTBOX_HEARTBEAT_SECONDS: '600' }, { dir });
      try {
        const auth = { authorization: `Bearer ${token}` };
        const stream = await openStream(server.url, '/v1/users/carol/stream', auth);
        assert.equal(stream.status, 200);
        const removed = await postbox(['users', 'remove', 'carol', '--db', db]);
        assert.equal(removed.code, 0, removed.stderr);
        // Another handle on the store (as another process has) changed it, unheard by the
        // server's hub: the server sees the file's commit count move, and asks again.
        const [end] = await stream.waitFor(1, 'end', 10_000);
        assert.deepEqual(JSON.parse(end!.data), { reason: 'the token was revoked' });
        await stream.ended;
        assert.equal((await request(server.url, '/v1/users/carol/messages', { headers: auth })).status, 401);
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('delivers what an import beside a running server adds, live: to a stream and a waiting long-poll', async () => {
    const dir = await tempDir();
    const db = `sqlite:${join(dir, 'postbox.db')}`;
    try {
      const server = await startTestServer({ POSTBOX_HEARTBEAT_SECONDS: '600' }, { dir });
      try {
        const first = await request(server.url, '/v1/messages', {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ fromUser: 'amy', toUser: 'zed', message: 'live' }),
        });
        assert.equal(first.status, 201);
        const live = first.json<Message>();
        const stream = await openStream(server.url, `/v1/users/zed/stream?after=${live.id}`);
        const waiting = request(server.url, `/v1/users/zed/messages?after=${live.id}&wait=60`);
        const file = join(dir, 'more.jsonl');
        const imported: Message = { id: String(Number(live.id) + 10), fromUser: 'amy', toUser: 'zed', message: 'imported', sentAt: live.sentAt, readAt: null };
        await writeFile(file, `${JSON.stringify({ type: 'message', message: imported })}\n`);
        const done = await postbox(['import', file, '--db', db]);
        assert.equal(done.code, 0, done.stderr);
        const [event] = await stream.waitFor(1, 'message', 10_000);
        assert.deepEqual(JSON.parse(event!.data), imported);
        const page = (await waiting).json<{ messages: Message[] }>();
        assert.deepEqual(page.messages, [imported]);
        stream.close();
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('says clearly what is wrong, with the right exit code', async () => {
    const dir = await tempDir();
    const db = `sqlite:${join(dir, 'postbox.db')}`;
    try {
      await postbox(['users', 'add', 'dan', '--db', db]);
      const again = await postbox(['users', 'add', 'dan', '--db', db]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /user "dan" already exists/);
      const missing = await postbox(['users', 'remove', 'nobody', '--db', db]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /no user "nobody"/);
      const badId = await postbox(['users', 'add', 'a/b', '--db', db]);
      assert.equal(badId.code, 1);
      assert.match(badId.stderr, /must not contain "\/"/);
      const unknown = await postbox(['users', 'rename', '--db', db]);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /unknown subcommand "rename"/);
      const badDb = await postbox(['users', 'list', '--db', 'mysql://x']);
      assert.equal(badDb.code, 2);
      assert.match(badDb.stderr, /--db must start with sqlite: or postgres:\/\//);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps a removed id reserved, and --purge deletes its messages and frees the id', async () => {
    const dir = await tempDir();
    const db = `sqlite:${join(dir, 'postbox.db')}`;
    try {
      await postbox(['users', 'add', 'gwen', '--db', db]);
      const hank = (await postbox(['users', 'add', 'hank', '--db', db])).stdout.trim();
      const server = await buildTestApp({ POSTBOX_AUTH: 'token' }, { dir });
      try {
        const sent = await server.postJson('/v1/messages', { toUser: 'gwen', message: 'for gwen only' }, { authorization: `Bearer ${hank}` });
        assert.equal(sent.status, 201, sent.text);
      } finally {
        await server.stop();
      }

      const removed = await postbox(['users', 'remove', 'gwen', '--db', db]);
      assert.equal(removed.code, 0, removed.stderr);
      assert.match(removed.stderr, /id stays reserved/);
      const recreate = await postbox(['users', 'add', 'gwen', '--db', db]);
      assert.equal(recreate.code, 1, 'a reserved id is not handed out again');

      const misplaced = await postbox(['users', 'list', '--purge', '--db', db]);
      assert.equal(misplaced.code, 2);
      assert.match(misplaced.stderr, /--purge goes with remove/);

      const purged = await postbox(['users', 'remove', 'gwen', '--purge', '--db', db]);
      assert.equal(purged.code, 0, purged.stderr);
      assert.match(purged.stderr, /every message to or from it/);
      const fresh = (await postbox(['users', 'add', 'gwen', '--db', db])).stdout.trim();
      const again = await buildTestApp({ POSTBOX_AUTH: 'token' }, { dir });
      try {
        const inbox = await again.request('/v1/users/gwen/messages', { headers: { authorization: `Bearer ${fresh}` } });
        assert.equal(inbox.status, 200, inbox.text);
        assert.deepEqual(inbox.json<{ messages: Message[] }>().messages, [], 'the new gwen inherits nothing');
      } finally {
        await again.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('postbox migrate', () => {
  it('applies the migrations once', async () => {
    const dir = await tempDir();
    try {
      const db = `sqlite:${join(dir, 'new', 'postbox.db')}`;
      const first = await postbox(['migrate', '--db', db]);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /^applied migrations 1/);
      assert.equal((await postbox(['migrate', '--db', db])).stdout, 'the schema is up to date\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('postbox import', () => {
  it('refuses a bad record naming its line, after storing the records before it', async () => {
    const dir = await tempDir();
    const db = `sqlite:${join(dir, 'postbox.db')}`;
    try {
      const good = JSON.stringify({ type: 'message', message: { id: '1', fromUser: 'a', toUser: 'b', message: 'ok', sentAt: '2026-01-01T00:00:00.000Z', readAt: null } });
      const bad = JSON.stringify({ type: 'message', message: { id: '2', fromUser: 'a/b', toUser: 'b', message: 'x', sentAt: '2026-01-01T00:00:00.000Z', readAt: null } });
      const run = await postbox(['import', '--db', db], {}, `${good}\n\n${bad}\n`);
      assert.equal(run.code, 1);
      assert.match(run.stderr, /line 3: message\.fromUser must not contain "\/"/);
      const exported = await postbox(['export', '--db', db]);
      assert.equal(exported.stdout.trim().split('\n').length, 1, 'the record before the bad one was stored');
      const notJson = await postbox(['import', '--db', db], {}, '{oops\n');
      assert.match(notJson.stderr, /line 1: record is not valid JSON/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

await describeWithPostgres('moving house: SQLite to PostgreSQL and back', () => {
  it('loses nothing: users, token hashes, messages, read state, ids', async () => {
    const dir = await tempDir();
    const schema = await createSchema();
    const first = `sqlite:${join(dir, 'first.db')}`;
    const last = `sqlite:${join(dir, 'last.db')}`;
    try {
      // A store with users, tokens, read and unread messages across more than one export chunk.
      const token = (await postbox(['users', 'add', 'erin', '--db', first])).stdout.trim();
      await postbox(['users', 'add', 'frank', '--db', first]);
      const server = await buildTestApp({ DATABASE_URL: first, POSTBOX_RATE_LIMIT: '0' }, { dir });
      try {
        let i = 0;
        await Promise.all(Array.from({ length: 16 }, async () => {
          while (i < 2500) {
            const n = i++;
            await server.postJson('/v1/messages', { fromUser: n % 2 ? 'erin' : 'frank', toUser: n % 3 ? 'frank' : 'erin', message: `m${n} ✓` });
          }
        }));
        await server.postJson('/v1/users/frank/read', { upTo: '1000' });
        await server.request('/v1/messages/7', { method: 'DELETE' });
      } finally {
        await server.stop();
      }
      const file = join(dir, 'store.jsonl');
      const out = await postbox(['export', '--out', file, '--db', first]);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stderr, /exported 2 users, 2 tokens, 2499 messages/);

      const toPg = await postbox(['import', file, '--db', schema.url()]);
      assert.equal(toPg.code, 0, toPg.stderr);
      assert.equal(toPg.stdout, 'imported 2 users, 2 tokens, 2499 messages; skipped 0 users, 0 tokens, 0 messages already in the store\n');
      const fromPg = await postbox(['export', '--db', schema.url()]);
      const back = await postbox(['import', '--db', last], {}, fromPg.stdout);
      assert.equal(back.code, 0, back.stderr);
      const final = await postbox(['export', '--db', last]);
      assert.equal(final.stdout, await readFile(file, 'utf8'), 'the store came back exactly as it left');

      // And it works there: the token still acts as its user, read state and ids are kept.
      const server2 = await buildTestApp({ DATABASE_URL: schema.url(), POSTBOX_AUTH: 'token' }, { dir });
      try {
        const inbox = await server2.request('/v1/users/erin/messages?limit=500', { headers: { authorization: `Bearer ${token}` } });
        assert.equal(inbox.status, 200);
        const fresh = await server2.postJson('/v1/messages', { toUser: 'frank', message: 'after the move' }, { authorization: `Bearer ${token}` });
        assert.ok(Number(fresh.json<Message>().id) > 2500, 'new ids continue past the imported ones');
      } finally {
        await server2.stop();
      }
      await writeFile(file, '');
    } finally {
      await schema.drop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
