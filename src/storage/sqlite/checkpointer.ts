/**
 * The checkpointer thread: folds the WAL back into the database file, off the writer's path.
 *
 * Left to SQLite, the connection whose commit crosses a threshold (1,000 pages) runs the
 * checkpoint inside that commit: the writer stops to copy pages while sends wait, and a
 * page that changes in every batch is copied again and again. Here the writer never
 * checkpoints; this thread runs a PASSIVE checkpoint every CHECKPOINT_MS (less often
 * while there is nothing to fold back) on its own connection, which never blocks the
 * writer, and copies each changed page once a round.
 *
 * Under sustained writes a passive checkpoint never catches up completely, and the log only
 * starts over once one has: it would grow without end. So past RESTART_FRAMES the round is a
 * RESTART checkpoint instead, which waits for the writer to finish its batch, copies the
 * rest, and lets the next batch write the log from its start again.
 *
 * Protocol, over the worker port: in `{ close: true }`, which ends the thread; out
 * `{ checkpointAt }` (ms) after each round that folded pages back, for `/metrics`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { CONNECTION_PRAGMAS } from './rows.js';

/** What the main thread passes when it starts the checkpointer. */
export interface CheckpointerData {
  path: string;
  synchronous: 'FULL' | 'NORMAL';
}

/**
 * How often the WAL is folded back while writes come in. Often, so that each round copies
 * little: a round's copy and its fsync of the database file compete with the writes' WAL
 * fsync for the disk, and a round of 200 ms of writes showed in the sends' p99 (34 ms
 * against 18 ms at 50 ms, legacy post under 50 connections); the pages copied again from
 * round to round cost a few µs a send.
 */
const CHECKPOINT_MS = 50;
/** How long it waits after a round that found nothing to fold back (a quiet store). */
const IDLE_CHECKPOINT_MS = 1000;
/** The log size (in pages) past which a round makes sure the log starts over. */
const RESTART_FRAMES = 16_384;

const port = parentPort;
if (port) {
  const { path, synchronous } = workerData as CheckpointerData;
  const db = new Database(path);
  for (const p of CONNECTION_PRAGMAS) db.pragma(p);
  // The checkpoint's own fsync of the database file follows the store's durability.
  db.pragma(`synchronous = ${synchronous}`);
  // The writer holds its lock for one batch at most: wait that long rather than give up.
  db.pragma('busy_timeout = 2000');
  let restart = false;
  // The log as the last round left it. SQLite answers how many of the log's frames are in the
  // database file, not how many this round copied: a log already folded back answers the
  // same every round, and counted as a checkpoint, /metrics' last checkpoint read "now" on a
  // quiet store and the rounds never slowed down.
  let last = { log: 0, checkpointed: 0 };
  const round = () => {
    let folded = false;
    try {
      const [result] = db.pragma(`wal_checkpoint(${restart ? 'RESTART' : 'PASSIVE'})`) as { log: number; checkpointed: number }[];
      const now = { log: result?.log ?? 0, checkpointed: result?.checkpointed ?? 0 };
      restart = now.log > RESTART_FRAMES;
      // A log only grows until it starts over: a shorter one is a new log, all of it new.
      // (A new log as long as the last, folded as far, is taken for the old one: its frames
      // are reported by the round after the next write.)
      folded = now.log < last.log ? now.checkpointed > 0 : now.checkpointed > last.checkpointed;
      last = now;
      if (folded) port.postMessage({ checkpointAt: Date.now() });
    } catch {
      // Busy or briefly failing: the next round tries again; nothing depends on this one.
      folded = true;
    }
    timer = setTimeout(round, folded ? CHECKPOINT_MS : IDLE_CHECKPOINT_MS);
  };
  let timer = setTimeout(round, CHECKPOINT_MS);
  port.on('message', () => {
    clearTimeout(timer);
    db.close();
    port.close();
  });
}
