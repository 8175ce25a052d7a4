/**
 * The one mapping of storage trouble to the catalog: a 503 with the `Retry-After` the
 * contract promises, the cause kept for the log and never shown to the client.
 */
import { AppError } from '../errors.js';

/** The 503 of the catalog, with the `Retry-After` the contract promises. */
export function unavailable(detail: string, cause?: unknown): AppError {
  return new AppError('storage_unavailable', detail, { headers: { 'Retry-After': '1' }, cause });
}

/**
 * Any failure of a read as the catalog error: a read that cannot be answered is a 503, never
 * the driver's own error. `detail` says which kind of trouble it was, if the dialect knows.
 */
export function readFailure(err: unknown, detail = 'storage could not be read'): AppError {
  if (err instanceof AppError) return err;
  return unavailable(detail, err);
}

/**
 * A read that hit a damaged database: an internal error (500), not a retryable 503; the
 * error handler logs it as an error under this message, and the body reveals nothing.
 */
export class StorageDamaged extends AppError {
  /** @param what what the read found, for the log; by default a corrupt page SQLite noticed */
  constructor(cause: unknown, what = 'a read hit a corrupt page') {
    super('internal', `the database is damaged: ${what} (run postbox check)`, { cause });
  }
}

/**
 * Control characters, which the wire JSON the server writes never holds raw (JSON escapes
 * every one of them): one inside a stored value means its bytes were overwritten.
 */
// eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
const RAW_CONTROL = /[\u0000-\u001f]/;

/**
 * Whether a message's stored wire JSON is as the server wrote it: one `{…}` object with no
 * raw control character. Not a parse (a page of 1,000 would cost more than reading it),
 * but random bytes over a value (SQLite checks only its own structure, not what a value
 * holds) break it at once: a 4 KB page of them holds a byte below 0x20 all but surely.
 */
export function wireJsonIntact(json: string): boolean {
  return json.charCodeAt(0) === 0x7b && json.charCodeAt(json.length - 1) === 0x7d && !RAW_CONTROL.test(json);
}

/** The error of a read whose stored message `id` is not intact ({@link wireJsonIntact}). */
export function damagedValue(id: string | number): StorageDamaged {
  return new StorageDamaged(undefined, `the stored message ${id} is not the JSON the server wrote (its bytes were overwritten)`);
}
