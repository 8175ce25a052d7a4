/**
 * Group commit for PostgreSQL, the same shape as the SQLite writer's.
 *
 * At most one batch per instance is being written at a time. Writes that arrive meanwhile
 * wait in the queue and go together as the next batch: one transaction, one WAL flush, one
 * turn of the store's write lock for N concurrent sends; a lone send goes at once and waits
 * for nothing but its own commit.
 */
import { AppError } from '../../errors.js';
import { unavailable } from './failures.js';
import type { WriteOp, WriteReply, WriteResults } from './write-ops.js';

/** What running a batch yields: per-operation replies and when local listeners have heard of it. */
export interface BatchResult {
  replies: WriteReply[];
  /** Resolves once this instance's listeners were told of the commit (or never will be). */
  told: Promise<void>;
}

/** Commits one batch; rejects only if the batch as a whole did not (or may not have) commit(ted). */
export type BatchRunner = (ops: readonly WriteOp[]) => Promise<BatchResult>;

interface Pending {
  op: WriteOp;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

/** See the module comment. */
export class GroupCommit {
  private queue: Pending[] = [];
  private busy = false;
  private answering = 0;
  private closing: Promise<void> | undefined;
  private idle: (() => void) | undefined;

  constructor(private readonly run: BatchRunner) {}

  /** Queues one write; resolves with its result once its batch has committed and been told. */
  submit<K extends WriteOp['op']>(op: Extract<WriteOp, { op: K }>): Promise<WriteResults[K]> {
    if (this.closing) return Promise.reject(unavailable('storage is closing'));
    return new Promise<WriteResults[K]>((resolve, reject) => {
      this.queue.push({ op, resolve: resolve as (v: unknown) => void, reject });
      if (!this.busy) this.flush();
    });
  }

  /** Writes waiting for the next batch, for metrics. */
  get queued(): number {
    return this.queue.length;
  }

  /** Commits what is queued and answers every writer, then resolves. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.idle = resolve;
      this.settleIfIdle();
    });
    return this.closing;
  }

  private flush(): void {
    if (this.queue.length === 0) {
      this.settleIfIdle();
      return;
    }
    const batch = this.queue;
    this.queue = [];
    this.busy = true;
    this.run(batch.map((p) => p.op)).then(
      ({ replies, told }) => {
        // The next batch need not wait for this one's notification to come back; its
        // writers do, so that a client that reads right after its answer finds every live
        // view on this instance already told.
        this.answering++;
        void told.then(() => {
          replies.forEach((reply, i) => {
            const p = batch[i]!;
            if (reply.ok) p.resolve(reply.value);
            else p.reject(writeFailed(reply.error));
          });
          this.answering--;
          this.settleIfIdle();
        });
      },
      (err: unknown) => {
        // Whether the batch committed may be unknown (a connection lost during COMMIT): a
        // 503, which the client may retry, and an idempotency key makes safe.
        const error = err instanceof AppError ? err : unavailable('storage could not commit', err);
        for (const p of batch) p.reject(error);
      },
    ).finally(() => {
      this.busy = false;
      this.flush();
    });
  }

  private settleIfIdle(): void {
    if (this.idle && !this.busy && this.queue.length === 0 && this.answering === 0) {
      this.idle();
      this.idle = undefined;
    }
  }
}

/** An operation's own failure, as the SQLite writer reports it: a 500, details only in the cause. */
function writeFailed(error: unknown): Error {
  if (error instanceof AppError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new Error(`write failed: ${message}`, { cause: error });
}
