/**
 * Every query Postbox runs on SQLite uses an index: an inbox page, a conversation page and
 * the conversation list cost O(page), not O(store). The read side reports its SQL through
 * `onQuery`; the writer's statements are its exported table.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openSqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import { WRITE_SQL } from '../../src/storage/sqlite/write-ops.js';
import { tempDir } from '../helpers/server.js';

/** Reads that are O(store) by nature: listing every user and reserved id, export; and the schema version, read once at start. */
const WHOLE_TABLE = [/FROM schema_migrations/, /FROM users ORDER BY id/, /FROM removed_users ORDER BY id/, /FROM tokens ORDER BY user_id/, /FROM messages WHERE seq > \S+ ORDER BY seq LIMIT/];

/**
 * Plan lines that read a whole table (a SCAN not through an index). Not counted: subquery
 * results (already bounded), json_each of a request's ids, and sqlite_sequence, SQLite's
 * own table of one row per AUTOINCREMENT table.
 */
function fullScans(db: Database.Database, sql: string, params: unknown[] = []): string[] {
  const plan = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[];
  return plan.map((p) => p.detail)
    .filter((d) => /^SCAN (?!.*USING)/.test(d) && !/^SCAN (\(subquery|json_each|CONSTANT ROW|sqlite_sequence)/.test(d));
}

describe('SQLite query plans', () => {
  it('no read scans a table', async () => {
    const dir = await tempDir();
    const seen = new Set<string>();
    const s = openSqliteStorage({
      path: join(dir, 'p.db'),
      durability: 'relaxed',
      onQuery: (sql) => seen.add(sql),
    });
    try {
      for (let i = 0; i < 200; i++) await s.send({ fromUser: `u${i % 7}`, toUser: `u${(i * 3) % 5}`, message: `m${i}` });
      await s.createUser('u1', 'h1');
      for (const q of [{ limit: 5 }, { after: 10, limit: 5 }, { before: 100, limit: 5 }, { before: Infinity, limit: 5 }, { after: 3, before: 90, limit: 5 }]) {
        await s.inbox('u1', q);
        await s.inbox('u1', { ...q, from: 'u2' });
        await s.inbox('u1', { ...q, unreadOnly: true });
        await s.inbox('u1', { ...q, from: 'u2', unreadOnly: true });
        await s.sent('u1', q);
        await s.mailbox('u1', q);
        await s.conversation('u1', 'u2', q);
        await s.conversation('u1', 'u1', q);
      }
      await s.conversations('u1', { limit: 5 });
      await s.conversations('u1', { before: 50, limit: 5 });
      await s.getMessage(5);
      await s.userForToken('h1');
      for await (const r of s.exportAll()) void r;
      // The distinct senders and recipients: a walk through each column's index, not a scan.
      for await (const id of s.storedUserIds()) void id;
      await s.userStatus('u1');
    } finally {
      await s.close();
    }
    const db = new Database(join(dir, 'p.db'), { readonly: true });
    try {
      assert.ok(seen.size > 30, `saw ${seen.size} distinct queries`);
      const offenders: string[] = [];
      for (const sql of seen) {
        if (WHOLE_TABLE.some((p) => p.test(sql)) || !/^\s*SELECT/i.test(sql)) continue;
        for (const scan of fullScans(db, sql)) offenders.push(`${scan}  ←  ${sql}`);
      }
      assert.deepEqual(offenders, []);
    } finally {
      db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('no write statement scans a table', async () => {
    const dir = await tempDir();
    const s = openSqliteStorage({ path: join(dir, 'p.db'), durability: 'relaxed' });
    await s.close();
    const db = new Database(join(dir, 'p.db'));
    try {
      const offenders: string[] = [];
      for (const [name, sql] of Object.entries(WRITE_SQL)) {
        const params = Array.from({ length: (sql.match(/\?/g) ?? []).length }, () => 1);
        for (const scan of fullScans(db, sql, params)) offenders.push(`${name}: ${scan}`);
      }
      assert.deepEqual(offenders, []);
    } finally {
      db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
