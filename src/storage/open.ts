/**
 * Opens the backend a configuration names.
 */
import type { StorageLocation } from '../config.js';
import { migratePostgres, openPostgresStorage } from './postgres/postgres-storage.js';
import { migrateSqlite, openSqliteStorage } from './sqlite/sqlite-storage.js';
import type { Storage, StorageLogger } from './storage.js';

/** Settings every backend takes. */
export interface OpenOptions {
  durability: 'fsync' | 'relaxed';
  /** PostgreSQL: pooled connections per process (SQLite has one reader and one writer). */
  poolSize?: number;
  /** Where a backend reports trouble no caller hears (a failing listener, PostgreSQL reconnecting). */
  logger?: StorageLogger;
  /** Look the store over as it opens, as a server does (SQLite's quick_check); PostgreSQL checks its own. */
  checkOnOpen?: boolean;
}

/** Opens, and migrates to the newest schema, the store at `location`. */
export function openStorage(location: StorageLocation, options: OpenOptions): Promise<Storage> {
  switch (location.kind) {
    case 'sqlite':
      return Promise.resolve(openSqliteStorage({
        path: location.path, durability: options.durability, logger: options.logger, checkOnOpen: options.checkOnOpen === true,
      }));
    case 'postgres':
      return openPostgresStorage({
        url: location.url, durability: options.durability, poolSize: options.poolSize, logger: options.logger,
      });
  }
}

/** Brings the store at `location` to the newest schema; answers the migration versions applied. */
export function migrateStore(location: StorageLocation): Promise<number[]> {
  switch (location.kind) {
    case 'sqlite':
      return Promise.resolve(migrateSqlite(location.path));
    case 'postgres':
      return migratePostgres(location.url);
  }
}
