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
  constructor(cause: unknown) {
    super('internal', 'the database is damaged: a read hit a corrupt page (run postbox check)', { cause });
  }
}
