/**
 * One server per SQLite file.
 *
 * Two `postbox serve` processes on one file would both work, but live delivery would not
 * cross between them: each hears only its own commits, so a long-poll on one waits out its
 * timeout for a message sent through the other. Rather than poll the file for other
 * processes' commits, the second server is refused, and several instances are what
 * PostgreSQL is for.
 *
 * The lock is SQLite's own exclusive lock on a small file beside the store, held for the
 * server's life: the operating system drops it when the process ends however it ends (a
 * crash, a kill -9, a power cut), so a stale lock can never keep a server from starting.
 * Store commands (`users`, `export`, …) take no such lock: they work beside a running
 * server, as they always have.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { resolveStorePath } from './store-path.js';

/** Raised when another server already serves the file; its message is meant for a person. */
export class StoreInUseError extends Error {
  override name = 'StoreInUseError';
}

/** A held lock, and how to let go of it. */
export interface ServeLock {
  release(): void;
}

/** The lock file of the store at `path` (named after the real file, so a symlink to it shares the lock). */
export function serveLockPath(path: string): string {
  return `${resolveStorePath(path)}.serve-lock`;
}

/**
 * Takes the serve lock of the store at `path`, or throws {@link StoreInUseError} naming the
 * file if another server (in this process or another) holds it.
 */
export function acquireServeLock(path: string): ServeLock {
  if (path === ':memory:') return { release: () => undefined };
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(serveLockPath(path));
  try {
    db.pragma('busy_timeout = 0');
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY')) {
      throw new StoreInUseError(
        `another postbox server is already serving ${path}. One server serves one SQLite file ` +
          '(stop the other first); to run several instances, use PostgreSQL (DATABASE_URL=postgres://…).',
      );
    }
    throw err;
  }
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      try {
        db.exec('ROLLBACK');
      } finally {
        db.close();
      }
    },
  };
}

/** Whether a server holds the serve lock of the store at `path` right now. */
export function storeIsServed(path: string): boolean {
  try {
    acquireServeLock(path).release();
    return false;
  } catch (err) {
    if (err instanceof StoreInUseError) return true;
    throw err;
  }
}
