/**
 * Watches a SQLite store's own file. An open connection keeps writing into a file that was
 * unlinked (or replaced by another) under it: every send is answered and then lost with the
 * inode. So the guard notes the file's identity at open, looks again before every write
 * batch commits (one stat per batch, 3-4 µs: a batch committed after the
 * unlink is refused, not lost) and every second besides (so readiness notices without
 * writes), and once the file is gone or another, says so once in the log and from then on
 * refuses writes.
 *
 * It also answers the questions a readiness probe asks beyond "does a read work": is there
 * room on the disk, and may this process write the file and its directory.
 */
import { constants, statSync } from 'node:fs';
import { access, stat, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { StorageLogger } from '../storage.js';

/** Free bytes below which a write is not expected to commit (a batch, its WAL frames, a checkpoint). */
export const MIN_FREE_BYTES = 4 * 1024 * 1024;

/** How often the file's identity is checked. */
const WATCH_INTERVAL_MS = 1000;

/** See the module comment. */
export class FileGuard {
  private readonly identity: { dev: number; ino: number };
  private timer: NodeJS.Timeout | undefined;
  private lostReason: string | null = null;

  constructor(private readonly path: string, private readonly logger: StorageLogger | undefined) {
    const s = statSync(path);
    this.identity = { dev: s.dev, ino: s.ino };
  }

  /** Starts looking at the file every second (the timer does not keep the process alive). */
  start(): void {
    this.timer = setInterval(() => void this.check(), WATCH_INTERVAL_MS);
    this.timer.unref();
  }

  /** Stops looking. */
  stop(): void {
    clearInterval(this.timer);
  }

  /** Why the file this store opened is no longer the store's file, or null while it is. */
  get lost(): string | null {
    return this.lostReason;
  }

  /** Looks at the file now; answers (and remembers, logging once) why it is lost, or null. */
  async check(): Promise<string | null> {
    if (this.lostReason !== null) return this.lostReason;
    let found: { dev: number; ino: number } | NodeJS.ErrnoException;
    try {
      found = await stat(this.path);
    } catch (err) {
      found = err as NodeJS.ErrnoException;
    }
    return this.judge(found);
  }

  /**
   * {@link check} on the event loop, for the write path: asked before each batch commits, so
   * that no batch commits into a file that is no longer the store's.
   */
  checkNow(): string | null {
    if (this.lostReason !== null) return this.lostReason;
    let found: { dev: number; ino: number } | NodeJS.ErrnoException;
    try {
      found = statSync(this.path);
    } catch (err) {
      found = err as NodeJS.ErrnoException;
    }
    return this.judge(found);
  }

  /** Compares what a stat found with the file opened; remembers and logs (once) a loss. */
  private judge(found: { dev: number; ino: number } | NodeJS.ErrnoException): string | null {
    let reason: string | null = null;
    if (found instanceof Error) {
      if (found.code === 'ENOENT' || found.code === 'ENOTDIR') reason = 'the database file was deleted';
    } else if (found.dev !== this.identity.dev || found.ino !== this.identity.ino) {
      reason = 'the database file was replaced by another file';
    }
    if (reason !== null && this.lostReason === null) {
      this.lostReason = reason;
      this.logger?.error({ path: this.path, reason },
        `${reason} while the server had it open: refusing writes, which would be lost with it; restore the file and restart`);
    }
    return this.lostReason;
  }

  /**
   * Why a write could not commit now, or null: the file lost, the disk (nearly) full, or the
   * file or its directory not writable by this process (where SQLite keeps its WAL).
   */
  async writeProblem(): Promise<string | null> {
    const lost = await this.check();
    if (lost !== null) return lost;
    try {
      await access(this.path, constants.W_OK);
      await access(dirname(this.path), constants.W_OK);
    } catch {
      return 'the database file or its directory is read-only for this process';
    }
    try {
      const fs = await statfs(dirname(this.path));
      if (fs.bavail * fs.bsize < MIN_FREE_BYTES) return 'the disk holding the database is full';
    } catch {
      // A file system that cannot say how full it is: the write itself will tell.
    }
    return null;
  }
}
