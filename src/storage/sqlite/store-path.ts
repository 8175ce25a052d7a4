/**
 * The one spelling of a SQLite store's path. SQLite follows a symlink to the file it opens
 * and names its `-wal` and `-shm` after the target, so everything Postbox keeps beside the
 * store or watches (the WAL it fsyncs, the serve lock, the file guard) must be named after
 * the target too: keyed on the path as typed, a symlinked store would fsync a WAL that does
 * not exist (every send a 503) and a second server through the link would not be refused.
 */
import { realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * The real path of the store at `path`: the file's own if it exists, else its directory's
 * (which must exist) and its name, as SQLite will create it. `:memory:` stays as it is.
 */
export function resolveStorePath(path: string): string {
  if (path === ':memory:' || path === '') return path;
  try {
    return realpathSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  try {
    return join(realpathSync(dirname(path)), basename(path));
  } catch {
    return resolve(path);
  }
}
