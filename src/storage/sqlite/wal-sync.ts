/**
 * SQLite's durability step: an fsync of the `-wal` file off the event loop (libuv's pool),
 * which makes every WAL-mode commit written before it began durable, whichever connection
 * wrote it. Commits themselves run with `synchronous = NORMAL` (an append to the WAL, no
 * fsync), so this is the one wait on the disk.
 *
 * One fsync is in flight at a time. A commit is durable once an fsync that *started after
 * it* has completed: commits made while one is in flight wait for the next, which starts as
 * soon as the current one ends and covers all of them, so under load one fsync serves a
 * whole cohort.
 *
 * The WAL file is opened lazily (it exists once the first commit wrote to it) and kept open:
 * checkpoints restart it in place, and SQLite removes it only when the last connection
 * closes, which the store's own connections prevent while it is open.
 */
import { fsync as nodeFsync, openSync, closeSync } from 'node:fs';

/** `fs.fsync`'s shape, injectable so a test can hold an fsync back. */
export type Fsync = (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => void;

interface Waiter {
  /** The commit count this waiter needs covered. */
  upTo: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** See the module comment. */
export class WalSync {
  private fd: number | undefined;
  /** Commits noted, and how many of them a completed fsync covers. */
  private commits = 0;
  private synced = 0;
  private syncing = false;
  private waiters: Waiter[] = [];
  private started = 0;
  private observer: ((seconds: number) => void) | undefined;

  constructor(private readonly walPath: string, private readonly fsync: Fsync = nodeFsync) {}

  /** True while some commit is not yet covered by a completed fsync. */
  get pending(): boolean {
    return this.synced < this.commits;
  }

  /** Notes a commit; resolves once an fsync that started after it has completed. */
  committed(): Promise<void> {
    this.commits++;
    return this.whenDurable();
  }

  /** Resolves once every commit noted so far is durable (at once if it already is). */
  whenDurable(): Promise<void> {
    if (!this.pending) return Promise.resolve();
    const upTo = this.commits;
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ upTo, resolve, reject }));
    if (!this.syncing) this.start();
    return done;
  }

  /** Tells `observer` how long each successful fsync took (`/metrics`'s fsync histogram). */
  observeSync(observer: (seconds: number) => void): void {
    this.observer = observer;
  }

  /** Closes the WAL file's descriptor (after the last commit was made durable). */
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private start(): void {
    const covering = this.commits;
    this.syncing = true;
    let fd: number;
    try {
      fd = this.fd ??= openSync(this.walPath, 'r');
    } catch (err) {
      this.finish(covering, err as Error);
      return;
    }
    this.started = performance.now();
    this.fsync(fd, (err) => {
      if (!err) this.observer?.((performance.now() - this.started) / 1000);
      this.finish(covering, err ?? undefined);
    });
  }

  private finish(covering: number, err: Error | undefined): void {
    this.syncing = false;
    // A failed fsync leaves those commits' fate unknown: their writers are told (a 503 they
    // may retry, which an idempotency key makes safe), and they count as settled so that
    // the store does not stall on them.
    this.synced = covering;
    const settled = this.waiters.filter((w) => w.upTo <= covering);
    this.waiters = this.waiters.filter((w) => w.upTo > covering);
    for (const w of settled) {
      if (err) w.reject(err);
      else w.resolve();
    }
    if (this.waiters.length > 0) this.start();
  }
}
