/**
 * `postbox backup` and `postbox restore`, through the real command table (`runCli`, in
 * process, beside a server that keeps serving): a backup taken while six clients write holds
 * every message acknowledged before it began and passes SQLite's integrity check; a restore
 * into a fresh store serves those messages under the same ids; restore refuses a store that
 * is not empty (unless --force) and one a server is serving; PostgreSQL is pointed to pg_dump,
 * and a non-empty PostgreSQL store is never replaced (--force is refused there, saying what to do).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { Message } from '../../src/protocol/types.js';
import { postJson, request } from '../helpers/http.js';
import { createSchema, describeWithPostgres } from '../helpers/pg.js';
import { cli, type CliRun } from '../helpers/cli.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { Tally } from '../helpers/wait.js';

/** Runs one `postbox` command line in this process, its output captured. */
const postbox = (args: string[], env: Record<string, string> = {}) => cli(args, env);

/** Asserts that `dir` holds the store `name` and only the files SQLite and Postbox keep beside it: nothing a restore left behind. */
async function onlyTheStore(dir: string, name: string): Promise<void> {
  const files = await readdir(dir);
  assert.ok(files.includes(name), `${name} is there: ${files.join(' ')}`);
  const own = new Set(['', '-wal', '-shm', '.serve-lock'].map((suffix) => `${name}${suffix}`));
  assert.deepEqual(files.filter((f) => !own.has(f)), [], `only the store's own files are left in ${dir}`);
}

describe('postbox backup and restore (SQLite)', () => {
  it('backs up under six concurrent writers, and a restore serves every message acknowledged before it, same ids', async () => {
    const dir = await tempDir();
    const db = `sqlite:${join(dir, 'postbox.db')}`;
    const copy = join(dir, 'backup.db');
    const server = await startTestServer({ DATABASE_URL: db, POSTBOX_RATE_LIMIT: '0' }, { dir });
    const acked = new Tally();
    let writing = true;
    let failures = 0;
    const writers = Array.from({ length: 6 }, async (_, w) => {
      for (let n = 0; writing; n++) {
        const sent = await postJson(server.url, '/v1/messages', { fromUser: `w${w}`, toUser: `r${n % 3}`, message: `writer ${w} #${n}` });
        if (sent.status === 201) acked.add(sent.json<Message>().id);
        else failures++;
      }
    });
    let before: string[];
    let report: CliRun;
    try {
      await acked.reached(120);
      before = [...acked.ids];
      report = await postbox(['backup', '--out', copy, '--db', db]);
      // The writers kept going while it ran; they stop only now.
      await acked.reached(before.length + 12);
    } finally {
      writing = false;
      await Promise.all(writers);
    }
    let originals: Map<string, string>;
    try {
      assert.equal(failures, 0, 'every send was answered 201');
      assert.equal(report.code, 0, report.stderr);
      assert.match(report.stdout, /^wrote .*backup\.db: \d+ bytes, 0 users, 0 tokens, \d+ messages, last message id \d+; integrity check ok\n$/);

      // The copy, read as a plain SQLite file: whole, and holding everything acknowledged before.
      const file = new Database(copy, { readonly: true });
      try {
        assert.deepEqual(file.pragma('integrity_check'), [{ integrity_check: 'ok' }]);
        assert.equal(file.pragma('journal_mode', { simple: true }), 'delete', 'a self-contained file');
        const held = new Set((file.prepare('SELECT seq FROM messages').pluck().all() as number[]).map(String));
        const missing = before.filter((id) => !held.has(id));
        assert.deepEqual(missing, [], 'every message acknowledged before the backup is in it');
        const count = /(\d+) messages?/.exec(report.stdout)![1];
        assert.equal(Number(count), held.size, 'the printed count is what the file holds');
      } finally {
        file.close();
      }
      originals = new Map();
      for (const id of before) originals.set(id, (await request(server.url, `/v1/messages/${id}`)).text);
    } finally {
      await server.stop();
    }

    const fresh = join(dir, 'restored', 'postbox.db');
    try {
      const restored = await postbox(['restore', copy, '--db', `sqlite:${fresh}`]);
      assert.equal(restored.code, 0, restored.stderr);
      assert.match(restored.stdout, /^restored .*postbox\.db from .*backup\.db: .*integrity check ok\n$/);
      await onlyTheStore(join(dir, 'restored'), 'postbox.db');

      const again = await startTestServer({ DATABASE_URL: `sqlite:${fresh}` }, { dir: join(dir, 'restored') });
      try {
        for (const [id, text] of originals) {
          const got = await request(again.url, `/v1/messages/${id}`);
          assert.equal(got.status, 200, `message ${id} is served`);
          assert.equal(got.text, text, `message ${id} is the same`);
        }
        const next = await postJson(again.url, '/v1/messages', { fromUser: 'after', toUser: 'restore', message: 'new' });
        assert.ok(Number(next.json<Message>().id) > Math.max(...before.map(Number)), 'new ids go on past the restored ones');

        // A served store is never replaced under its server.
        const served = await postbox(['restore', copy, '--force', '--db', `sqlite:${fresh}`]);
        assert.equal(served.code, 1);
        assert.match(served.stderr, /another postbox server is already serving/);
      } finally {
        await again.stop();
      }

      // Not empty: refused unless told; --force replaces it.
      const refused = await postbox(['restore', copy, '--db', `sqlite:${fresh}`]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /is not empty; restore fills an empty store \(--force replaces/);
      const forced = await postbox(['restore', copy, '--force', '--db', `sqlite:${fresh}`]);
      assert.equal(forced.code, 0, forced.stderr);
      await onlyTheStore(join(dir, 'restored'), 'postbox.db');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to overwrite a file, to back up a store that is not there, and to restore what is not a backup', async () => {
    const dir = await tempDir();
    try {
      const db = `sqlite:${join(dir, 'postbox.db')}`;
      assert.equal((await postbox(['users', 'add', 'alice', '--db', db])).code, 0);
      const out = join(dir, 'taken.db');
      await writeFile(out, 'something precious');
      const over = await postbox(['backup', '--out', out, '--db', db]);
      assert.equal(over.code, 1);
      assert.match(over.stderr, /already exists; give another file, or --force/);
      const forced = await postbox(['backup', '--out', out, '--force', '--db', db]);
      assert.equal(forced.code, 0, forced.stderr);
      assert.match(forced.stdout, /1 user, 1 token, 0 messages; integrity check ok/);

      const nothing = await postbox(['backup', '--out', join(dir, 'x.db'), '--db', `sqlite:${join(dir, 'nope.db')}`]);
      assert.equal(nothing.code, 1);
      assert.match(nothing.stderr, /there is no SQLite store at/);
      assert.ok(!existsSync(join(dir, 'x.db')));

      const junk = join(dir, 'junk.db');
      await writeFile(junk, 'not a database at all, just text that is long enough to look like a header...');
      const bad = await postbox(['restore', junk, '--db', `sqlite:${join(dir, 'target.db')}`]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /junk\.db (is not a SQLite database|cannot be opened)/);
      assert.equal((await postbox(['backup', '--db', db])).code, 2, 'no --out is a usage error');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

await describeWithPostgres('postbox backup and restore on PostgreSQL', () => {
  it('points backup to pg_dump, and restores a SQLite backup into an empty database with the same ids', async () => {
    const dir = await tempDir();
    const schema = await createSchema();
    try {
      const pgDump = await postbox(['backup', '--out', join(dir, 'x.db'), '--db', schema.url()]);
      assert.equal(pgDump.code, 1);
      assert.match(pgDump.stderr, /pg_dump .*postbox export/);

      const db = `sqlite:${join(dir, 'postbox.db')}`;
      const server = await startTestServer({ DATABASE_URL: db }, { dir });
      const ids: string[] = [];
      try {
        for (let i = 0; i < 5; i++) ids.push((await postJson(server.url, '/v1/messages', { fromUser: 'a', toUser: 'b', message: `m${i}` })).json<Message>().id);
        await request(server.url, `/v1/messages/${ids[1]}`, { method: 'DELETE' });
      } finally {
        await server.stop();
      }
      const copy = join(dir, 'backup.db');
      assert.equal((await postbox(['backup', '--out', copy, '--db', db])).code, 0);
      const restored = await postbox(['restore', copy, '--db', schema.url()]);
      assert.equal(restored.code, 0, restored.stderr);
      assert.match(restored.stdout, /restored from .*backup\.db: 0 users, 0 tokens, 4 messages/);
      const again = await postbox(['restore', copy, '--db', schema.url()]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /not empty/);
      // Nothing here can tell whether a server elsewhere uses the database: --force is refused,
      // saying what to do instead, and the store is left as it was (served below).
      const forced = await postbox(['restore', copy, '--force', '--db', schema.url()]);
      assert.equal(forced.code, 1, forced.stderr);
      assert.equal(forced.stderr, 'postbox restore: --force replaces SQLite stores only: on PostgreSQL this command cannot tell whether a ' +
        'server elsewhere is using the database, so stop every server, drop and recreate the database (or schema), then restore into it without --force\n');
      const help = await postbox(['restore', '--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /--force is refused there, since this command cannot tell whether a server\non another machine is using it: stop every server, drop and recreate the database \(or schema\), then restore/);

      const pgServer = await startTestServer({ DATABASE_URL: schema.url() }, { dir });
      try {
        const inbox = await request(pgServer.url, '/v1/users/b/messages');
        assert.deepEqual(inbox.json<{ messages: Message[] }>().messages.map((m) => m.id), ids.filter((_, i) => i !== 1));
      } finally {
        await pgServer.stop();
      }
    } finally {
      await schema.drop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Mounts a read-only tmpfs at `dir`, or answers why it cannot. */
function mountReadOnly(dir: string): string | null {
  const result = spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', dir], { encoding: 'utf8' });
  if (result.error) return result.error.message;
  return result.status === 0 ? null : (result.stderr || `mount exited ${result.status}`).trim();
}

describe('postbox backup to a place it cannot write', () => {
  /** Asserts one sentence on stderr, exit 1, no stack trace. */
  function oneSentence(run: CliRun, pattern: RegExp): void {
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, pattern);
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
  }

  it('says so in one sentence for a missing directory, an existing directory even with --force, and a file in the way', async () => {
    const dir = await tempDir();
    try {
      const db = `sqlite:${join(dir, 'postbox.db')}`;
      assert.equal((await postbox(['users', 'add', 'alice', '--db', db])).code, 0);
      // The README's own example, when /backups is not there yet.
      const missing = join(dir, 'backups', 'postbox-2026-11-30.db');
      oneSentence(await postbox(['backup', '--out', missing, '--db', db]),
        new RegExp(`^postbox backup: the directory ${join(dir, 'backups')} does not exist; create it first \\(mkdir -p `));
      oneSentence(await postbox(['backup', '--out', dir, '--force', '--db', db]), new RegExp(`^postbox backup: ${dir} is a directory; give a file in it`));
      const file = join(dir, 'a-file');
      await writeFile(file, 'x');
      oneSentence(await postbox(['backup', '--out', join(file, 'b.db'), '--db', db]), /^postbox backup: .*a-file is not a directory/);
      const left = await readdir(dir);
      assert.ok(!left.some((f) => f.includes('partial')), `no partial copy is left behind: ${left.join(' ')}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses, even with --force, the store a server is serving, by any spelling, and its files beside it; the server keeps serving', async () => {
    const dir = await tempDir();
    try {
      const store = join(dir, 'p.db');
      const db = `sqlite:${store}`;
      await symlink(store, join(dir, 'alias.db'));
      const server = await startTestServer({ DATABASE_URL: db }, { dir });
      try {
        assert.equal((await postJson(server.url, '/v1/messages', { fromUser: 'a', toUser: 'b', message: 'before' })).status, 201);
        const refused = /^postbox backup: .* is the store being backed up \(or a file SQLite keeps beside it\); give a file elsewhere/;
        const outs = [store, join(dir, '.', 'p.db'), join(dir, 'alias.db'), `${store}-wal`, `${store}-shm`, `${store}.serve-lock`, `${store}.serve-lock-journal`];
        for (const out of outs) {
          oneSentence(await postbox(['backup', '--out', out, '--force', '--db', db]), refused);
        }
        // Through the link on both sides, as the report had it.
        oneSentence(await postbox(['backup', '--out', store, '--force', '--db', `sqlite:${join(dir, 'alias.db')}`]), refused);
        const sent = await postJson(server.url, '/v1/messages', { fromUser: 'a', toUser: 'b', message: 'after' });
        assert.equal(sent.status, 201, `the server still takes sends: ${sent.text}`);
        const left = await readdir(dir);
        assert.ok(!left.some((f) => f.includes('partial')), `no partial copy is left behind: ${left.join(' ')}`);
      } finally {
        await server.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('says so in one sentence for a directory it may not write', async (t) => {
    const dir = await tempDir();
    const locked = join(dir, 'locked');
    await mkdir(locked);
    let mounted = false;
    try {
      const db = `sqlite:${join(dir, 'postbox.db')}`;
      assert.equal((await postbox(['users', 'add', 'alice', '--db', db])).code, 0);
      await chmod(locked, 0o555);
      if (process.getuid?.() === 0) {
        // Root writes through permissions: a read-only file system is what stops it.
        const why = mountReadOnly(locked);
        if (why !== null) {
          t.skip(`as root, needs a read-only mount: ${why}`);
          return;
        }
        mounted = true;
      }
      oneSentence(await postbox(['backup', '--out', join(locked, 'b.db'), '--db', db]),
        new RegExp(`^postbox backup: cannot write the backup to ${join(locked, 'b.db')}: this process may not write there`));
    } finally {
      if (mounted) spawnSync('umount', [locked]);
      await chmod(locked, 0o755).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('postbox restore given an export, and export\'s tally', () => {
  it('says to use postbox import for a JSON Lines export, and counts one user and one token in the singular', async () => {
    const dir = await tempDir();
    try {
      const db = `sqlite:${join(dir, 'postbox.db')}`;
      assert.equal((await postbox(['users', 'add', 'alice', '--db', db])).code, 0);
      const file = join(dir, 'store.jsonl');
      const exported = await postbox(['export', '--out', file, '--db', db]);
      assert.equal(exported.code, 0, exported.stderr);
      assert.equal(exported.stderr, 'exported 1 user, 1 token, 0 messages\n');

      const restored = await postbox(['restore', file, '--db', `sqlite:${join(dir, 'new.db')}`]);
      assert.equal(restored.code, 1, restored.stderr);
      assert.equal(restored.stderr, `postbox restore: ${file} is not a SQLite backup: this looks like an export (JSON Lines): use \`postbox import ${file}\`\n`);
      assert.ok(!existsSync(join(dir, 'new.db')), 'no store was made');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('postbox restore through a symlinked store path', () => {
  it('fills the file the link points to and leaves the link in place', async () => {
    const dir = await tempDir();
    try {
      const from = `sqlite:${join(dir, 'from.db')}`;
      assert.equal((await postbox(['users', 'add', 'alice', '--db', from])).code, 0);
      const copy = join(dir, 'backup.db');
      assert.equal((await postbox(['backup', '--out', copy, '--db', from])).code, 0);
      await mkdir(join(dir, 'data'));
      const real = join(dir, 'data', 'postbox.db');
      assert.equal((await postbox(['users', 'add', 'bob', '--db', `sqlite:${real}`])).code, 0);
      await symlink(real, join(dir, 'alias.db'));
      const restored = await postbox(['restore', copy, '--force', '--db', `sqlite:${join(dir, 'alias.db')}`]);
      assert.equal(restored.code, 0, restored.stderr);
      assert.ok((await lstat(join(dir, 'alias.db'))).isSymbolicLink(), 'the link is still a link');
      await onlyTheStore(join(dir, 'data'), 'postbox.db');
      const listed = await postbox(['users', 'list', '--db', `sqlite:${real}`]);
      assert.match(listed.stdout, /^alice\t/);
      assert.doesNotMatch(listed.stdout, /bob/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
