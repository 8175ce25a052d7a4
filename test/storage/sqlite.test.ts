/**
 * The Storage contract on SQLite: a fresh database file per test.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { openSqliteStorage } from '../../src/storage/sqlite/sqlite-storage.js';
import { tempDir } from '../helpers/server.js';
import { storageContract } from './storage.contract.js';

storageContract('sqlite', async () => {
  const dir = await tempDir('postbox-sqlite-');
  const path = join(dir, 'store.db');
  return {
    storage: openSqliteStorage({ path, durability: 'fsync' }),
    reopen: () => Promise.resolve(openSqliteStorage({ path, durability: 'fsync' })),
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
});
