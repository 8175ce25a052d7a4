/**
 * Group commit: the one engine every backend's writes go through, with the dialect's batch
 * runner injected.
 *
 * At most one batch is being committed at a time. Writes that arrive meanwhile wait in the
 * queue and go together as the next batch, so N concurrent sends cost one transaction (one
 * fsync, one turn of PostgreSQL's write lock), while a lone send goes at once and waits for
 * nothing but its own commit.
 *
 * Cohorts: when a batch commits, its clients are answered and send their next writes a
 * moment later. Flushing whatever has arrived by then splits busy clients into cohorts that
 * take turns, each paying a whole commit for part of the load. So when a batch commits, the
 * writers pending at that moment (those just answered, likely to come back, and those
 * already queued) become the target of the next batch: it goes when that many are queued,
 * or after {@link GATHER_MS}. A lone writer's target is 1: it goes at once.
 *
 * Settling: a runner may answer a batch as committed but not yet showable, with a
 * `settled` promise: PostgreSQL's until its own notifications came back through the change
 * feed (so that local listeners were told before any writer is answered); a runner whose
 * durability comes after its commit (a WAL fsync off the event loop) until that is done.
 * The next batch does not wait for it; the writers and the listeners do, in batch order.
 */
import { AppError } from '../errors.js';
import { unavailable } from './failures.js';
import type { StoreEvent } from './storage.js';
import { eventsOf, type StoreWrite, type StoreWriteResults, type WriteReply } from './writes.js';

/** What a dialect's runner answers for a committed batch. */
export interface BatchResult {
  /** One reply per write, in order. */
  replies: WriteReply[];
  /**
   * Resolves when the batch may be shown (listeners told, writers answered); rejects if it
   * turned out not to be durable after all (its writers then get a 503). Absent: at once.
   */
  settled?: Promise<void>;
  /** Whether the batch wrote webhook deliveries into the outbox. */
  outbox?: boolean;
}

/**
 * Commits one batch in one transaction; rejects only if the batch as a whole did not (or may
 * not have) commit(ted): every writer in it then gets a 503 it may retry, which an
 * idempotency key makes safe.
 */
export type BatchRunner = (writes: readonly StoreWrite[]) => Promise<BatchResult>;

/** Settings of a {@link GroupCommit}. */
export interface GroupCommitOptions {
  run: BatchRunner;
  /**
   * Told a settled batch's events, before any of its writers is answered, so that a client
   * that reads right after its answer finds every live view already told. Absent for a
   * dialect whose own change feed tells the listeners (PostgreSQL's LISTEN/NOTIFY).
   */
  publish?: EventSink;
  /**
   * Asked before each batch starts: a promise holds it back until it settles (readers are
   * waiting for what is visible to become durable; see core.ts's read gate).
   */
  hold?: () => Promise<void> | undefined;
  /**
   * Told once a batch that wrote webhook deliveries may be shown (with its listeners), so
   * that the dispatcher looks at once rather than at its next poll.
   */
  outbox?: () => void;
  /** Told of each committed batch: its size and how long the runner took to commit it. */
  observe?: (size: number, seconds: number) => void;
  /**
   * Whether a batch waits for the one before it to settle before it starts. For a runner
   * whose commits are cheap to make but become durable after (SQLite's WAL fsync): a commit
   * made while that step is under way would wait for the next one anyway, and every commit
   * writes its own copy of each page it touches, so the writes that arrive meanwhile commit
   * together as it ends — one commit per fsync, however many writers. The wait for the step
   * is the gathering: no {@link GATHER_MS} then.
   */
  afterSettled?: boolean;
  /**
   * Whether the runner commits on this thread, synchronously. A batch then starts on the
   * next turn of the event loop rather than at the first write: every request read in the
   * same turn joins it, instead of each paying a whole commit of its own.
   */
  sameThread?: boolean;
}

/** Where committed events go; with no one listening, none are made. */
export interface EventSink {
  readonly size: number;
  emit(events: readonly StoreEvent[]): void;
}

interface Pending {
  write: StoreWrite;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

/** The longest a write waits for its batch to fill after a busy round. */
export const GATHER_MS = 1;

/** See the module comment. */
export class GroupCommit {
  private queue: Pending[] = [];
  private busy = false;
  /** Batches committed whose writers are not answered yet, and the last of them. */
  private answering = 0;
  private tail: Promise<void> = Promise.resolve();
  /** How many writes the next batch waits for (see the module comment). */
  private target = 1;
  private gather: NodeJS.Timeout | undefined;
  private turn: NodeJS.Immediate | undefined;
  /** Writes in the batch being committed. */
  private inFlight = 0;
  private closing: Promise<void> | undefined;
  private idle: (() => void) | undefined;
  private held = false;

  constructor(private readonly options: GroupCommitOptions) {}

  /** Queues one write; resolves with its result once the batch holding it has committed and settled. */
  submit<K extends StoreWrite['op']>(write: Extract<StoreWrite, { op: K }>): Promise<StoreWriteResults[K]> {
    if (this.closing) return Promise.reject(unavailable('storage is closing'));
    return new Promise<StoreWriteResults[K]>((resolve, reject) => {
      this.queue.push({ write, resolve: resolve as (v: unknown) => void, reject });
      if (!this.busy) this.next();
    });
  }

  /** Writes waiting for the next batch, for metrics. */
  get queued(): number {
    return this.queue.length;
  }

  /** Writes not answered yet: queued, or in the batch being committed. */
  get pending(): number {
    return this.queue.length + this.inFlight;
  }

  /** Commits what is queued and answers every writer, then resolves. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.idle = resolve;
      this.next();
    });
    return this.closing;
  }

  /** Sends the next batch now, or once it has gathered (see the module comment). */
  private next(): void {
    if (this.busy) return;
    if (this.queue.length === 0) {
      if (this.idle && this.answering === 0) {
        this.idle();
        this.idle = undefined;
      }
      return;
    }
    if (this.closing) {
      this.flush();
      return;
    }
    if (this.options.sameThread) {
      this.turn ??= setImmediate(() => {
        this.turn = undefined;
        if (!this.busy) this.flush();
      });
      return;
    }
    if (this.queue.length >= this.target) {
      this.flush();
      return;
    }
    this.gather ??= setTimeout(() => {
      this.gather = undefined;
      if (!this.busy) this.flush();
    }, GATHER_MS);
  }

  private flush(): void {
    clearTimeout(this.gather);
    this.gather = undefined;
    clearImmediate(this.turn);
    this.turn = undefined;
    if (this.queue.length === 0 || this.held) return;
    const hold = this.options.hold?.();
    if (hold) {
      this.held = true;
      void hold.finally(() => {
        this.held = false;
        this.flush();
      });
      return;
    }
    const batch = this.queue;
    this.queue = [];
    this.busy = true;
    this.inFlight = batch.length;
    const started = performance.now();
    let running: Promise<BatchResult>;
    try {
      running = this.options.run(batch.map((p) => p.write));
    } catch (err) {
      this.failed(batch, err);
      return;
    }
    running.then(
      (result) => {
        this.options.observe?.(batch.length, (performance.now() - started) / 1000);
        this.committed(batch, result);
      },
      (err: unknown) => this.failed(batch, err),
    );
  }

  private committed(batch: Pending[], { replies, settled, outbox }: BatchResult): void {
    const serial = this.options.afterSettled === true && settled !== undefined;
    this.busy = serial;
    this.inFlight = 0;
    this.target = serial ? 1 : batch.length + this.queue.length;
    if (settled === undefined && this.answering === 0) {
      this.answer(batch, replies, outbox);
    } else {
      // Answered in batch order, each once it and every batch before it have settled.
      this.answering++;
      const before = this.tail;
      this.tail = (async () => {
        await before;
        try {
          await settled;
        } catch (err) {
          this.reject(batch, err);
          return;
        }
        this.answer(batch, replies, outbox);
      })().finally(() => {
        this.answering--;
        if (serial) this.busy = false;
        this.next();
      });
    }
    this.next();
  }

  private failed(batch: Pending[], err: unknown): void {
    this.busy = false;
    this.inFlight = 0;
    this.target = batch.length + this.queue.length;
    this.reject(batch, err);
    this.next();
  }

  private answer(batch: Pending[], replies: readonly WriteReply[], outbox = false): void {
    const publish = this.options.publish;
    if (publish && publish.size > 0) {
      const events = eventsOf(batch.map((p) => p.write), replies);
      if (events.length > 0) publish.emit(events);
    }
    if (outbox) this.options.outbox?.();
    for (let i = 0; i < batch.length; i++) {
      const reply = replies[i];
      const p = batch[i]!;
      if (reply?.ok) p.resolve(reply.value);
      else p.reject(writeFailed(reply ? reply.error : 'no reply'));
    }
  }

  /** Whether the batch committed is unknown: a 503, which the client may retry. */
  private reject(batch: Pending[], err: unknown): void {
    const error = err instanceof AppError ? err : unavailable('storage could not commit', err);
    for (const p of batch) p.reject(error);
  }
}

/** An operation's own failure: a 500 (details only in the cause, for the log). */
function writeFailed(error: unknown): Error {
  if (error instanceof AppError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new Error(`write failed: ${message}`, { cause: error });
}
