/**
 * The writer thread: owns SQLite's only write connection, so the disk wait of each commit
 * (an fsync in `fsync` durability) never blocks the event loop that serves requests.
 *
 * Protocol, over the worker port:
 *   in:  { id, ops }   a batch to commit together    { close: true }   finish and exit
 *   out: { id, replies } per-op answers, or { id, error } if the batch could not commit
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { CONNECTION_PRAGMAS } from './rows.js';
import type { StoreWrite } from '../writes.js';
import { WriteSide } from './write-ops.js';

/** What the main thread passes when it starts the writer. */
export interface WriterData {
  path: string;
  synchronous: 'FULL' | 'NORMAL';
}

/** A batch for the writer. */
export interface BatchRequest {
  id: number;
  ops: StoreWrite[];
}

const port = parentPort;
if (port) {
  const { path, synchronous } = workerData as WriterData;
  const db = new Database(path);
  for (const p of CONNECTION_PRAGMAS) db.pragma(p);
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${synchronous}`);
  // Checkpoints are the checkpointer thread's job, never a commit's (see checkpointer.ts);
  // after one completes, SQLite cuts a grown WAL file back to this size.
  db.pragma('wal_autocheckpoint = 0');
  db.pragma(`journal_size_limit = ${64 * 1024 * 1024}`);
  const side = new WriteSide(db);

  port.on('message', (msg: BatchRequest | { close: true }) => {
    if ('close' in msg) {
      // Fold the WAL back into the main file so a stopped store is one self-contained file.
      try {
        db.pragma('wal_checkpoint(TRUNCATE)');
      } finally {
        db.close();
        port.close();
      }
      return;
    }
    try {
      port.postMessage({ id: msg.id, replies: side.applyBatch(msg.ops) });
    } catch (err) {
      const e = err as { message: string; code?: string };
      port.postMessage({ id: msg.id, error: { message: e.message, code: e.code } });
    }
  });
}
