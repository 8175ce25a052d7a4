/**
 * The look a SQLite store gets when a server opens it: SQLite's `quick_check` (the structure
 * of every page, not the values), so that a damaged store says so at start instead of
 * serving until a request meets the damage. `postbox check` goes further (integrity_check
 * and every message's JSON).
 *
 * A small store is looked at on the spot (a few ms); a large one on a thread of its own,
 * since reading a few hundred megabytes would hold the server's start (open-check-thread.ts).
 */
import { statSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { siblingModule, startWorker } from './threads.js';

/** Up to this size a store is checked on the spot, before the server answers anything. */
const ON_THE_SPOT_BYTES = 64 * 1024 * 1024;
/** How many problems a check names (SQLite stops looking after them). */
const NAMED = 10;

/** The problems `quick_check` finds on a connection; empty when the store is whole. */
export function quickCheck(db: Database.Database): string[] {
  let found: { quick_check: string }[];
  try {
    found = db.pragma(`quick_check(${NAMED})`, { simple: false }) as { quick_check: string }[];
  } catch (err) {
    // Damage bad enough that the check itself cannot walk the file is damage too.
    return [(err as Error).message];
  }
  // SQLite may answer one row of several lines, headed by the schema's name.
  const problems = found.flatMap((r) => r.quick_check.split('\n')).filter((line) => line !== '' && !line.startsWith('***'));
  return problems.length === 1 && problems[0] === 'ok' ? [] : problems;
}

/**
 * Checks the store at `path` (open on `db`), then tells `done` what it found: at once for a
 * store of up to `onTheSpotBytes`, later (from a thread) for a larger one. Answers a stop
 * for the thread, if any.
 */
export function checkOnOpen(
  db: Database.Database,
  path: string,
  done: (problems: string[]) => void,
  onTheSpotBytes = ON_THE_SPOT_BYTES,
): () => void {
  let size = 0;
  try {
    size = statSync(path).size;
  } catch {
    // No file to speak of (a store being created): nothing to check.
  }
  if (size <= onTheSpotBytes) {
    done(quickCheck(db));
    return () => undefined;
  }
  const worker = startWorker(siblingModule('open-check-thread'), { path });
  worker.unref();
  worker.once('message', (problems: string[]) => done(problems));
  worker.once('error', (err) => done([`the check could not run: ${err.message}`]));
  return () => void worker.terminate();
}
