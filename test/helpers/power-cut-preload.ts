/**
 * A disk that can lose power, for test/power-cut.test.ts. Preloaded into a real
 * `postbox serve` process (`--import`), it keeps, in a directory of its own, a copy of what a
 * power cut at this moment would leave of the store: everything a *completed* fsync of the
 * `-wal` file covers, and nothing written after that fsync began.
 *
 * How: at the start of each fsync of the store's `-wal` file it copies the WAL and then the
 * database file into `pending-<n>`; once that fsync completes successfully it renames the
 * directory to `durable-<n>` (one atomic step) and drops the previous one, *before* the
 * server hears of the completion, so before any writer is answered, any listener told or any
 * reader let through on its strength. A failed fsync discards its copy. Until the first
 * fsync completes, `durable-0` holds the files as they were when the process started.
 * The directory with the highest number is the disk after a power cut; the test kills the
 * server with SIGKILL and puts that copy in place of the store.
 *
 * Why a copy taken on the main thread at the fsync's start is a consistent one:
 *  - Every SQLite write but a checkpoint happens on the main thread (the write connection,
 *    and migrations on the read connection), synchronously; WalSync starts an fsync only
 *    between transactions (right after a batch commits, when one fsync ends, or when a
 *    reader waits). While this code copies, no commit, WAL restart or WAL truncation (all
 *    main-thread work) can happen, so the WAL copy ends on a commit boundary and holds
 *    exactly the commits the fsync covers.
 *  - The checkpointer thread may be writing pages into the database file while it is being
 *    copied, so the copy of that file can mix old and new pages, even a torn page. Every
 *    page it writes comes from a WAL frame that was in the WAL before the checkpoint began,
 *    hence in the WAL copy taken just before; opened without its `-shm`, SQLite rebuilds the
 *    index from that WAL and reads each such page from it, never from the database file.
 *    That is why the WAL is copied first: were anything ever to shorten the WAL between the
 *    two copies (a RESTART or TRUNCATE checkpoint), it could only do so once the database
 *    file holds everything the WAL did, so the later database copy would be complete.
 *
 * What this model leaves out (see the test's comment too): it treats only this fsync as
 * making anything durable (the checkpointer's own fsyncs of the database file are not
 * modelled; the WAL covers what they would save), it keeps all of the database file written
 * before the copy (a real disk may have lost unsynced checkpoint pages, which the WAL copy
 * covers again), it does not model directory entries (the WAL file's creation) or a disk
 * that reorders or tears writes, and it ignores `-shm`, which SQLite rebuilds.
 *
 * Configured by the test through variables of the server's environment: POWER_CUT_DB (the
 * store's file), POWER_CUT_SNAPSHOTS (an empty directory for the copies) and, optionally,
 * POWER_CUT_LATENCY_MS (each WAL fsync first waits a random time up to this: a slower disk).
 * The product knows nothing of them; nothing in src/ reads them.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { basename, join } from 'node:path';
import { isMainThread } from 'node:worker_threads';

/** The durable copy of fsync generation `n` is `durable-<n>`, the name the test looks for. */
const DURABLE_PREFIX = 'durable-';

/** Copies the WAL (if it exists yet), then the database file (if it does), into a new directory `into`. */
function copyStore(db: string, into: string): void {
  fs.mkdirSync(into);
  // WAL first: see the module comment.
  for (const file of [`${db}-wal`, db]) {
    try {
      fs.copyFileSync(file, join(into, basename(file)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/** True if `fd` is open on the file at `path` now. */
function isFile(fd: number, path: string): boolean {
  let file: fs.Stats;
  try {
    file = fs.statSync(path);
  } catch {
    return false;
  }
  const open = fs.fstatSync(fd);
  return open.ino === file.ino && open.dev === file.dev;
}

function install(db: string, snapshots: string, maxLatencyMs: number): void {
  const wal = `${db}-wal`;
  let generation = 0;
  let durable = join(snapshots, `${DURABLE_PREFIX}0`);
  const initial = join(snapshots, 'pending-0');
  copyStore(db, initial);
  fs.renameSync(initial, durable);

  const realFsync = fs.fsync;
  const fsync = (fd: number, done: (err: NodeJS.ErrnoException | null) => void): void => {
    if (!isFile(fd, wal)) {
      realFsync(fd, done);
      return;
    }
    const n = ++generation;
    const pending = join(snapshots, `pending-${n}`);
    copyStore(db, pending);
    const sync = () => realFsync(fd, (err) => {
      if (err) {
        fs.rmSync(pending, { recursive: true, force: true });
      } else {
        // WalSync keeps one fsync in flight at a time, so completions come in generation order.
        const previous = durable;
        durable = join(snapshots, `${DURABLE_PREFIX}${n}`);
        fs.renameSync(pending, durable);
        fs.rmSync(previous, { recursive: true, force: true });
      }
      done(err);
    });
    // A slower disk: commits keep arriving while an fsync runs, and a cut drops them. (With
    // a fast disk and a busy client, the store is mostly idle and all durable when cut.)
    if (maxLatencyMs > 0) setTimeout(sync, Math.random() * maxLatencyMs);
    else sync();
  };
  fs.fsync = fsync as typeof fs.fsync;
  // wal-sync.ts imports `fsync` by name (an ESM binding of node:fs) and reads it when a
  // WalSync is constructed, long after this preload ran; re-syncing the bindings makes that
  // name this function.
  syncBuiltinESMExports();
}

// Worker threads may run preloads too; the WAL fsync is the main thread's alone.
if (isMainThread) {
  const db = process.env.POWER_CUT_DB;
  const snapshots = process.env.POWER_CUT_SNAPSHOTS;
  if (!db || !snapshots) throw new Error('power-cut-preload needs POWER_CUT_DB and POWER_CUT_SNAPSHOTS');
  install(db, snapshots, Number(process.env.POWER_CUT_LATENCY_MS ?? 0));
}
