/**
 * The one check every backend makes on imported records before storing them.
 *
 * Text arriving over HTTP has passed the domain's rules, which refuse U+0000 in messages and
 * control characters in user ids; an import file has passed nothing. PostgreSQL's text type
 * cannot hold U+0000 at all and would fail the whole chunk with an encoding error, while
 * SQLite would store what PostgreSQL then could not take. Refusing it on both, naming the
 * record, keeps stores movable and the failure plain.
 */
import type { Message } from '../protocol/types.js';
import { AppError } from '../errors.js';
import type { ExportRecord, ImportCounts } from './storage.js';

const NUL = '\u0000';

/** The text fields of a record, by the name a person would look for in the file. */
function textFields(record: ExportRecord): [string, unknown][] {
  switch (record.type) {
    case 'user': return [['id', record.id], ['createdAt', record.createdAt]];
    case 'reservation': return [['id', record.id], ['removedAt', record.removedAt]];
    case 'token': return [['user', record.user], ['hash', record.hash], ['createdAt', record.createdAt]];
    case 'message': {
      const m: Partial<Message> = record.message ?? {};
      return [
        ['message.id', m.id], ['message.fromUser', m.fromUser], ['message.toUser', m.toUser],
        ['message.message', m.message], ['message.sentAt', m.sentAt], ['message.readAt', m.readAt],
      ];
    }
    default: return [];
  }
}

/**
 * Why the `n`th record (counting from 1) of an import cannot be stored, as a 400 naming the
 * record and field, or null if it can.
 */
export function importRecordError(record: ExportRecord, n: number): AppError | null {
  for (const [field, value] of textFields(record)) {
    if (typeof value === 'string' && value.includes(NUL)) {
      const message = 'must not contain the NUL character (U+0000)';
      return new AppError('validation',
        `import record ${n} (${record.type}): ${field} ${message}; the records before it were imported, none from it on`,
        { errors: [{ field: `records/${n}/${field}`, message }] });
    }
  }
  return null;
}

export type { ImportCounts };

/** What one import write answers: the counts, and the positions in its chunk of the records it did not store (their id was taken). */
export interface ImportChunkResult extends ImportCounts {
  notStored: number[];
}

/**
 * Told, after each chunk commits, the records of it that were not stored because the store
 * already held their id (or hash): maybe the same record, maybe another one written since
 * the caller last looked. Awaited before the next chunk.
 */
export type NotStoredListener = (records: ExportRecord[]) => Promise<void> | void;

/**
 * An import as every backend runs it: records checked one by one and committed in chunks.
 * When a record is refused, here or by the source that yields them (a file whose line is
 * wrong), everything before it is committed first, so a corrected file can simply be
 * imported again: records already there are skipped.
 */
export async function importInChunks(
  records: AsyncIterable<ExportRecord>,
  chunkSize: number,
  store: (chunk: ExportRecord[]) => Promise<ImportChunkResult>,
  notStored?: NotStoredListener,
): Promise<ImportCounts> {
  const total: ImportCounts = { users: 0, tokens: 0, messages: 0, reservations: 0 };
  let chunk: ExportRecord[] = [];
  const commit = async () => {
    if (chunk.length === 0) return;
    const counts = await store(chunk);
    total.users += counts.users;
    total.tokens += counts.tokens;
    total.messages += counts.messages;
    total.reservations += counts.reservations;
    const done = chunk;
    chunk = [];
    if (notStored && counts.notStored.length > 0) await notStored(counts.notStored.map((i) => done[i]!));
  };
  let n = 0;
  try {
    for await (const r of records) {
      const problem = importRecordError(r, ++n);
      if (problem) throw problem;
      chunk.push(r);
      if (chunk.length >= chunkSize) await commit();
    }
  } catch (err) {
    await commit();
    throw err;
  }
  await commit();
  return total;
}
