/**
 * Fills a Postbox store with a dataset through the storage's own `importAll` (the path
 * `postbox import` takes), which commits in chunks: far faster than sending a million
 * messages over HTTP, and it stores exactly what a send would.
 */
import { Readable } from 'node:stream';
import type { StorageLocation } from '../../src/config.js';
import { openStorage } from '../../src/storage/open.js';
import type { ExportRecord } from '../../src/storage/storage.js';
import { datasetMessages, type DatasetSpec } from './dataset.js';

/** How long a prefill took, for the report. */
export interface PrefillResult {
  messages: number;
  ms: number;
}

function* records(spec: DatasetSpec): Generator<ExportRecord> {
  for (const message of datasetMessages(spec)) yield { type: 'message', message };
}

/**
 * Imports `spec` into the (empty) store at `location`, then closes it so the server that
 * follows opens a quiet store. Relaxed durability: a benchmark's prefill need not survive
 * a power cut, and the server then runs with its own default durability.
 */
export async function prefill(location: StorageLocation, spec: DatasetSpec): Promise<PrefillResult> {
  const started = performance.now();
  const store = await openStorage(location, { durability: 'relaxed' });
  try {
    const counts = await store.importAll(Readable.from(records(spec)) as AsyncIterable<ExportRecord>);
    if (counts.messages !== spec.total) {
      throw new Error(`prefill stored ${counts.messages} of ${spec.total} messages: was the store not empty?`);
    }
  } finally {
    await store.close();
  }
  return { messages: spec.total, ms: performance.now() - started };
}
