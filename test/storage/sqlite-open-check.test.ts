/**
 * The look a server gives a SQLite store as it opens it (open-check.ts): on the spot for a
 * small store, on a thread of its own for a large one; both find damage, neither a whole store.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { checkOnOpen } from '../../src/storage/sqlite/open-check.js';
import { openSqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import { damageMessageLeaves } from '../helpers/damage.js';
import { tempDir } from '../helpers/server.js';

/** A store of 200 messages at `path`, closed. */
async function store(path: string): Promise<void> {
  const s = openSqliteStorage({ path, durability: 'relaxed' });
  for (let i = 0; i < 200; i++) await s.send({ fromUser: 'a', toUser: 'b', message: `${i} ${'x'.repeat(2000)}` });
  await s.close();
}

/** What checkOnOpen reports, from the spot (`onTheSpotBytes` large) or from its thread (0). */
function checked(path: string, onTheSpotBytes: number): Promise<string[]> {
  const db = new Database(path, { readonly: true });
  return new Promise<string[]>((resolve) => checkOnOpen(db, path, resolve, onTheSpotBytes)).finally(() => db.close());
}

describe('SQLite: the look at open', () => {
  for (const [where, bytes] of [['on the spot', Number.MAX_SAFE_INTEGER], ['on a thread of its own', 0]] as const) {
    it(`finds nothing wrong with a whole store and names the damage of a damaged one, ${where}`, async () => {
      const dir = await tempDir('postbox-open-check-');
      const path = join(dir, 'store.db');
      try {
        await store(path);
        assert.deepEqual(await checked(path, bytes), []);
        await damageMessageLeaves(path);
        const problems = await checked(path, bytes);
        assert.ok(problems.length > 0, 'damage found');
        assert.ok(problems.every((p) => p !== '' && !p.startsWith('***')), `one problem a line: ${problems.join(' | ')}`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
