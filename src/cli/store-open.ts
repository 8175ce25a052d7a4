/**
 * The rules by which the store commands open a store, and how they explain a store they
 * cannot open.
 *
 * Only a command that means to create a store may create one (`users add`, `import`,
 * `restore`, `migrate`, and the server): SQLite creates a file for any path it is given, so
 * a mistyped `--db sqlite:` for `users list` or `export` would otherwise answer "no users"
 * from a fresh empty store and leave that file behind. A PostgreSQL database that does not
 * exist, or cannot be reached, is told in one sentence saying what to do, never as the
 * driver's stack trace.
 */
import { existsSync } from 'node:fs';
import type { StorageLocation } from '../config.js';

/** A store the command cannot use, said for a person: exit code 1. */
export class StoreOpenError extends Error {
  override name = 'StoreOpenError';
}

/** Whether a command may bring a store into being or needs one that exists. */
export type OpenIntent = 'create' | 'existing';

/**
 * Refuses, before anything is opened, a SQLite store that does not exist for a command
 * that must not create one. PostgreSQL databases are never created by Postbox, so there is
 * nothing to check there before connecting.
 */
export function checkStoreExists(location: StorageLocation, intent: OpenIntent, source: string): void {
  if (intent === 'create' || location.kind !== 'sqlite' || location.path === ':memory:') return;
  if (existsSync(location.path)) return;
  throw new StoreOpenError(
    `there is no SQLite store at ${location.path} (from ${source}). Check the path; ` +
      'this command only reads a store and does not create one (postbox serve, migrate, import, restore and users add do).',
  );
}

/**
 * Refuses, before anything is opened for writing, an existing SQLite file a command that
 * only reads must not touch: one that is not a Postbox store (opening it would migrate it
 * into one) and, unless `olderIsFine` (a backup copies a store as it is), one whose schema
 * is older or newer than this Postbox's (opening it would migrate it). Nothing to do for a
 * command that may create a store, or for PostgreSQL.
 */
export async function checkStoreSchema(location: StorageLocation, intent: OpenIntent, options: { olderIsFine?: boolean } = {}): Promise<void> {
  if (intent === 'create' || location.kind !== 'sqlite' || location.path === ':memory:' || !existsSync(location.path)) return;
  const { sqliteSchemaStanding } = await import('../storage/check.js');
  const { version, expected, notSqlite } = sqliteSchemaStanding(location.path);
  const path = location.path;
  if (notSqlite !== undefined) throw new StoreOpenError(`${path} is not a Postbox store (it is not a SQLite database: ${notSqlite}); check the path.`);
  if (version === null) throw new StoreOpenError(`${path} is not a Postbox store (it has no Postbox schema); check the path.`);
  if (version > expected) {
    throw new StoreOpenError(`${path} has a newer schema (version ${version}) than this Postbox knows (${expected}); upgrade Postbox.`);
  }
  if (version < expected && !options.olderIsFine) {
    throw new StoreOpenError(`${path} holds an older Postbox schema (version ${version}; this Postbox needs ${expected}): ` +
      'run `postbox migrate` first (this command only reads a store and does not change it).');
  }
}

/** The first error in a chain of causes that carries a driver code, if any. */
function codedCause(err: unknown): { code: string; message: string } | undefined {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$|^E[A-Z]+$/.test(code)) {
      const message = (e as { message?: unknown }).message;
      return { code, message: typeof message === 'string' ? message : '' };
    }
  }
  return undefined;
}

/** The parts of a PostgreSQL URL a person needs to act on a failure. */
function pgParts(url: string): { host: string; port: string; user: string; database: string } {
  const u = new URL(url);
  return {
    host: decodeURIComponent(u.hostname) || 'localhost',
    port: u.port || '5432',
    user: decodeURIComponent(u.username) || 'postgres',
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || decodeURIComponent(u.username) || 'postgres',
  };
}

/**
 * A sentence for a person about why the store at `location` could not be opened, or
 * undefined when the failure is not one a person can fix by setup (then it is a bug, and
 * its trace is worth having).
 */
export function explainOpenFailure(location: StorageLocation, err: unknown): string | undefined {
  if (location.kind !== 'postgres') return undefined;
  const cause = codedCause(err);
  if (!cause) return undefined;
  const { host, port, user, database } = pgParts(location.url);
  switch (cause.code) {
    case '3D000':
      return `the PostgreSQL database "${database}" does not exist on ${host}:${port}. Create it first, ` +
        `e.g. createdb -h ${host} -p ${port} -U ${user} ${database} (or CREATE DATABASE "${database}"; in psql), then run this again.`;
    case '3F000':
      return `a schema named in the URL's search_path does not exist in "${database}" on ${host}:${port}; create it (CREATE SCHEMA …) or fix the URL.`;
    case '28P01':
    case '28000':
      return `PostgreSQL at ${host}:${port} refused user "${user}": ${cause.message}. Check the user and password in the URL.`;
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
    case 'ETIMEDOUT':
      return `could not reach PostgreSQL at ${host}:${port} (${cause.code}). Is it running, and is the URL right?`;
    default:
      return `PostgreSQL at ${host}:${port} said: ${cause.message} (SQLSTATE ${cause.code}).`;
  }
}
