/**
 * `postbox check`: is the store whole? SQLite runs its own integrity check over every page,
 * and every stored message's JSON is looked at as a read would (failures.ts); PostgreSQL
 * (which keeps its pages itself) is asked for the schema version and a full
 * read of each table. Neither changes anything; neither migrates.
 */
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { StorageLocation } from '../config.js';
import { MIGRATIONS as PG_MIGRATIONS } from './postgres/migrations.js';
import { MIGRATIONS as SQLITE_MIGRATIONS } from './sqlite/migrations.js';
import { wireJsonIntact } from './failures.js';
import type { Migration } from './storage.js';

/**
 * The tables a store at schema `version` must have, read from the dialect's own migrations
 * (each backend's list is its own: SQLite keeps a `counters` table PostgreSQL has no need
 * of), so that a new migration's tables are checked without anyone remembering to list them.
 */
export function schemaTables(migrations: readonly Migration[], version: number): string[] {
  const tables = ['schema_migrations'];
  for (const m of migrations) {
    if (m.version > version) continue;
    for (const [, name] of m.sql.matchAll(/\bCREATE TABLE (?:IF NOT EXISTS )?(\w+)/gi)) tables.push(name!);
  }
  return tables;
}

/** The tables of `expected` that `present` lacks, each as a problem. */
function missingTables(expected: readonly string[], present: ReadonlySet<string>): string[] {
  return expected.filter((t) => !present.has(t)).map((t) => `table ${t} is missing`);
}

/** What a check found: nothing wrong when `problems` is empty. */
export interface CheckReport {
  /** The newest schema version the store has applied, or null if it has none. */
  schemaVersion: number | null;
  /** The newest version this Postbox knows. */
  expectedVersion: number;
  /** Each problem, for a person. */
  problems: string[];
}

/** Checks the store at `location` without changing it; rejects if a PostgreSQL store cannot be reached at all. */
export function checkStore(location: StorageLocation): Promise<CheckReport> {
  return location.kind === 'sqlite' ? Promise.resolve(checkSqlite(location.path)) : checkPostgres(location.url);
}

function versionProblems(version: number | null, expected: number): string[] {
  if (version === null) return ['the store has no schema (not a Postbox store, or never migrated)'];
  if (version > expected) return [`the store's schema (version ${version}) is newer than this Postbox knows (${expected}): upgrade Postbox`];
  if (version < expected) return [`the store's schema is at version ${version}; run postbox migrate to reach ${expected}`];
  return [];
}

/** The newest SQLite schema version this Postbox knows. */
const SQLITE_VERSION = Math.max(...SQLITE_MIGRATIONS.map((m) => m.version));

/** The newest schema version a SQLite store has applied, or null for a database with no Postbox schema. */
function sqliteSchemaVersion(db: Database.Database): number | null {
  const table = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'").get();
  if (table === undefined) return null;
  return (db.prepare('SELECT max(version) FROM schema_migrations').pluck().get() as number | null) ?? null;
}

/**
 * Where the SQLite file at `path` (which exists) stands, read without changing it: the one
 * detection behind both `postbox check` and the refusal of the commands that only read a
 * store (which must not migrate a store, nor make one of a file that is not).
 */
export function sqliteSchemaStanding(path: string): { version: number | null; expected: number; notSqlite?: string } {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    return { version: null, expected: SQLITE_VERSION, notSqlite: (err as Error).message };
  }
  try {
    return { version: sqliteSchemaVersion(db), expected: SQLITE_VERSION };
  } catch (err) {
    // SQLITE_NOTADB and the like: a file, but not a database.
    return { version: null, expected: SQLITE_VERSION, notSqlite: (err as Error).message };
  } finally {
    db.close();
  }
}

function checkSqlite(path: string): CheckReport {
  const expectedVersion = SQLITE_VERSION;
  if (!existsSync(path)) return { schemaVersion: null, expectedVersion, problems: [`there is no database file at ${path}`] };
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    return { schemaVersion: null, expectedVersion, problems: [`the database cannot be opened: ${(err as Error).message}`] };
  }
  const problems: string[] = [];
  let schemaVersion: number | null = null;
  try {
    try {
      const rows = db.pragma('integrity_check') as { integrity_check: string }[];
      const found = rows.map((r) => r.integrity_check).filter((r) => r !== 'ok');
      problems.push(...found.map((f) => `integrity: ${f}`));
      const fk = db.pragma('foreign_key_check') as unknown[];
      if (fk.length > 0) problems.push(`integrity: ${fk.length} rows refer to rows that do not exist`);
    } catch (err) {
      problems.push(`integrity: the check could not run: ${(err as Error).message}`);
    }
    try {
      schemaVersion = sqliteSchemaVersion(db);
    } catch {
      schemaVersion = null;
    }
    problems.push(...versionProblems(schemaVersion, expectedVersion));
    if (schemaVersion !== null) {
      // SQLite's integrity check reads every page of the tables there are; a dropped one it cannot miss.
      const present = new Set(db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").pluck().all() as string[]);
      problems.push(...missingTables(schemaTables(SQLITE_MIGRATIONS, schemaVersion), present));
      if (present.has('messages')) problems.push(...damagedMessages(db));
    }
  } finally {
    db.close();
  }
  return { schemaVersion, expectedVersion, problems };
}

/** How many damaged messages a check names (it counts them all). */
const NAMED_DAMAGE = 5;

/**
 * The messages whose stored JSON is not as the server wrote it: bytes overwritten inside a
 * value, which SQLite's integrity check (of its own structure) does not see.
 */
function damagedMessages(db: Database.Database): string[] {
  const bad: number[] = [];
  try {
    for (const [seq, json] of db.prepare('SELECT seq, json FROM messages').raw(true).iterate() as Iterable<[number, string]>) {
      if (!wireJsonIntact(json)) bad.push(seq);
    }
  } catch (err) {
    return [`integrity: the messages cannot all be read: ${(err as Error).message}`];
  }
  if (bad.length === 0) return [];
  return [`integrity: ${bad.length} stored message(s) are not the JSON the server wrote (overwritten bytes), ` +
    `ids ${bad.slice(0, NAMED_DAMAGE).join(', ')}${bad.length > NAMED_DAMAGE ? ', …' : ''}`];
}

async function checkPostgres(url: string): Promise<CheckReport> {
  const expectedVersion = Math.max(...PG_MIGRATIONS.map((m) => m.version));
  const client = new pg.Client({ connectionString: url, application_name: 'postbox check', connectionTimeoutMillis: 5000 });
  const problems: string[] = [];
  let schemaVersion: number | null = null;
  try {
    await client.connect();
  } catch (err) {
    // A database that is not there, or a server that does not answer, is not a finding about
    // the store: it is thrown, for the command to explain as every store command does.
    await client.end().catch(() => undefined);
    throw err;
  }
  try {
    try {
      schemaVersion = (await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations')).rows[0]?.v ?? null;
    } catch {
      schemaVersion = null;
    }
    problems.push(...versionProblems(schemaVersion, expectedVersion));
    if (schemaVersion !== null) {
      for (const table of schemaTables(PG_MIGRATIONS, schemaVersion)) {
        try {
          // A full read: a damaged page or a missing table fails here.
          await client.query(`SELECT count(*) FROM (SELECT * FROM ${table}) AS t`);
        } catch (err) {
          problems.push(`table ${table} cannot be read: ${(err as Error).message}`);
        }
      }
    }
  } finally {
    await client.end().catch(() => undefined);
  }
  return { schemaVersion, expectedVersion, problems };
}
