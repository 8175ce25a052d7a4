/**
 * Telling an outage from a mistake, so that clients get a 503 they can retry for the first
 * and the driver's own error never leaks out for either.
 */
import { unavailable } from '../failures.js';

export { unavailable };

/** Socket errors: the server is unreachable or the connection died. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN',
  'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN',
]);

/**
 * SQLSTATEs worth a retry: the server is going away or refusing connections, is out of
 * resources, or cancelled the statement; none of them says anything about the request.
 */
const TRANSIENT_SQLSTATES = new Set([
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, in recovery)
  '57014', // query_canceled (statement_timeout)
  '53000', // insufficient_resources
  '53100', // disk_full
  '53200', // out_of_memory
  '53300', // too_many_connections
  '55P03', // lock_not_available (lock_timeout)
  '40001', // serialization_failure
  '40P01', // deadlock_detected
]);

/**
 * What node-postgres and its pool say, without a code, when a connection cannot be had or
 * has died under a query. Matched on message because the driver gives nothing better.
 */
const DRIVER_MESSAGES = [
  /Connection terminated/,
  /encountered a connection error/,
  /timeout exceeded when trying to connect/,
  /Connection terminated due to connection timeout/,
  /Client was closed and is not queryable/,
  /Cannot use a pool after calling end/,
  /Query read timeout/,
];

/** True when `err` says the database is away or overloaded, rather than that a statement is wrong. */
export function isTransient(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    // Class 08 is "connection exception" in every form.
    if (SOCKET_CODES.has(code) || code.startsWith('08') || TRANSIENT_SQLSTATES.has(code)) return true;
  }
  const message = (err as { message?: unknown }).message;
  return typeof message === 'string' && DRIVER_MESSAGES.some((re) => re.test(message));
}

/** How a failed read is described in its 503: an outage, or some other failure. */
export function describeReadFailure(err: unknown): string {
  return isTransient(err) ? 'the database is unavailable' : 'storage could not be read';
}

/** SQLSTATEs that mean the database found its own data damaged: data_corrupted, index_corrupted. */
export function isDamage(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'XX001' || code === 'XX002';
}
