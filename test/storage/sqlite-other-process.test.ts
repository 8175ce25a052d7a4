/**
 * Commits made on a SQLite file by another process (a `postbox` command beside the server)
 * reach no hub: the store notices the file's commit count move and tells its listeners to
 * resync. Its own commits and its checkpoints must never look like that, or every stream
 * would re-read storage several times a second.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openSqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import type { StoreEvent } from '../../src/storage/storage.js';
import { tempDir } from '../helpers/server.js';
import { until } from '../helpers/wait.js';

describe('SQLite: commits by another process', () => {
  it('tells listeners to resync after another connection commits, and never for its own commits or checkpoints', async () => {
    const dir = await tempDir('postbox-other-process-');
    const path = join(dir, 'store.db');
    const storage = openSqliteStorage({ path, durability: 'fsync' });
    let resyncs = 0;
    storage.onEvents((events: readonly StoreEvent[]) => {
      for (const e of events) if (e.type === 'resync') resyncs++;
    });
    try {
      // Its own writes, in many batches, until the checkpointer has folded the WAL back.
      const before = (await storage.stats()).lastCheckpointAt ?? 0;
      await until(async () => {
        await Promise.all(Array.from({ length: 20 }, (_, i) => storage.send({ fromUser: 'a', toUser: 'b', message: `m${i}` })));
        return ((await storage.stats()).lastCheckpointAt ?? 0) > before;
      }, 'a checkpoint after the store\'s own writes');
      // Two more polls' worth of quiet: a spurious resync would show by then.
      await new Promise((r) => setTimeout(r, 600));
      assert.equal(resyncs, 0, 'own commits and checkpoints are not another process\'s');

      // Another process's commit, as `postbox users remove` or `import` makes one.
      const other = new Database(path);
      try {
        other.prepare("INSERT INTO users (id, created_at) VALUES ('cli-made', ?)").run(Date.now());
      } finally {
        other.close();
      }
      await until(() => resyncs > 0, 'a resync after another connection\'s commit', 5_000);
      assert.equal(resyncs, 1);
    } finally {
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
