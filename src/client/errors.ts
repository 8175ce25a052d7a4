/**
 * What a failed call rejects with: {@link PostboxError} when the server said no,
 * {@link PostboxConnectionError} when no answer came at all.
 */
import type { Problem, ProblemFieldError } from '../protocol/types.js';

/**
 * The server answered with an error: carries the HTTP status and the problem document
 * (RFC 9457). An answer that is not a problem document (a proxy's HTML page, say) is
 * described by a problem made up here, so callers always have the same fields to read.
 */
export class PostboxError extends Error {
  override readonly name = 'PostboxError';
  /** The HTTP status. */
  readonly status: number;
  /** The parsed problem document. */
  readonly problem: Problem;
  /** The method of the request that failed, for messages and logs. */
  readonly method: string;
  /** The full URL of the request that failed. */
  readonly url: string;
  /** The answer's `Retry-After`, in seconds, when it gave one (rate limited, storage or server busy). */
  readonly retryAfter: number | undefined;

  constructor(problem: Problem, request: { method: string; url: string; retryAfter?: number }) {
    super(`${problem.detail || problem.title} (HTTP ${problem.status})`);
    this.status = problem.status;
    this.problem = problem;
    this.method = request.method;
    this.url = request.url;
    this.retryAfter = request.retryAfter;
  }

  /** The problem type, e.g. `/problems/not_found`: stable, so match on it rather than on the text. */
  get type(): string {
    return this.problem.type;
  }

  /** A short summary of the kind of problem. */
  get title(): string {
    return this.problem.title;
  }

  /** What went wrong this time, written for a person. */
  get detail(): string {
    return this.problem.detail;
  }

  /** Each input that was wrong, by field. */
  get errors(): ProblemFieldError[] {
    return this.problem.errors;
  }
}

/**
 * No answer came at all: the server is down, the address is wrong, DNS or TLS failed.
 * Kept apart from {@link PostboxError} because there is no status or problem to read, and
 * because the remedy (check the URL, retry later) differs from fixing the request.
 */
export class PostboxConnectionError extends Error {
  override readonly name = 'PostboxConnectionError';
  /** The URL that could not be reached. */
  readonly url: string;

  constructor(url: string, cause: unknown) {
    super(`cannot reach ${url}: ${reasonOf(cause)}`, { cause });
    this.url = url;
  }
}

/** The lowest-level reason in a fetch failure ("connect ECONNREFUSED 127.0.0.1:9"), not undici's bare "fetch failed". */
function reasonOf(err: unknown): string {
  let reason = err instanceof Error ? err.message : String(err);
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e.message) reason = e.message;
    // Node tries every address of a name like localhost (::1, then 127.0.0.1) and reports them together.
    else if (e instanceof AggregateError) reason = e.errors.map((x) => reasonOf(x)).join('; ');
  }
  return reason;
}


/** The {@link PostboxError} for an error answer, whatever its body holds. */
export async function problemError(response: Response, method: string, url: string): Promise<PostboxError> {
  const text = await response.text().catch(() => '');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const given = (typeof body === 'object' && body !== null ? body : {}) as Partial<Record<keyof Problem, unknown>>;
  const title = typeof given.title === 'string' ? given.title : (response.statusText || `HTTP ${response.status}`);
  const problem: Problem = {
    type: typeof given.type === 'string' ? given.type : 'about:blank',
    title,
    status: response.status,
    detail: typeof given.detail === 'string' ? given.detail : `${method} ${url} answered ${response.status} ${title}`,
    errors: Array.isArray(given.errors) ? given.errors.filter(isFieldError) : [],
  };
  const retryAfter = Number(response.headers.get('retry-after'));
  return new PostboxError(problem, { method, url, ...(Number.isFinite(retryAfter) && retryAfter > 0 ? { retryAfter } : {}) });
}

function isFieldError(value: unknown): value is ProblemFieldError {
  const v = value as Partial<ProblemFieldError> | null;
  return typeof v === 'object' && v !== null && typeof v.field === 'string' && typeof v.message === 'string';
}
