/**
 * Opens the backend a configuration names.
 */
import type { StorageLocation } from '../config.js';
import { openSqliteStorage } from './sqlite/sqlite-storage.js';
import type { Storage } from './storage.js';

/** Settings every backend takes. */
export interface OpenOptions {
  durability: 'fsync' | 'relaxed';
}

/** Opens, and migrates to the newest schema, the store at `location`. */
export function openStorage(location: StorageLocation, options: OpenOptions): Promise<Storage> {
  switch (location.kind) {
    case 'sqlite':
      return Promise.resolve(openSqliteStorage({ path: location.path, durability: options.durability }));
    case 'postgres':
      return Promise.reject(new Error('PostgreSQL storage is not available in this build'));
  }
}
