/**
 * A store made under an older id rule may hold ids today's rule refuses. They are reported,
 * never changed: by `postbox migrate`, by `postbox check`, and in one warning when the
 * server starts — from users, reserved ids, senders and recipients alike.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { cli } from '../helpers/cli.js';
import { startTestServer, tempDir } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

/** Each place an id can sit, holding one the rule refuses. */
const BAD = {
  user: '..',
  reserved: 'Ａｌｉｃｅ',
  recipient: 'cafe\u0301',
  sender: 'x\u200By',
};

/** A migrated SQLite store with the bad ids written straight into its tables. */
async function storeWithBadIds(): Promise<{ dir: string; path: string }> {
  const dir = await tempDir();
  const path = join(dir, 'postbox.db');
  const migrated = await cli(['migrate', '--db', `sqlite:${path}`], {});
  assert.equal(migrated.code, 0, migrated.stderr);
  const db = new Database(path);
  try {
    const now = Date.UTC(2026, 0, 1);
    db.prepare('INSERT INTO users (id, created_at) VALUES (?, ?)').run(BAD.user, now);
    db.prepare('INSERT INTO users (id, created_at) VALUES (?, ?)').run('fine', now);
    db.prepare('INSERT INTO removed_users (id, removed_at) VALUES (?, ?)').run(BAD.reserved, now);
    const json = JSON.stringify({ id: '1', fromUser: BAD.sender, toUser: BAD.recipient, message: 'old', sentAt: new Date(now).toISOString(), readAt: null });
    db.prepare('INSERT INTO messages (to_user, seq, from_user, json) VALUES (?, ?, ?, ?)').run(BAD.recipient, 1, BAD.sender, json);
    db.prepare("UPDATE counters SET value = 1 WHERE name = 'message_seq'").run();
  } finally {
    db.close();
  }
  return { dir, path };
}

describe('stored ids the current rule refuses', () => {
  it('postbox migrate and postbox check list them, from users, reserved ids and messages, and change nothing', async () => {
    const { dir, path } = await storeWithBadIds();
    try {
      const migrate = await cli(['migrate', '--db', `sqlite:${path}`], {});
      assert.equal(migrate.code, 0, migrate.stderr);
      assert.match(migrate.stdout, /^the schema is up to date\n/);
      assert.match(migrate.stdout, /4 stored user id\(s\) would be refused.*postbox export carries them/);
      for (const id of Object.values(BAD)) assert.ok(migrate.stdout.includes(`note: stored user id ${JSON.stringify(id)} `), `${id} in: ${migrate.stdout}`);
      assert.ok(!migrate.stdout.includes('"fine"'));
      assert.doesNotMatch(migrate.stdout, /keep working/);

      const check = await cli(['check', '--db', `sqlite:${path}`], {});
      assert.equal(check.code, 0, check.stderr);
      for (const id of Object.values(BAD)) assert.ok(check.stdout.includes(JSON.stringify(id)), `${id} in: ${check.stdout}`);

      const db = new Database(path, { readonly: true });
      try {
        assert.deepEqual(db.prepare('SELECT id FROM users ORDER BY id').pluck().all(), [BAD.user, 'fine'].sort(), 'nothing changed');
        assert.equal(db.prepare('SELECT count(*) FROM messages').pluck().get(), 1);
      } finally {
        db.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the server warns once at start, naming each id and saying truthfully what still works', async () => {
    const { dir } = await storeWithBadIds();
    const server = await startTestServer({}, { dir });
    try {
      const isReport = (l: Record<string, unknown>) => l.level === 40 && Array.isArray(l.ids);
      await until(() => server.logs.some(isReport), 'the start-up report of stored ids');
      const report = server.logs.filter(isReport);
      assert.equal(report.length, 1);
      const ids = (report[0]!.ids as { id: string; problem: string }[]).map((o) => o.id).sort();
      assert.deepEqual(ids, Object.values(BAD).sort());
      assert.match(String(report[0]!.msg), /their accounts and messages stay in the store and postbox export carries them, but the API refuses these ids/);
    } finally {
      await server.stop();
    }
  });
});
