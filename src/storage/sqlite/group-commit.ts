/**
 * Group commit on the main thread's side of the writer.
 *
 * At most one batch is with the writer at a time. Writes that arrive while it commits wait
 * in the queue and go together as the next batch, so N concurrent sends cost one commit
 * (one fsync), while a lone send goes at once and waits for nothing but its own commit.
 *
 * One refinement: when a batch commits, its clients are answered at once and send their
 * next writes a moment later. Flushing whatever has arrived by then splits busy clients
 * into cohorts that take turns, each paying a whole fsync for part of the load. So when a
 * batch settles, the writers pending at that moment (those just answered, who are likely
 * to come back, and those already queued) become the target of the next batch: it goes
 * when that many are queued, or after GATHER_MS. A lone writer's target is 1: it goes at once.
 */
import type { Worker } from 'node:worker_threads';
import { AppError } from '../../errors.js';
import type { WriteOp, WriteReply, WriteResults } from './write-ops.js';
import { siblingModule, startWorker } from './threads.js';
import type { BatchRequest, WriterData } from './writer-worker.js';

interface Pending {
  op: WriteOp;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

type BatchAnswer =
  | { id: number; replies: WriteReply[] }
  | { id: number; error: { message: string; code?: string } };

/** Called after a batch commits, before any of its writers is answered. */
export type CommitListener = (ops: readonly WriteOp[], values: readonly unknown[]) => void;

const WRITER = siblingModule('writer-worker');
const CHECKPOINTER = siblingModule('checkpointer');

/** Asks a worker of ours to finish, and waits until it has. */
async function stop(worker: Worker | undefined): Promise<void> {
  if (!worker) return;
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  worker.ref();
  worker.postMessage({ close: true });
  await exited;
}

/** The longest a write waits for its batch to fill after a busy round. */
const GATHER_MS = 1;

function unavailable(detail: string, cause?: unknown): AppError {
  return new AppError('storage_unavailable', detail, { headers: { 'Retry-After': '1' }, cause });
}

/** The main thread's handle on the writer thread. */
export class GroupCommitWriter {
  private worker: Worker | undefined;
  /** Runs beside the writer while it is alive, folding the WAL back (checkpointer.ts). */
  private checkpointer: Worker | undefined;
  private queue: Pending[] = [];
  private inFlight: { id: number; batch: Pending[] } | undefined;
  private nextId = 1;
  private closing: Promise<void> | undefined;
  private idle: (() => void) | undefined;
  /** How many writes the next batch waits for (see the module comment). */
  private target = 1;
  private gather: NodeJS.Timeout | undefined;

  constructor(
    private readonly data: WriterData,
    private readonly onCommit: CommitListener,
  ) {}

  /** Queues one write; resolves with its result once the batch holding it has committed. */
  submit<K extends WriteOp['op']>(op: Extract<WriteOp, { op: K }>): Promise<WriteResults[K]> {
    if (this.closing) return Promise.reject(unavailable('storage is closing'));
    return new Promise<WriteResults[K]>((resolve, reject) => {
      this.queue.push({ op, resolve: resolve as (v: unknown) => void, reject });
      if (!this.inFlight) this.next();
    });
  }

  /** Number of writes waiting for the next batch, for metrics. */
  get queued(): number {
    return this.queue.length;
  }

  /** Commits what is queued, then stops the writer thread. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.inFlight || this.queue.length > 0) {
        await new Promise<void>((resolve) => (this.idle = resolve));
      }
      const worker = this.worker;
      this.worker = undefined;
      if (!worker) return;
      // The checkpointer stops first, so the writer's closing checkpoint has the WAL to itself.
      await stop(this.checkpointer);
      this.checkpointer = undefined;
      await stop(worker);
    })();
    return this.closing;
  }

  private start(): Worker {
    const worker = startWorker(WRITER, this.data);
    if (!this.checkpointer) {
      this.checkpointer = startWorker(CHECKPOINTER, this.data);
      // Its work is never owed to anyone: it must not keep a finished process alive.
      this.checkpointer.unref();
      this.checkpointer.on('error', () => (this.checkpointer = undefined));
    }
    worker.on('message', (answer: BatchAnswer) => this.settle(answer));
    worker.on('error', (err) => this.fail(worker, err));
    worker.on('exit', (code) => {
      if (this.worker === worker) this.fail(worker, new Error(`writer thread exited with code ${code}`));
    });
    return worker;
  }

  /** Sends the next batch now, or once it has gathered (see the module comment). */
  private next(): void {
    if (this.queue.length === 0) {
      // An idle writer must not keep a finished process alive; a busy one must.
      this.worker?.unref();
      this.idle?.();
      this.idle = undefined;
      return;
    }
    if (this.queue.length >= this.target || this.closing) {
      this.flush();
      return;
    }
    this.gather ??= setTimeout(() => {
      this.gather = undefined;
      if (!this.inFlight) this.flush();
    }, GATHER_MS);
  }

  private flush(): void {
    clearTimeout(this.gather);
    this.gather = undefined;
    const batch = this.queue;
    this.queue = [];
    const id = this.nextId++;
    this.inFlight = { id, batch };
    const request: BatchRequest = { id, ops: batch.map((p) => p.op) };
    try {
      this.worker ??= this.start();
      this.worker.ref();
      this.worker.postMessage(request);
    } catch (err) {
      this.inFlight = undefined;
      for (const p of batch) p.reject(unavailable('the storage writer could not start', err));
      this.next();
    }
  }

  private settle(answer: BatchAnswer): void {
    const current = this.inFlight;
    if (!current || current.id !== answer.id) return;
    this.inFlight = undefined;
    const { batch } = current;
    this.target = batch.length + this.queue.length;
    if ('error' in answer) {
      const err = unavailable(`storage could not commit: ${answer.error.code ?? 'error'}`, answer.error);
      for (const p of batch) p.reject(err);
    } else {
      const values = answer.replies.map((r) => (r.ok ? r.value : undefined));
      // Listeners hear of the commit before any writer is answered, so a client that reads
      // right after its send is answered finds every live view already told.
      this.onCommit(batch.map((p) => p.op), values);
      answer.replies.forEach((reply, i) => {
        const p = batch[i]!;
        if (reply.ok) p.resolve(reply.value);
        else p.reject(new Error(`write failed: ${reply.error}`));
      });
    }
    this.next();
  }

  private fail(worker: Worker, err: Error): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    const current = this.inFlight;
    this.inFlight = undefined;
    // Whether that batch committed is unknown; its writers get a 503 and retry, which an
    // idempotency key makes safe.
    if (current) for (const p of current.batch) p.reject(unavailable('the storage writer stopped', err));
    void worker.terminate();
    this.next();
  }
}
