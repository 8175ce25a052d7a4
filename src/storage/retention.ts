/**
 * Retention: the one scheduler that keeps a store bounded, over any backend.
 *
 * `POSTBOX_RETENTION` removes messages sent longer ago than a duration; `POSTBOX_INBOX_LIMIT`
 * keeps only the newest N messages of each inbox. Both are off unless set.
 *
 * - In the background, never in a request's path: a timer runs it, off the event loop's
 *   critical work, and a run is a series of small prune writes ({@link PRUNE_BATCH} messages
 *   each), each one short transaction through the store's group commit, and the next one waits
 *   while any other write is waiting: a send that arrives meanwhile waits at most for the
 *   one prune write being committed, as it would for another client's batch.
 * - Once per period for the whole store, and never two at once: a run starts only if this
 *   instance claims it (`claimTask`, a row of the store written under its write lock), so
 *   several PostgreSQL instances do not each prune, and a restarted one does not prune again
 *   at once. The claim is a lease held for the whole run: each prune write renews it in its
 *   own transaction and removes nothing if another instance has taken it over, so a long run
 *   (retention switched on over years of history) is never overlapped, and a crashed
 *   instance's claim runs out after {@link RetentionOptions.leaseMs}.
 * - Consistent: each prune write repairs conversation rows and unread counts as a delete
 *   does; it tells listeners nothing (pruned history is simply gone: a client paging past it
 *   finds it missing). Idempotency keys are left to expire on their own (24 h): a retried
 *   send still gets its first answer and is never stored twice.
 * - The inbox limit looks at every inbox once after start, then only at the inboxes that
 *   received messages since the last run (heard through the store's events, which on
 *   PostgreSQL include every instance's), so its cost follows the traffic, not the store.
 */
import { randomUUID } from 'node:crypto';
import type { Storage, StorageLogger, StoreEvent } from './storage.js';
import type { TaskLease } from './writes.js';

/** What to keep. */
export interface RetentionPolicy {
  /** Remove messages sent longer ago than this (ms). */
  maxAgeMs?: number | undefined;
  /** Keep only this many of the newest messages of each inbox. */
  inboxLimit?: number | undefined;
}

/** One run, as `/metrics` reports it. */
export interface RetentionRun {
  /** When it started (ms). */
  at: number;
  removed: number;
  durationMs: number;
}

/** Messages removed by one prune write: a millisecond or two of the writer. */
export const PRUNE_BATCH = 100;

/** How long pruning steps aside, between two of its writes, while other writes wait... */
const YIELD_MS = 2;
/** ...at most this many times in a row, so that under steady load it still gets its turn. */
const MAX_YIELDS = 10;

/** The name of the task in the store's claims. */
export const RETENTION_TASK = 'retention';

/**
 * How long a claim outlives its last renewal: far longer than one prune write, so a busy
 * store never takes a live run's claim away, and short enough that a crashed instance holds
 * up retention only for a minute.
 */
export const LEASE_MS = 60_000;

/** How often a policy runs: a tenth of the retention, between one second and one minute. */
export function retentionPeriod(policy: RetentionPolicy): number {
  const fromAge = policy.maxAgeMs === undefined ? 60_000 : policy.maxAgeMs / 10;
  return Math.round(Math.min(60_000, Math.max(1000, fromAge)));
}

/** Whether a policy removes anything at all. */
export function retentionEnabled(policy: RetentionPolicy): boolean {
  return policy.maxAgeMs !== undefined || policy.inboxLimit !== undefined;
}

/** Options of a {@link Retention}. */
export interface RetentionOptions {
  logger?: StorageLogger | undefined;
  /** The clock retention reads; tests may move it. */
  now?: () => number;
  /** Overrides {@link retentionPeriod}. */
  periodMs?: number;
  /** Overrides {@link LEASE_MS}. */
  leaseMs?: number;
  /** Overrides {@link PRUNE_BATCH}. */
  batch?: number;
}

/** See the module comment. */
export class Retention {
  private readonly now: () => number;
  readonly periodMs: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<RetentionRun | undefined> | undefined;
  private stopped = false;
  /** Inboxes that received messages since the last run; undefined until the first full walk is done. */
  private touched: Set<string> | undefined;
  private readonly unsubscribe: () => void;
  private lastRun: RetentionRun | undefined;
  private removedTotal = 0;
  private skippedTotal = 0;
  /** This instance, as the claims row names it while it runs. */
  readonly holder = randomUUID();
  private readonly lease: TaskLease;

  constructor(private readonly storage: Storage, private readonly policy: RetentionPolicy, private readonly options: RetentionOptions = {}) {
    this.now = options.now ?? Date.now;
    this.periodMs = options.periodMs ?? retentionPeriod(policy);
    this.lease = { task: RETENTION_TASK, holder: this.holder, leaseMs: options.leaseMs ?? LEASE_MS };
    this.unsubscribe = policy.inboxLimit === undefined ? () => undefined : storage.onEvents((events) => this.heard(events));
  }

  /** The last run this instance made, if any. */
  get last(): RetentionRun | undefined {
    return this.lastRun;
  }

  /** Messages this instance's runs removed since it started. */
  get removed(): number {
    return this.removedTotal;
  }

  /** Runs this instance did not make because another instance held the claim or had just run. */
  get skipped(): number {
    return this.skippedTotal;
  }

  /** Runs once a period from now on, until {@link stop} (the first a period after start: a restart does not prune at once). */
  start(): void {
    const tick = () => {
      this.timer = undefined;
      void this.runOnce().finally(() => {
        if (!this.stopped) this.schedule(tick, this.periodMs);
      });
    };
    this.schedule(tick, this.periodMs);
  }

  /** Stops the timer and waits for a run under way to finish its current batch. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.unsubscribe();
    await this.running?.catch(() => undefined);
  }

  /**
   * One run, if this instance claims the period (undefined when another instance, or an
   * earlier run, already has it). A run already under way is joined, not repeated.
   */
  runOnce(): Promise<RetentionRun | undefined> {
    this.running ??= this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  private schedule(fn: () => void, ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(fn, ms);
    // Pruning is never owed to anyone: it must not keep a finished process alive.
    this.timer.unref();
  }

  private heard(events: readonly StoreEvent[]): void {
    if (!this.touched) return;
    for (const e of events) if (e.type === 'message') this.touched.add(e.message.toUser);
  }

  private async run(): Promise<RetentionRun | undefined> {
    const at = this.now();
    const started = performance.now();
    // Half a period: a claim made a little early by a slower timer still finds the last one due.
    const claim = { holder: this.holder, everyMs: this.periodMs / 2, leaseMs: this.lease.leaseMs };
    if (!(await this.storage.claimTask(RETENTION_TASK, claim))) {
      this.skippedTotal++;
      return undefined;
    }
    let removed = 0;
    try {
      if (this.policy.maxAgeMs !== undefined) {
        removed += await this.pruneAll({ before: at - this.policy.maxAgeMs });
      }
      if (this.policy.inboxLimit !== undefined) removed += await this.pruneInboxes(this.policy.inboxLimit);
    } catch (err) {
      // Whatever inboxes it had yet to look at, the next run looks at all of them again.
      this.touched = undefined;
      this.options.logger?.warn({ err, removed }, 'retention stopped early; the next run goes on');
    }
    // The next run, here or elsewhere, is due a period from now; a failed release only means
    // the lease runs out first.
    await this.storage.releaseTask(RETENTION_TASK, this.holder).catch((err: unknown) => {
      this.options.logger?.warn({ err }, 'retention could not release its claim; it runs out on its own');
    });
    const run = { at, removed, durationMs: performance.now() - started };
    this.lastRun = run;
    this.removedTotal += removed;
    if (removed > 0) this.options.logger?.info({ removed, ms: Math.round(run.durationMs) }, 'retention removed old messages');
    return run;
  }

  /** Prunes in small writes until nothing of the kind is left, letting other work in between. */
  private async pruneAll(which: { before: number } | { inbox: string; upTo: number }): Promise<number> {
    let removed = 0;
    for (;;) {
      if (this.stopped) return removed;
      const result = await this.storage.prune({ ...which, limit: this.options.batch ?? PRUNE_BATCH, lease: this.lease });
      if (result.lost) throw new Error('another instance took the retention claim over (this one was stalled past its lease)');
      removed += result.removed;
      if (!result.more) return removed;
      // Requests first: while any write waits for a commit, the next prune write waits, so a
      // send rarely shares a batch with pruning, and waits for one prune write at most.
      // Under steady load it goes anyway after a few rounds, or it would never finish.
      let rounds = 0;
      do await new Promise((resolve) => setTimeout(resolve, YIELD_MS));
      while (this.storage.pendingWrites > 0 && ++rounds < MAX_YIELDS && !this.stopped);
    }
  }

  private async pruneInboxes(keep: number): Promise<number> {
    let removed = 0;
    const trim = async (user: string) => {
      const upTo = await this.storage.inboxCutoff(user, keep);
      if (upTo !== null) removed += await this.pruneAll({ inbox: user, upTo });
    };
    if (this.touched) {
      const users = [...this.touched];
      this.touched = new Set();
      for (const user of users) await trim(user);
      return removed;
    }
    // The first run walks every inbox; messages arriving meanwhile are heard from here on.
    this.touched = new Set();
    for (let user = await this.storage.nextInbox(''); user !== null && !this.stopped; user = await this.storage.nextInbox(user)) {
      await trim(user);
    }
    return removed;
  }
}
