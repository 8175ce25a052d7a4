/**
 * Store commands that never lose or invent data, tried as a new user would, through the
 * real command table (`runCli`, in process): an import that meets ids the store already
 * holds refuses naming them (on both backends; tokens are never merged into an existing
 * user), a PostgreSQL database that does not exist is one clear sentence, a mistyped SQLite
 * path for a read-only command creates nothing, and a second server on one SQLite file is
 * refused (that one as a real process).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { spawnServer } from '../helpers/child.js';
import { createSchema, describeWithPostgres, runSql, TEST_PG_URL } from '../helpers/pg.js';
import { cli } from '../helpers/cli.js';
import { startTestServer, tempDir } from '../helpers/server.js';

/** Runs one `postbox` command line in this process, its output captured. */
const postbox = (args: string[], env: Record<string, string> = {}) => cli(args, env);

const HASH_A = 'a'.repeat(64);
const HASH_B = 'b'.repeat(64);
const HASH_C = 'c'.repeat(64);

function user(id: string, createdAt = '2026-01-01T00:00:00.000Z'): string {
  return JSON.stringify({ type: 'user', id, createdAt });
}
function token(u: string, hash: string): string {
  return JSON.stringify({ type: 'token', user: u, hash, createdAt: '2026-01-01T00:00:00.000Z' });
}
function message(id: number, text: string, from = 'alice', to = 'bob'): string {
  return JSON.stringify({
    type: 'message',
    message: { id: String(id), fromUser: from, toUser: to, message: text, sentAt: '2026-01-02T00:00:00.000Z', readAt: null },
  });
}

/** The conflict cases, run against one backend's store. */
function importConflicts(store: () => Promise<{ db: string; dir: string; done: () => Promise<void> }>): void {
  it('refuses an import whose ids the store holds with other content, naming them, and changes nothing', async () => {
    const { db, dir, done } = await store();
    try {
      const original = join(dir, 'original.jsonl');
      await writeFile(original, [user('alice'), user('bob'), token('alice', HASH_A), message(1, 'one'), message(2, 'two')].join('\n') + '\n');
      const first = await postbox(['import', original, '--db', db]);
      assert.equal(first.code, 0, first.stderr);
      assert.equal(first.stdout, 'imported 2 users, 1 token, 2 messages; skipped 0 users, 0 tokens, 0 messages already in the store\n');

      // The same file again: nothing conflicts, everything is skipped, and it says so.
      const again = await postbox(['import', original, '--db', db]);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(again.stdout, 'imported 0 users, 0 tokens, 0 messages; skipped 2 users, 1 token, 2 messages already in the store\n');

      // Another store's records under the same ids: a different alice with her own token,
      // a token that would be merged into the existing bob, a different message 2.
      const other = join(dir, 'other.jsonl');
      await writeFile(other, [
        user('alice', '2026-05-05T00:00:00.000Z'), user('bob'), user('carol'),
        token('alice', HASH_B), token('bob', HASH_C),
        message(1, 'one'), message(2, 'not two'), message(3, 'three', 'carol', 'bob'),
      ].join('\n') + '\n');
      const before = await postbox(['export', '--db', db, '--out', join(dir, 'before.jsonl')]);
      assert.equal(before.code, 0, before.stderr);
      const refused = await postbox(['import', other, '--db', db]);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /4 records of the file conflict with the store \(1 user, 2 tokens, 1 message\)/);
      assert.match(refused.stderr, /user alice: the store holds another user "alice"/);
      assert.match(refused.stderr, /token bbbbbbbbbbbb…/);
      assert.match(refused.stderr, /token cccccccccccc…: importing it would add a token to "bob".*never merged/);
      assert.match(refused.stderr, /message 2: the store holds a different message 2/);
      assert.match(refused.stderr, /nothing was imported.*--on-conflict skip/);
      assert.doesNotMatch(refused.stderr, /\n\s+at /, 'no stack trace');
      const after = await postbox(['export', '--db', db, '--out', join(dir, 'after.jsonl')]);
      assert.equal(after.code, 0, after.stderr);
      assert.equal(readFileSync(join(dir, 'after.jsonl'), 'utf8'), readFileSync(join(dir, 'before.jsonl'), 'utf8'), 'the store is unchanged');

      // Told how to resolve: the store's records stay, the rest comes in, and it says what it skipped.
      const skipped = await postbox(['import', other, '--on-conflict', 'skip', '--db', db]);
      assert.equal(skipped.code, 0, skipped.stderr);
      assert.equal(skipped.stdout, 'imported 1 user, 0 tokens, 1 message; skipped 1 user, 0 tokens, 1 message already in the store, ' +
        'and 1 user, 2 tokens, 1 message that conflict with it (the store\'s kept)\n');
      const final = await postbox(['export', '--db', db, '--out', join(dir, 'final.jsonl')]);
      assert.equal(final.code, 0, final.stderr);
      const text = readFileSync(join(dir, 'final.jsonl'), 'utf8');
      assert.ok(text.includes(HASH_A));
      assert.ok(!text.includes(HASH_B) && !text.includes(HASH_C), 'no token was merged into an existing user');
      assert.match(text, /"message":"two"/);
      assert.doesNotMatch(text, /not two/);
      assert.match(text, /"message":"three"/);
      assert.match(text, /"id":"carol"/);

      const bad = await postbox(['import', other, '--on-conflict', 'merge', '--db', db]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--on-conflict must be fail or skip/);
    } finally {
      await done();
    }
  });

  it('carries a removed user\'s reserved id through export and import, and refuses a file that would undo one', async () => {
    const from = await store();
    const to = await store();
    try {
      // In the first store: zed receives a message and is removed; its id stays reserved.
      const seed = join(from.dir, 'seed.jsonl');
      await writeFile(seed, [user('zed'), user('amy'), message(1, 'for zed only', 'amy', 'zed')].join('\n') + '\n');
      assert.equal((await postbox(['import', seed, '--db', from.db])).code, 0);
      const removed = await postbox(['users', 'remove', 'zed', '--db', from.db]);
      assert.equal(removed.code, 0, removed.stderr);
      const file = join(from.dir, 'moved.jsonl');
      const exported = await postbox(['export', '--db', from.db, '--out', file]);
      assert.equal(exported.code, 0, exported.stderr);
      assert.match(exported.stderr, /exported 1 user, 0 tokens, 1 message, 1 reserved id\n/);
      assert.match(readFileSync(file, 'utf8'), /^\{"type":"reservation","id":"zed","removedAt":"[^"]+"\}$/m);

      // Into a fresh store: the reservation comes along, so zed cannot be created with the old inbox.
      const imported = await postbox(['import', file, '--db', to.db]);
      assert.equal(imported.code, 0, imported.stderr);
      assert.equal(imported.stdout, 'imported 1 user, 0 tokens, 1 message, 1 reserved id; skipped 0 users, 0 tokens, 0 messages already in the store\n');
      const recreate = await postbox(['users', 'add', 'zed', '--db', to.db]);
      assert.notEqual(recreate.code, 0, recreate.stdout);
      assert.match(recreate.stderr, /reserved/);
      const again = await postbox(['import', file, '--db', to.db]);
      assert.equal(again.stdout, 'imported 0 users, 0 tokens, 0 messages; skipped 1 user, 0 tokens, 1 message, 1 reserved id already in the store\n');

      // A file whose user the store reserves, or which reserves a user the store holds: conflicts.
      const undo = join(to.dir, 'undo.jsonl');
      await writeFile(undo, [
        user('zed'), token('zed', HASH_A), JSON.stringify({ type: 'reservation', id: 'amy', removedAt: '2026-01-03T00:00:00.000Z' }),
      ].join('\n') + '\n');
      const refused = await postbox(['import', undo, '--db', to.db]);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /user zed: the store reserves "zed" for a removed user/);
      assert.match(refused.stderr, /token aaaaaaaaaaaa…: it belongs to the file's "zed", who conflicts/);
      assert.match(refused.stderr, /reservation amy: the file reserves "amy" for a removed user, but the store holds "amy" as a live user/);
      const skipped = await postbox(['import', undo, '--on-conflict', 'skip', '--db', to.db]);
      assert.equal(skipped.code, 0, skipped.stderr);
      const after = join(to.dir, 'after.jsonl');
      assert.equal((await postbox(['export', '--db', to.db, '--out', after])).code, 0);
      const text = readFileSync(after, 'utf8');
      assert.match(text, /"type":"user","id":"amy"/);
      assert.match(text, /"type":"reservation","id":"zed"/);
      assert.doesNotMatch(text, /"type":"user","id":"zed"|"type":"reservation","id":"amy"|"type":"token"/);
    } finally {
      await from.done();
      await to.done();
    }
  });
}

describe('postbox import on SQLite', () => {
  importConflicts(async () => {
    const dir = await tempDir();
    return { db: `sqlite:${join(dir, 'store.db')}`, dir, done: () => rm(dir, { recursive: true, force: true }) };
  });
});

await describeWithPostgres('postbox import on PostgreSQL', () => {
  importConflicts(async () => {
    const dir = await tempDir();
    const schema = await createSchema();
    return {
      db: schema.url(), dir,
      done: async () => {
        await schema.drop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
});

/** A PostgreSQL URL naming a database that does not exist. */
function missingDatabase(): { url: string; name: string } {
  const name = `pbx_missing_${randomBytes(4).toString('hex')}`;
  const u = new URL(TEST_PG_URL);
  u.pathname = `/${name}`;
  return { url: u.toString(), name };
}

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_PG_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

await describeWithPostgres('a PostgreSQL database that does not exist', () => {
  it('is one sentence saying how to create it, for users, export, import and migrate', async () => {
    const dir = await tempDir();
    const { url, name } = missingDatabase();
    try {
      const file = join(dir, 'store.jsonl');
      await writeFile(file, `${user('alice')}\n`);
      for (const args of [['users', 'list'], ['users', 'add', 'alice'], ['export'], ['import', file], ['migrate']]) {
        const run = await postbox([...args, '--db', url]);
        assert.equal(run.code, 1, `${args.join(' ')}: ${run.stderr}`);
        assert.match(run.stderr, new RegExp(`^postbox ${args[0]}: the PostgreSQL database "${name}" does not exist on .*createdb .* ${name}`));
        assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
        assert.equal(run.stderr.trim().split('\n').length, 1);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is the same sentence for check, and for serve (on stderr, no stack)', async () => {
    const { url, name } = missingDatabase();
    for (const args of [['check', '--db', url], ['serve', '--port', '0', '--host', '127.0.0.1', '--db', url]]) {
      const run = await postbox(args, { LOG_LEVEL: 'silent' });
      assert.equal(run.code, 1, `${args[0]}: ${run.stderr}`);
      const prefix = args[0] === 'serve' ? 'postbox' : 'postbox check';
      assert.match(run.stderr, new RegExp(`^${prefix}: the PostgreSQL database "${name}" does not exist on .*createdb .* ${name}`));
      assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(run.stderr.trim().split('\n').length, 1, run.stderr);
    }
  });

  it('the README\'s import example works as written, database made first as it says', async () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const createLine = /^createdb (.+?) postbox\s*(#.*)?$/m.exec(readme);
    const importLine = /^npx postbox import store\.jsonl --db (postgres:\/\/\S+)\/postbox\s*$/m.exec(readme);
    assert.ok(createLine && importLine, 'the README shows createdb before the import');
    assert.ok(readme.indexOf(createLine[0]) < readme.indexOf(importLine[0]));
    // Run as written, with this test's own database name in place of "postbox".
    const name = `pbx_readme_${randomBytes(4).toString('hex')}`;
    const dir = await tempDir();
    try {
      const created = await new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile('createdb', [...createLine[1]!.split(/\s+/), name], (err, _out, stderr) => resolve({ code: err ? 1 : 0, stderr }));
      });
      assert.equal(created.code, 0, created.stderr);
      const file = join(dir, 'store.jsonl');
      await writeFile(file, [user('alice'), user('bob'), message(1, 'hello')].join('\n') + '\n');
      const run = await postbox(['import', file, '--db', `${importLine[1]}/${name}`]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /^imported 2 users, 0 tokens, 1 message;/);
    } finally {
      await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a mistyped SQLite path', () => {
  it('is refused by the commands that only read a store, and no file is created', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir, 'typo', 'postbx.db');
      const out = join(dir, 'out.jsonl');
      for (const args of [['users', 'list'], ['users', 'remove', 'alice'], ['export', '--out', out], ['backup', '--out', join(dir, 'b.db')]]) {
        const run = await postbox([...args, '--db', `sqlite:${path}`]);
        assert.equal(run.code, 1, `${args.join(' ')}: ${run.stderr}`);
        assert.match(run.stderr, new RegExp(`^postbox ${args[0]}: there is no SQLite store at ${path} \\(from --db\\)`));
      }
      const fromEnv = await postbox(['users', 'list'], { DATABASE_URL: `sqlite:${path}` });
      assert.match(fromEnv.stderr, /\(from DATABASE_URL\)/);
      assert.ok(!existsSync(path) && !existsSync(join(dir, 'typo')) && !existsSync(out), 'nothing was created');

      // The commands that mean to create a store still do.
      const added = await postbox(['users', 'add', 'alice', '--db', `sqlite:${path}`]);
      assert.equal(added.code, 0, added.stderr);
      const listed = await postbox(['users', 'list', '--db', `sqlite:${path}`]);
      assert.match(listed.stdout, /^alice\t/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a second server on one SQLite file', () => {
  it('is refused with a clear error, and starts once the first has stopped', async () => {
    const dir = await tempDir();
    const db = `sqlite:${join(dir, 'postbox.db')}`;
    const first = await startTestServer({ DATABASE_URL: db }, { dir });
    try {
      const second = await new Promise<{ code: number; stderr: string }>((resolve) => {
        const cli = new URL('../../src/cli/main.ts', import.meta.url).pathname;
        execFile(process.execPath, ['--import', 'tsx', cli, 'serve', '--port', '0', '--host', '127.0.0.1', '--db', db],
          { env: { ...process.env, LOG_LEVEL: 'silent' }, timeout: 30_000 },
          (err, _stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr }));
      });
      assert.equal(second.code, 1, second.stderr);
      assert.match(second.stderr, /another postbox server is already serving .*postbox\.db.*use PostgreSQL/);
      assert.doesNotMatch(second.stderr, /\n\s+at /, 'no stack trace');
    } finally {
      await first.stop();
    }
    try {
      const again = await spawnServer({ DATABASE_URL: db });
      again.process.kill('SIGTERM');
      assert.equal((await again.exited).code, 0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

await describeWithPostgres('postbox check on PostgreSQL', () => {
  it('passes a healthy store, and names a dropped table and a schema version that is not this Postbox\'s', async () => {
    const schema = await createSchema();
    try {
      const db = schema.url();
      assert.equal((await postbox(['users', 'add', 'alice', '--db', db])).code, 0);
      const healthy = await postbox(['check', '--db', db]);
      assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr);
      assert.match(healthy.stdout, /the store is whole \(schema version \d+\)/);

      await runSql(db, 'DROP TABLE webhook_attempts');
      const dropped = await postbox(['check', '--db', db]);
      assert.equal(dropped.code, 1, dropped.stdout);
      assert.match(dropped.stdout, /problem: table webhook_attempts cannot be read/);
      assert.doesNotMatch(dropped.stdout, /counters/, 'SQLite\'s own table is not asked of PostgreSQL');

      await runSql(db, 'DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)');
      const behind = await postbox(['check', '--db', db]);
      assert.equal(behind.code, 1, behind.stdout);
      assert.match(behind.stdout, /problem: the store's schema is at version \d+; run postbox migrate/);
    } finally {
      await schema.drop();
    }
  });
});

describe('postbox check on SQLite', () => {
  it('names a table the schema should have and the file lacks', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir, 'store.db');
      assert.equal((await postbox(['users', 'add', 'alice', '--db', `sqlite:${path}`])).code, 0);
      assert.equal((await postbox(['check', '--db', `sqlite:${path}`])).code, 0);
      const raw = new Database(path);
      raw.exec('DROP TABLE maintenance');
      raw.close();
      const run = await postbox(['check', '--db', `sqlite:${path}`]);
      assert.equal(run.code, 1, run.stdout);
      assert.match(run.stdout, /problem: table maintenance is missing/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a read-only command on a SQLite file that is not a store at this schema', () => {
  it('refuses a file that is not a Postbox store, and leaves it as it was', async () => {
    const dir = await tempDir();
    try {
      const foreign = join(dir, 'foreign.db');
      const raw = new Database(foreign);
      raw.exec('CREATE TABLE foo (x); INSERT INTO foo VALUES (1)');
      raw.close();
      const empty = join(dir, 'empty.db');
      await writeFile(empty, '');
      for (const path of [foreign, empty]) {
        const before = readFileSync(path);
        for (const args of [['users', 'list'], ['users', 'remove', 'alice'], ['export', '--out', join(dir, 'out.jsonl')],
          ['backup', '--out', join(dir, 'b.db')]]) {
          const run = await postbox([...args, '--db', `sqlite:${path}`]);
          assert.equal(run.code, 1, `${args.join(' ')} on ${path}: ${run.stderr}`);
          assert.match(run.stderr, new RegExp(`^postbox ${args[0]}: ${path} is not a Postbox store \\(it has no Postbox schema\\); check the path\\.\\n$`));
        }
        assert.deepEqual(readFileSync(path), before, 'the file is unchanged');
        assert.ok(!existsSync(`${path}-wal`) && !existsSync(join(dir, 'out.jsonl')) && !existsSync(join(dir, 'b.db')), 'nothing was written');
      }
      const table = new Database(foreign, { readonly: true });
      assert.deepEqual(table.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").pluck().all(), ['foo']);
      table.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to migrate an older store, saying to run postbox migrate, but backs it up as it is', async () => {
    const dir = await tempDir();
    try {
      const path = join(dir, 'store.db');
      assert.equal((await postbox(['users', 'add', 'alice', '--db', `sqlite:${path}`])).code, 0);
      const version = () => {
        const db = new Database(path, { readonly: true });
        try {
          return db.prepare('SELECT max(version) FROM schema_migrations').pluck().get() as number;
        } finally {
          db.close();
        }
      };
      const current = version();
      const db = new Database(path);
      db.exec(`DELETE FROM schema_migrations WHERE version = ${current}`);
      db.close();
      for (const args of [['users', 'list'], ['export']]) {
        const run = await postbox([...args, '--db', `sqlite:${path}`]);
        assert.equal(run.code, 1, run.stderr);
        assert.match(run.stderr, new RegExp(`holds an older Postbox schema \\(version ${current - 1}; this Postbox needs ${current}\\): run \`postbox migrate\` first`));
      }
      assert.equal(version(), current - 1, 'not migrated');
      const backup = await postbox(['backup', '--out', join(dir, 'b.db'), '--db', `sqlite:${path}`]);
      assert.equal(backup.code, 0, backup.stderr);
      const back = new Database(path);
      back.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(current, 'put back', Date.now());
      back.close();
      const listed = await postbox(['users', 'list', '--db', `sqlite:${path}`]);
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /^alice\t/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
