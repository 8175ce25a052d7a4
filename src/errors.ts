/**
 * The one error type of Postbox and its catalog.
 *
 * The domain and storage throw {@link AppError}s by stable code; the HTTP error handler is
 * the only place that turns them into responses (RFC 9457 problem documents). A code never
 * changes meaning once published: clients match on it through the problem `type`.
 */

/** One field-level complaint inside a problem document. */
export interface FieldError {
  /** The input that is wrong: a body field (`toUser`), a query or path parameter, or `body`. */
  field: string;
  message: string;
}

/** Every error Postbox reports, by stable code. */
export const ERROR_CATALOG = {
  validation: { status: 400, title: 'Invalid request' },
  unauthorized: { status: 401, title: 'Authentication required' },
  forbidden: { status: 403, title: 'Not allowed' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  request_timeout: { status: 408, title: 'Request Timeout' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  header_too_large: { status: 431, title: 'Request header fields too large' },
  idempotency_mismatch: { status: 422, title: 'Idempotency key reused with a different request' },
  user_exists: { status: 409, title: 'User already exists' },
  unknown_recipient: { status: 404, title: 'Unknown recipient' },
  rate_limited: { status: 429, title: 'Too many requests' },
  too_many_streams: { status: 429, title: 'Too many streams' },
  storage_unavailable: { status: 503, title: 'Storage unavailable' },
  server_busy: { status: 503, title: 'Server busy' },
  internal: { status: 500, title: 'Internal server error' },
} as const satisfies Record<string, { status: number; title: string }>;

/** A stable error code from {@link ERROR_CATALOG}. */
export type ErrorCode = keyof typeof ERROR_CATALOG;

/** Options for an {@link AppError} beyond its code and detail. */
export interface AppErrorOptions {
  errors?: FieldError[];
  /** Response headers that belong to this error (`Allow`, `Retry-After`). */
  headers?: Record<string, string>;
  cause?: unknown;
}

/** An error with a catalog code; the only error type the domain and storage throw on purpose. */
export class AppError extends Error {
  override name = 'AppError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly title: string;
  readonly errors: FieldError[];
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, detail: string, options: AppErrorOptions = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    const entry = ERROR_CATALOG[code];
    this.code = code;
    this.status = entry.status;
    this.title = entry.title;
    this.errors = options.errors ?? [];
    this.headers = options.headers ?? {};
  }
}

/** A 400 naming one bad field. */
export function invalid(field: string, message: string): AppError {
  return new AppError('validation', `${field} ${message}`, { errors: [{ field, message }] });
}

/** The problem `type` URI of a code; `GET /problems/{code}` describes it. */
export function problemType(code: ErrorCode): string {
  return `/problems/${code}`;
}
