/**
 * SQLite's batch runner: each batch commits on the main thread, on the store's one write
 * connection, with `synchronous = NORMAL` in WAL mode, so a commit is an append to the
 * `-wal` file with no wait on the disk; in `fsync` durability the batch is then made
 * durable by the WAL fsync off the event loop (wal-sync.ts), which its writers, its
 * listeners and every reader wait for (the core's `settled` and read gate).
 *
 * This replaces a writer thread whose only job was to keep the fsync off the event loop:
 * handing each batch to it and back cost more CPU than the commit itself. Checkpoints
 * still run off the event loop, on the checkpointer thread (checkpointer.ts).
 */
import type { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { StorageDamaged, unavailable } from '../failures.js';
import type { BatchResult } from '../group-commit.js';
import type { StoreWrite } from '../writes.js';
import { CONNECTION_PRAGMAS } from './rows.js';
import { siblingModule, startWorker } from './threads.js';
import { WalSync, type Fsync } from './wal-sync.js';
import { WriteSide } from './write-ops.js';

const CHECKPOINTER = siblingModule('checkpointer');
/**
 * How long after its first batch a store starts its checkpointer. The WAL needs folding
 * back only once it has grown; a store opened for a moment (a command, a test) never
 * pays for starting a thread, and closing folds its WAL back anyway.
 */
const CHECKPOINTER_DELAY_MS = 1000;
/**
 * How long a batch keeps trying to take the write lock from another connection (a
 * checkpoint, another process) before its writers get a 503. It tries again off the event
 * loop: waiting inside SQLite's busy handler would stall every request of this process.
 */
const LOCK_WAIT_MS = 5000;
/** The pause between two tries for the write lock. */
const LOCK_RETRY_MS = 2;

/** Settings of a {@link MainWriter}. */
export interface MainWriterOptions {
  path: string;
  durability: 'fsync' | 'relaxed';
  /** The WAL fsync (tests hold it back to watch what waits for it). */
  fsync?: Fsync;
  /**
   * Asked before each batch: why it must not commit (the store's file was deleted or
   * replaced), or null. A batch committed into a lost file would be answered and then lost.
   */
  refuse?: () => string | null;
}

/** True for SQLite's errors that mean the database file is damaged. */
export function isCorruption(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' || (typeof code === 'string' && code.startsWith('SQLITE_CORRUPT_'));
}

/** See the module comment. */
export class MainWriter {
  /** The durability step, in `fsync` durability. */
  readonly wal: WalSync | undefined;
  private readonly db: Database.Database;
  private readonly side: WriteSide;
  private checkpointer: Worker | undefined;
  private checkpointerTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** When the checkpointer last folded the WAL back (ms), for metrics. */
  lastCheckpointAt: number | null = null;
  private readonly dataVersion: Database.Statement;
  private seenVersion: number;

  constructor(private readonly options: MainWriterOptions) {
    const db = new Database(options.path);
    try {
      for (const p of CONNECTION_PRAGMAS) db.pragma(p);
      db.pragma('journal_mode = WAL');
      // Never wait for the lock inside SQLite, on the event loop: run() tries again instead.
      db.pragma('busy_timeout = 0');
      // Durability is the WAL fsync's job, not the commit's (see the module comment).
      db.pragma('synchronous = NORMAL');
      // Checkpoints are the checkpointer thread's job, never a commit's (see checkpointer.ts);
      // after one completes, SQLite cuts a grown WAL file back to this size.
      db.pragma('wal_autocheckpoint = 0');
      db.pragma(`journal_size_limit = ${64 * 1024 * 1024}`);
      this.side = new WriteSide(db);
    } catch (err) {
      db.close();
      throw err;
    }
    this.db = db;
    // On this connection data_version moves only for commits made through another one:
    // the read connection never writes, so only another process's commits move it.
    this.dataVersion = db.prepare('PRAGMA data_version').pluck();
    this.seenVersion = this.dataVersion.get() as number;
    this.wal = options.durability === 'fsync' ? new WalSync(`${options.path}-wal`, options.fsync) : undefined;
  }

  /** Commits one batch; in `fsync` durability it settles once the WAL fsync covering it completes. */
  run(writes: readonly StoreWrite[], deadline = Date.now() + LOCK_WAIT_MS): Promise<BatchResult> {
    const refused = this.options.refuse?.();
    if (refused) return Promise.reject(unavailable(`storage cannot take writes: ${refused}`));
    let replies;
    try {
      replies = this.side.applyBatch(writes);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'SQLITE_BUSY' && Date.now() < deadline) {
        return new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS)).then(() => this.run(writes, deadline));
      }
      // Damage does not pass: a retryable 503 would have clients retry it for ever.
      if (isCorruption(err)) return Promise.reject(new StorageDamaged(err, 'a write hit a corrupt page'));
      return Promise.reject(unavailable(`storage could not commit: ${code ?? 'error'}`, err));
    }
    this.checkpointerTimer ??= setTimeout(() => this.startCheckpointer(), CHECKPOINTER_DELAY_MS).unref();
    const outbox = this.side.wroteOutbox;
    return Promise.resolve(this.wal ? { replies, settled: this.wal.committed(), outbox } : { replies, outbox });
  }

  /**
   * Whether another process committed to the file since the last ask (a `postbox` command
   * beside the server: a user removed, an import). Asked between batches, never inside one.
   */
  committedElsewhere(): boolean {
    if (this.closed) return false;
    let now: number;
    try {
      now = this.dataVersion.get() as number;
    } catch {
      // The file is busy or away: the writes' own path reports that; ask again next time.
      return false;
    }
    if (now === this.seenVersion) return false;
    this.seenVersion = now;
    return true;
  }

  /** Stops the checkpointer, then folds the WAL back so a stopped store is one self-contained file. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.checkpointerTimer);
    const checkpointer = this.checkpointer;
    this.checkpointer = undefined;
    if (checkpointer) {
      const exited = new Promise<void>((resolve) => checkpointer.once('exit', () => resolve()));
      checkpointer.ref();
      checkpointer.postMessage({ close: true });
      await exited;
    }
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      this.db.close();
      this.wal?.close();
    }
  }

  /** Started a while after the first batch (see CHECKPOINTER_DELAY_MS). */
  private startCheckpointer(): void {
    if (this.checkpointer || this.closed) return;
    const synchronous = this.options.durability === 'fsync' ? 'FULL' : 'NORMAL';
    this.checkpointer = startWorker(CHECKPOINTER, { path: this.options.path, synchronous });
    this.checkpointer.on('error', () => (this.checkpointer = undefined));
    this.checkpointer.on('message', (m: { checkpointAt?: number }) => {
      if (typeof m.checkpointAt === 'number') this.lastCheckpointAt = m.checkpointAt;
    });
    // Its work is never owed to anyone: it must not keep a finished process alive. (After
    // the listener: adding a message listener refs the worker again.)
    this.checkpointer.unref();
  }
}
