/**
 * The thread that checks a large SQLite store when a server opens it (see open-check.ts):
 * posts the problems `quick_check` finds in the store at `workerData.path`, then ends.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { quickCheck } from './open-check.js';

const db = new Database((workerData as { path: string }).path, { readonly: true, fileMustExist: true });
try {
  parentPort?.postMessage(quickCheck(db));
} finally {
  db.close();
}
