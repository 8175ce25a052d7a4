/**
 * SQLite's batch runner: the writer thread, which owns the only write connection so that
 * the disk wait of each commit (an fsync in `fsync` durability) never blocks the event loop,
 * and the checkpointer thread beside it (checkpointer.ts). Group commit itself is the core's
 * (../group-commit.ts): it hands this runner one batch at a time.
 */
import type { Worker } from 'node:worker_threads';
import { unavailable } from '../failures.js';
import type { BatchResult } from '../group-commit.js';
import type { StoreWrite, WriteReply } from '../writes.js';
import { siblingModule, startWorker } from './threads.js';
import type { BatchRequest, WriterData } from './writer-worker.js';

type BatchAnswer =
  | { id: number; replies: WriteReply[] }
  | { id: number; error: { message: string; code?: string } };

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

/** The main thread's handle on the writer thread (started with the first batch). */
export class WriterThread {
  private worker: Worker | undefined;
  /** Runs beside the writer while it is alive, folding the WAL back (checkpointer.ts). */
  private checkpointer: Worker | undefined;
  private inFlight: { id: number; resolve: (r: BatchResult) => void; reject: (err: Error) => void } | undefined;
  private nextId = 1;
  /** When the checkpointer last folded the WAL back (ms), for metrics. */
  lastCheckpointAt: number | null = null;

  constructor(private readonly data: WriterData) {}

  /** Commits one batch on the writer thread (the core never sends a second before the first is answered). */
  run(writes: readonly StoreWrite[]): Promise<BatchResult> {
    return new Promise<BatchResult>((resolve, reject) => {
      const id = this.nextId++;
      this.inFlight = { id, resolve, reject };
      const request: BatchRequest = { id, ops: writes as StoreWrite[] };
      try {
        this.worker ??= this.start();
        // A busy writer keeps the process alive; an idle one must not (see settle).
        this.worker.ref();
        this.worker.postMessage(request);
      } catch (err) {
        this.inFlight = undefined;
        reject(unavailable('the storage writer could not start', err));
      }
    });
  }

  /** Stops the checkpointer, then the writer (whose closing checkpoint then has the WAL to itself). */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (!worker) return;
    await stop(this.checkpointer);
    this.checkpointer = undefined;
    await stop(worker);
  }

  private start(): Worker {
    const worker = startWorker(WRITER, this.data);
    if (!this.checkpointer) {
      this.checkpointer = startWorker(CHECKPOINTER, this.data);
      this.checkpointer.on('error', () => (this.checkpointer = undefined));
      this.checkpointer.on('message', (m: { checkpointAt?: number }) => {
        if (typeof m.checkpointAt === 'number') this.lastCheckpointAt = m.checkpointAt;
      });
      // Its work is never owed to anyone: it must not keep a finished process alive. (After
      // the listener: adding a message listener refs the worker again.)
      this.checkpointer.unref();
    }
    worker.on('message', (answer: BatchAnswer) => this.settle(answer));
    worker.on('error', (err) => this.fail(worker, err));
    worker.on('exit', (code) => {
      if (this.worker === worker) this.fail(worker, new Error(`writer thread exited with code ${code}`));
    });
    return worker;
  }

  private settle(answer: BatchAnswer): void {
    const current = this.inFlight;
    if (!current || current.id !== answer.id) return;
    this.inFlight = undefined;
    this.worker?.unref();
    if ('error' in answer) current.reject(unavailable(`storage could not commit: ${answer.error.code ?? 'error'}`, answer.error));
    else current.resolve({ replies: answer.replies });
  }

  private fail(worker: Worker, err: Error): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    const current = this.inFlight;
    this.inFlight = undefined;
    // Whether that batch committed is unknown; its writers get a 503 and retry, which an
    // idempotency key makes safe.
    current?.reject(unavailable('the storage writer stopped', err));
    void worker.terminate();
  }
}
