/**
 * Online backup and restore of a SQLite store, through SQLite's backup API rather than a
 * copy of the file: a file copied while the server writes can catch the database half
 * folded back from its WAL, and restores as a corrupt store.
 *
 * The backup reads one consistent snapshot while the server keeps serving and writing (in
 * WAL mode a reader never blocks the writer, nor the writer a reader), so the copy holds
 * every message committed before it began. It is written beside its destination under a
 * temporary name, checked (`PRAGMA integrity_check`, counts), made a self-contained file
 * (no WAL beside it) and only then renamed into place: a file at the destination is always
 * a whole, verified backup.
 */
import { closeSync, existsSync, openSync, readSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { CONNECTION_PRAGMAS } from './rows.js';
import { resolveStorePath } from './store-path.js';

/** What a store file holds, as a backup or a restore reports it. */
export interface StoreFileReport {
  path: string;
  bytes: number;
  users: number;
  tokens: number;
  messages: number;
  /** The highest message id in the file, or null without messages. */
  lastId: string | null;
}

/** Raised for a file that cannot be used as asked; its message is meant for a person. */
export class BackupError extends Error {
  override name = 'BackupError';
}

/**
 * Pages copied per step of the backup. SQLite restarts a backup whose source another
 * connection changed between two steps, so under steady writes small steps could restart
 * for ever; the first step is SQLite's default and every later one copies the rest at once,
 * inside one read snapshot.
 */
function pagesPerStep({ totalPages }: { totalPages: number; remainingPages: number }): number {
  return Math.max(totalPages, 100);
}

/**
 * Checks a store file and counts what it holds; throws {@link BackupError} if SQLite finds
 * it damaged or it is not a Postbox store.
 */
export function verifyStoreFile(path: string): StoreFileReport {
  if (!existsSync(path)) throw new BackupError(`${path} does not exist`);
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new BackupError(`${path} cannot be opened as SQLite: ${(err as Error).message}`);
  }
  try {
    let problems: string[];
    try {
      problems = (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check);
    } catch (err) {
      if (looksLikeExport(path)) {
        throw new BackupError(`${path} is not a SQLite backup: this looks like an export (JSON Lines): use \`postbox import ${path}\``);
      }
      throw new BackupError(`${path} is not a SQLite database: ${(err as Error).message}`);
    }
    if (problems.length !== 1 || problems[0] !== 'ok') {
      throw new BackupError(`${path} failed SQLite's integrity check: ${problems.slice(0, 5).join('; ')}`);
    }
    const tables = new Set(db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").pluck().all() as string[]);
    for (const t of ['messages', 'users', 'tokens', 'schema_migrations']) {
      if (!tables.has(t)) throw new BackupError(`${path} is not a Postbox store (it has no ${t} table)`);
    }
    const count = (table: string) => db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
    const last = db.prepare('SELECT max(seq) FROM messages').pluck().get() as number | null;
    return {
      path, bytes: statSync(path).size,
      users: count('users'), tokens: count('tokens'), messages: count('messages'), lastId: last === null ? null : String(last),
    };
  } finally {
    db.close();
  }
}

/**
 * Copies the store at `source` to `out` while it may be in use, and verifies the copy.
 * Refuses to overwrite an existing `out` unless `replace`.
 */
export async function backupSqlite(source: string, out: string, options: { replace?: boolean } = {}): Promise<StoreFileReport> {
  checkDestination(source, out, options.replace === true);
  const partial = `${out}.partial-${process.pid}`;
  const db = new Database(source, { fileMustExist: true });
  try {
    for (const p of CONNECTION_PRAGMAS) db.pragma(p);
    await db.backup(partial, { progress: pagesPerStep });
  } catch (err) {
    removeStoreFiles(partial);
    throw cannotWrite(out, err);
  } finally {
    db.close();
  }
  try {
    selfContained(partial);
    const report = verifyStoreFile(partial);
    try {
      renameSync(partial, out);
    } catch (err) {
      throw cannotWrite(out, err);
    }
    return { ...report, path: out };
  } catch (err) {
    removeStoreFiles(partial);
    throw err;
  }
}

/**
 * The files SQLite and Postbox keep beside a store: replacing one of them under a running
 * server is as bad as replacing the store (its WAL and shared memory belong to that file;
 * its serve lock keeps a second server out).
 */
const BESIDE_STORE = ['', '-wal', '-shm', '-journal', '.serve-lock', '.serve-lock-journal'];

/**
 * Refuses, in a sentence, a destination a backup cannot be put at, before a page is copied:
 * the store itself or a file beside it (even with `replace`: renamed over the store, the
 * backup would leave its server writing to a file that is no longer there, every send a 503),
 * a directory (even with `replace`: a backup never replaces one), a file that is there
 * without `replace`, a directory that does not exist (the README's dated example names one
 * that a new server may not have yet).
 */
function checkDestination(source: string, out: string, replace: boolean): void {
  // Compared as real paths, so a symlink or another spelling of the store is caught too.
  const store = resolveStorePath(source);
  let target: string;
  try {
    target = resolveStorePath(out);
  } catch {
    // Not a path a file can be at (ENOTDIR, ELOOP, …): the checks below say why.
    target = resolve(out);
  }
  if (BESIDE_STORE.some((suffix) => target === `${store}${suffix}`) || sameFile(store, target)) {
    throw new BackupError(`${out} is the store being backed up (or a file SQLite keeps beside it); give a file elsewhere, e.g. --out ${join(dirname(store), 'postbox-backup.db')}`);
  }
  let found;
  try {
    found = statSync(out);
  } catch {
    found = undefined;
  }
  if (found?.isDirectory()) throw new BackupError(`${out} is a directory; give a file in it, e.g. --out ${join(out, 'postbox-backup.db')}`);
  if (found && !replace) throw new BackupError(`${out} already exists; give another file, or --force to replace it`);
  const dir = dirname(resolve(out));
  let parent;
  try {
    parent = statSync(dir);
  } catch {
    parent = undefined;
  }
  if (!parent) throw new BackupError(`the directory ${dir} does not exist; create it first (mkdir -p ${dir}) or give another --out`);
  if (!parent.isDirectory()) throw new BackupError(`${dir} is not a directory; give another --out`);
}

/** Whether two paths name one file (a hard link to the store has a path of its own). */
function sameFile(a: string, b: string): boolean {
  try {
    const x = statSync(a);
    const y = statSync(b);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/** A failure to write the backup's file, said for a person (the cause kept for a bug report). */
function cannotWrite(out: string, err: unknown): BackupError {
  const code = (err as { code?: unknown }).code;
  const why = code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'SQLITE_READONLY' || code === 'SQLITE_CANTOPEN'
    ? 'this process may not write there (read-only, or no permission)'
    : code === 'ENOSPC' || code === 'SQLITE_FULL' ? 'the disk is full' : (err as Error).message;
  return new BackupError(`cannot write the backup to ${out}: ${why}`, { cause: err });
}

/**
 * Fills the SQLite store at `target` from the backup at `backup`, page for page (the last
 * id handed out and idempotency keys included). The caller makes sure no server uses
 * `target` and decides whether a non-empty one may be replaced.
 */
export async function restoreSqlite(backup: string, target: string): Promise<StoreFileReport> {
  verifyStoreFile(backup);
  // Built beside the target and renamed over it only once whole: a restore that fails
  // halfway leaves the store it was replacing as it was.
  const partial = `${target}.restoring-${process.pid}`;
  const src = new Database(backup, { readonly: true, fileMustExist: true });
  try {
    await src.backup(partial, { progress: pagesPerStep });
    const db = new Database(partial);
    try {
      for (const p of CONNECTION_PRAGMAS) db.pragma(p);
      // The server's mode: readers beside the writer.
      db.pragma('journal_mode = WAL');
    } finally {
      db.close();
    }
    verifyStoreFile(partial);
  } catch (err) {
    removeStoreFiles(partial);
    throw err;
  } finally {
    src.close();
  }
  // The partial is whole in its own file (its writer checkpointed on close); the empty log
  // and shared memory the read-only check left beside it would otherwise stay behind under
  // the partial's name for good.
  removeSideFiles(partial);
  // The replaced store's log and shared memory must not be read against the new file.
  removeStoreFiles(target);
  renameSync(partial, target);
  return verifyStoreFile(target);
}

/** Whether a file starts as `postbox export` writes (a JSON object on its first line): a mix-up of restore and import. */
function looksLikeExport(path: string): boolean {
  const head = Buffer.alloc(16);
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const n = readSync(fd, head, 0, head.length, 0);
    return /^\s*\{"type":/.test(head.subarray(0, n).toString('utf8'));
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Folds a fresh copy's log into the file, so the backup is one file a person can move. */
function selfContained(path: string): void {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = DELETE');
  } finally {
    db.close();
  }
}

/** Removes a store file and SQLite's files beside it. */
export function removeStoreFiles(path: string): void {
  rmSync(path, { force: true });
  removeSideFiles(path);
}

/** Removes SQLite's files beside a store, leaving the store. */
function removeSideFiles(path: string): void {
  for (const suffix of ['-wal', '-shm', '-journal']) rmSync(`${path}${suffix}`, { force: true });
}
