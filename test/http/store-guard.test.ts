/**
 * The store watches its own file, readiness says whether a write could commit, damage is a
 * 500 (not a retryable 503), and `postbox check` finds it. SQLite files, real and damaged.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, open, readFile, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { storeCommands } from '../../src/cli/store-commands.js';
import { StoreInUseError } from '../../src/storage/sqlite/serve-lock.js';
import type { Problem } from '../../src/protocol/types.js';
import { cli } from '../helpers/cli.js';
import { damageMessageLeaves, overwritePages, storePages } from '../helpers/damage.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

async function status(server: TestServer, url: string): Promise<number> {
  return (await server.app.inject({ method: 'GET', url })).statusCode;
}

async function send(server: TestServer, message = 'hi') {
  return server.app.inject({ method: 'POST', url: '/v1/messages', payload: { fromUser: 'a', toUser: 'b', message } });
}

/** Waits until /readyz gives `want`, polling with a deadline. */
async function readyBecomes(server: TestServer, want: number): Promise<void> {
  let last = 0;
  const deadline = Date.now() + 20_000;
  while ((last = await status(server, '/readyz')) !== want) {
    if (Date.now() > deadline) throw new Error(`/readyz stayed ${last}, wanted ${want}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs `postbox check` in-process; answers its exit code and output. */
async function check(db: string): Promise<{ code: number; out: string }> {
  let out = '';
  const io = {
    stdout: (t: string) => (out += t), stderr: (t: string) => (out += t),
    output: new PassThrough(), input: Readable.from([]),
  };
  const code = await storeCommands().check!.run(['--db', db], { env: {}, io });
  return { code, out };
}

/** An export line of message `id` from a to b. */
function record(id: number, message: string): string {
  return JSON.stringify({ type: 'message', message: { id: String(id), fromUser: 'a', toUser: 'b', message, sentAt: '2026-01-02T00:00:00.000Z', readAt: null } });
}

/** Fills a new store in `dir` (postbox.db) with export lines, through the real import. */
async function seed(dir: string, lines: string[]): Promise<void> {
  const run = await cli(['import', '--db', `sqlite:${join(dir, 'postbox.db')}`], {}, { input: lines.join('\n') + '\n' });
  assert.equal(run.code, 0, run.stderr);
}

describe('the store watches its own file', () => {
  it('refuses writes, fails readiness and logs one error once the file is deleted', async () => {
    const server = await startTestServer();
    try {
      assert.equal((await send(server)).statusCode, 201);
      await readyBecomes(server, 200);
      await rm(server.dir, { recursive: true, force: true });
      await readyBecomes(server, 503);
      const res = await send(server, 'into the void');
      assert.equal(res.statusCode, 503);
      const problem = res.json<Problem>();
      assert.equal(problem.type, '/problems/storage_unavailable');
      assert.match(problem.detail, /deleted/);
      assert.ok(Number(res.headers['retry-after']) >= 1);
      // Several more probes and writes, still one error in the log.
      await send(server);
      await status(server, '/readyz');
      await until(() => server.logs.some((l) => l.level === 50 && /deleted/.test(String(l.msg))), 'the error in the log');
      assert.equal(server.logs.filter((l) => l.level === 50 && /deleted/.test(String(l.msg))).length, 1, 'one error, not one per request');
    } finally {
      await server.close().catch(() => undefined);
      await rm(server.dir, { recursive: true, force: true });
    }
  });

  it('refuses every send that starts after the file was deleted, without waiting for the watch', async () => {
    const server = await startTestServer();
    try {
      assert.equal((await send(server)).statusCode, 201);
      await rm(server.dir, { recursive: true, force: true });
      // All of them start after the rm returned, in one burst (one or a few batches), with no
      // wait for the once-a-second watch or /readyz: none may be answered 201 and then lost.
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => send(server, `after the rm ${i}`)));
      assert.deepEqual([...new Set(answers.map((r) => r.statusCode))], [503], answers.map((r) => r.statusCode).join(' '));
      assert.match(answers[0]!.json<Problem>().detail, /deleted/);
      assert.equal(await status(server, '/readyz'), 503);
      assert.equal(server.logs.filter((l) => l.level === 50 && /deleted/.test(String(l.msg))).length, 1, 'one error, not one per batch');
    } finally {
      await server.close().catch(() => undefined);
      await rm(server.dir, { recursive: true, force: true });
    }
  });

  it('refuses writes once the file is replaced by another', async () => {
    const server = await startTestServer();
    try {
      assert.equal((await send(server)).statusCode, 201);
      const path = join(server.dir, 'postbox.db');
      await copyFile(path, `${path}.copy`);
      await rename(`${path}.copy`, path);
      await readyBecomes(server, 503);
      const res = await send(server);
      assert.equal(res.statusCode, 503);
      assert.match(res.json<Problem>().detail, /replaced/);
    } finally {
      await server.stop().catch(() => undefined);
    }
  });
});

describe('a store reached through a symlink', () => {
  it('takes sends (its WAL is the real file\'s), and a second server through the link, or on the real path, is refused', async () => {
    const dir = await tempDir();
    try {
      await mkdir(join(dir, 'data'));
      const real = join(dir, 'data', 'postbox.db');
      const first = await startTestServer({ DATABASE_URL: `sqlite:${real}` }, { dir });
      assert.equal((await send(first)).statusCode, 201);
      await first.stop();
      await symlink(real, join(dir, 'alias.db'));

      const server = await startTestServer({ DATABASE_URL: `sqlite:${join(dir, 'alias.db')}`, POSTBOX_DURABILITY: 'fsync' }, { dir });
      try {
        for (let i = 0; i < 3; i++) assert.equal((await send(server, `via the link ${i}`)).statusCode, 201);
        assert.equal(await status(server, '/readyz'), 200);
        const again = await server.app.inject({ method: 'GET', url: '/v1/users/b/messages' });
        assert.equal(again.json<{ messages: unknown[] }>().messages.length, 4);
        await assert.rejects(startTestServer({ DATABASE_URL: `sqlite:${join(dir, 'alias.db')}` }, { dir }), StoreInUseError);
        await assert.rejects(startTestServer({ DATABASE_URL: `sqlite:${real}` }, { dir }), StoreInUseError);
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('readiness', () => {
  it('answers 503 within its budget while another process holds the write lock, and 200 once it lets go', async () => {
    const server = await startTestServer();
    const other = new Database(join(server.dir, 'postbox.db'));
    try {
      await readyBecomes(server, 200);
      other.exec('BEGIN IMMEDIATE');
      const res = await server.app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(res.statusCode, 503);
      assert.match(res.json<Problem>().detail, /did not answer|locked/);
      other.exec('ROLLBACK');
      await readyBecomes(server, 200);
    } finally {
      other.close();
      await server.stop();
    }
  });
});

describe('a damaged database', () => {
  it('answers a read that hits the damage with a 500 logged as damage, and postbox check exits 1', async () => {
    const dir = await tempDir();
    const db = `sqlite:${join(dir, 'postbox.db')}`;
    try {
      const first = await startTestServer({}, { dir });
      for (let i = 0; i < 200; i++) {
        const res = await first.app.inject({ method: 'POST', url: '/v1/messages', payload: { fromUser: 'a', toUser: 'b', message: `${i} ${'x'.repeat(2000)}` } });
        assert.equal(res.statusCode, 201);
      }
      await first.stop();
      assert.equal((await check(db)).code, 0, 'whole before the damage');

      // Overwrite a few of the messages table's leaf pages in the middle of its range (not
      // the header, the schema, or the newest message, which start-up reads).
      const leaves = await damageMessageLeaves(join(dir, 'postbox.db'));
      assert.ok(leaves > 10, `the messages span many pages (${leaves})`);

      const checked = await check(db);
      assert.equal(checked.code, 1, checked.out);
      assert.match(checked.out, /problem: integrity/);

      const server = await startTestServer({}, { dir });
      try {
        // The look at start found it: said once in the log, and not ready, before any request met it.
        assert.ok(server.logs.some((l) => l.level === 50 && /damaged.*postbox check/.test(String(l.msg))), 'the start says the store is damaged');
        const ready = await server.app.inject({ method: 'GET', url: '/readyz' });
        assert.equal(ready.statusCode, 503);
        assert.match(ready.json<Problem>().detail, /damaged/);
        const res = await server.app.inject({ method: 'GET', url: '/get-messages/b' });
        const v1 = await server.app.inject({ method: 'GET', url: '/v1/users/b/messages?limit=500' });
        const damaged = [res, v1].filter((r) => r.statusCode >= 500);
        assert.ok(damaged.length > 0, 'a read over the damaged pages fails');
        for (const r of damaged) {
          // The legacy inbox streams: damage found mid-stream can only cut the answer short.
          if (r.headers['content-type']?.toString().includes('problem')) {
            assert.equal(r.statusCode, 500);
            assert.equal(r.json<Problem>().type, '/problems/internal');
            assert.equal(r.headers['retry-after'], undefined, 'not a retryable outage');
          }
        }
        assert.ok(v1.statusCode === 500, `the v1 page is a 500, got ${v1.statusCode}`);
        assert.ok(server.logs.some((l) => l.level === 50 && /damaged/.test(String(l.msg))), 'logged as damage');
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('answers a send that hits damage with a 500, not a retryable 503, and readiness says the store is damaged', async () => {
    const dir = await tempDir();
    try {
      const first = await startTestServer({}, { dir });
      for (let i = 0; i < 20; i++) assert.equal((await send(first, `m${i}`)).statusCode, 201);
      await first.stop();
      // Every send updates the sender's and the recipient's conversation rows: damage the
      // pages that hold them, so the write itself meets the damage.
      const path = join(dir, 'postbox.db');
      const { pageSize, pages } = storePages(path, "name LIKE '%conversations%'");
      assert.ok(pages.length > 0, 'the conversations table and its index have pages');
      await overwritePages(path, pageSize, pages);

      const server = await startTestServer({}, { dir });
      try {
        const sent = await send(server, 'into the damage');
        assert.equal(sent.statusCode, 500, sent.body);
        assert.equal(sent.json<Problem>().type, '/problems/internal');
        assert.equal(sent.headers['retry-after'], undefined, 'damage is not an outage to retry');
        assert.ok(server.logs.some((l) => l.level === 50 && /damaged/.test(String(l.msg))), 'logged as damage');
        const ready = await server.app.inject({ method: 'GET', url: '/readyz' });
        assert.equal(ready.statusCode, 503);
        assert.match(ready.json<Problem>().detail, /damaged.*postbox check/);
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('answers a read of a message whose bytes were overwritten (overflow pages) with a 500, never broken JSON', async () => {
    const dir = await tempDir();
    const path = join(dir, 'postbox.db');
    try {
      // Messages too large for a 4 KB page, so each spills onto an overflow page, then a small
      // last one (start-up and the conversation list read the newest).
      const lines = Array.from({ length: 20 }, (_, i) => record(i + 1, `${i} ${'x'.repeat(6000)}`));
      lines.push(record(21, 'small'));
      await seed(dir, lines);
      const { pageSize, pages: overflow } = storePages(path, "name = 'messages' AND pagetype = 'overflow'");
      assert.ok(overflow.length >= 20, `the big messages spill onto overflow pages (${overflow.length})`);
      // Random bytes over each page's content, its first four bytes (the next page of the
      // chain) kept: damage SQLite's own structure does not show, which it reads out unchecked.
      await overwritePages(path, pageSize, overflow, 4);

      const checked = await check(`sqlite:${path}`);
      assert.equal(checked.code, 1, checked.out);
      assert.match(checked.out, /problem: integrity/);

      const server = await startTestServer({}, { dir });
      try {
        for (const url of ['/v1/users/b/messages?limit=100', '/v1/messages/3', '/get-messages/b']) {
          const res = await server.app.inject({ method: 'GET', url });
          assert.equal(res.statusCode, 500, `${url}: ${res.statusCode} ${res.body.slice(0, 200)}`);
          assert.match(String(res.headers['content-type']), /application\/problem\+json/);
          assert.equal(res.json<Problem>().type, '/problems/internal');
          assert.equal(res.headers['retry-after'], undefined, 'not a retryable outage');
        }
        assert.ok(server.logs.some((l) => l.level === 50 && /damaged/.test(String(l.msg))), 'logged as damage');
        // What is not damaged still reads.
        assert.equal((await server.app.inject({ method: 'GET', url: '/v1/messages/21' })).statusCode, 200);
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('cuts the legacy inbox stream off when a damaged message turns up after the answer began', async () => {
    const dir = await tempDir();
    const path = join(dir, 'postbox.db');
    try {
      // The legacy inbox sends its first two chunks of 1,000 before streaming the rest: the
      // damaged message is in the third.
      const marker = 'OVERWRITE-ME-0123456789';
      await seed(dir, Array.from({ length: 2500 }, (_, i) => record(i + 1, i === 2300 ? marker : `m${i}`)));
      const bytes = await readFile(path);
      const at = bytes.indexOf(marker);
      assert.ok(at > 0 && bytes.indexOf(marker, at + 1) === -1, 'the marker is in the file once');
      // Control bytes inside the value, its length (and so SQLite's record) unchanged.
      const file = await open(path, 'r+');
      await file.write(Buffer.alloc(marker.length, 0x01), 0, marker.length, at);
      await file.close();

      const server = await startTestServer({}, { dir });
      try {
        const res = await fetch(`${server.url}/get-messages/b`);
        assert.equal(res.status, 200, 'the answer began before the damage was read');
        await assert.rejects(res.text(), 'the body fails rather than ending as broken JSON');
        await until(() => server.logs.some((l) => l.level === 50 && /damaged.*2301/.test(String(l.msg))), 'the damage in the log');
        const page = await server.app.inject({ method: 'GET', url: '/v1/users/b/messages?after=2290&limit=20' });
        assert.equal(page.statusCode, 500);
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('postbox check reports a store whose schema is behind, and one that is missing', async () => {
    const dir = await tempDir();
    try {
      const missing = await check(`sqlite:${join(dir, 'nothing.db')}`);
      assert.equal(missing.code, 1);
      const raw = new Database(join(dir, 'empty.db'));
      raw.exec('CREATE TABLE t (x)');
      raw.close();
      const foreign = await check(`sqlite:${join(dir, 'empty.db')}`);
      assert.equal(foreign.code, 1);
      assert.match(foreign.out, /no schema/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Mounts a small tmpfs at `dir`, or answers why it cannot (not root, no mount). */
function mountSmallDisk(dir: string, size: string): string | null {
  const result = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (result.error) return result.error.message;
  return result.status === 0 ? null : (result.stderr || `mount exited ${result.status}`).trim();
}

describe('readiness on a full disk', () => {
  it('answers 503 saying the disk is full, refuses the send with a 503, and recovers once there is room', async (t) => {
    const dir = await tempDir();
    const why = mountSmallDisk(dir, '16m');
    if (why !== null) {
      t.skip(`needs a small disk of its own: mounting a tmpfs failed (${why}); run as root to include it`);
      await rm(dir, { recursive: true, force: true });
      return;
    }
    try {
      const server = await startTestServer({}, { dir });
      try {
        await readyBecomes(server, 200);
        const filler = join(dir, 'filler');
        // Fill the disk: write until the file system refuses.
        const file = await open(filler, 'w');
        try {
          for (;;) await file.write(Buffer.alloc(256 * 1024));
        } catch (err) {
          assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
        } finally {
          await file.close();
        }
        const res = await server.app.inject({ method: 'GET', url: '/readyz' });
        assert.equal(res.statusCode, 503);
        assert.match(res.json<Problem>().detail, /full/);
        const sent = await send(server, 'x'.repeat(60_000));
        assert.ok(sent.statusCode === 503 || sent.statusCode === 201, `a send on a full disk is refused or fits: ${sent.statusCode} ${sent.body}`);
        assert.notEqual(sent.statusCode, 500);
        await rm(filler);
        await readyBecomes(server, 200);
      } finally {
        await server.close().catch(() => undefined);
      }
    } finally {
      spawnSync('umount', [dir]);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
