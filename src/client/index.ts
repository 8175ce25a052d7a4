/**
 * The Postbox TypeScript client (`postbox/client`): every v1 call, typed from the wire types.
 *
 * It is built on `fetch` and imports nothing but `../protocol/`, so the same file runs on
 * Node 20+, in browsers, and in any runtime with a WHATWG `fetch`; it has no dependencies.
 */
import type {
  ConversationList, CreatedUser, Message, MessagePage, Problem, ProblemFieldError, ReadResult, SendMessage, User,
} from '../protocol/types.js';

export type {
  Conversation, ConversationList, CreatedUser, Message, MessagePage, Problem, ProblemFieldError, ReadResult, SendMessage, User,
} from '../protocol/types.js';

/** Something a live stream said, or what became of its connection. */
export type StreamEvent =
  | { type: 'message'; message: Message }
  /** A message to the user was deleted. */
  | { type: 'deleted'; id: string }
  /** Messages to the user were marked read (elsewhere, perhaps). */
  | { type: 'read'; ids: string[]; readAt: string }
  /** The server ended the stream for good (user removed, token revoked); no reconnect follows. */
  | { type: 'end'; reason: string }
  /** Connected (again). */
  | { type: 'open' }
  /** The connection dropped or was refused for now; a reconnect follows. */
  | { type: 'disconnected'; error?: Error };

/** Options of {@link PostboxClient.subscribe}. */
export interface SubscribeOptions {
  /** Resume after this message id (`"0"` replays the whole inbox). Default: from the next new message. */
  after?: string;
  /** Each message, once, in order. */
  onMessage: (message: Message) => void;
  /** Every event, messages included, and connection changes. */
  onEvent?: (event: StreamEvent) => void;
  /** Ends the subscription. */
  signal?: AbortSignal;
  /** Reconnection backoff: the first pause and the longest, in ms (defaults 500 and 30,000). */
  reconnect?: { minMs?: number; maxMs?: number };
}

/** A live subscription. */
export interface Subscription {
  /** Resolves once it stops (closed, aborted, ended by the server); rejects with a refusal retrying cannot fix. */
  closed: Promise<void>;
  close(): void;
  /** The id of the last message delivered: where a resume would start. */
  readonly lastEventId: string | undefined;
}

/** Where the server is when neither the options nor `POSTBOX_URL` say. */
export const DEFAULT_URL = 'http://localhost:8080';

/** How a {@link PostboxClient} reaches its server. */
export interface PostboxClientOptions {
  /** Base URL of the server, e.g. `https://postbox.example.com`; a path prefix is kept. Default: `POSTBOX_URL` under Node, else {@link DEFAULT_URL}. */
  url?: string;
  /**
   * Bearer token for token mode. Default: `POSTBOX_TOKEN` under Node. `null` sends no token
   * even when `POSTBOX_TOKEN` is set, for a caller that has decided on its own settings.
   */
  token?: string | null;
  /** A `fetch` to use instead of the global one (a proxy agent, a test double, an older runtime). */
  fetch?: typeof fetch;
}

/** Options every call takes. */
export interface CallOptions {
  /** Cancels the call; the promise then rejects with the signal's reason, unwrapped. */
  signal?: AbortSignal;
}

/** Paging parameters; see the contract's Paging section. */
export interface PageQuery extends CallOptions {
  /** Page forward from just after this message id. */
  after?: string;
  /** Page backward from just before this message id, or from the newest with `"latest"`. */
  before?: string;
  /** Page size, 1–500; the server's default is 50. */
  limit?: number;
}

/** Inbox parameters: paging, filters and long-poll. */
export interface InboxQuery extends PageQuery {
  /** Only messages from this user. */
  from?: string;
  /** Only messages not yet read. */
  unread?: boolean;
  /** Long-poll: when the page would be empty, wait up to this many seconds (0–60) for a message. */
  wait?: number;
}

/** Conversation list parameters. */
export interface ConversationsQuery extends CallOptions {
  /** The `next` of the previous list, or `"latest"`. */
  before?: string;
  limit?: number;
}

/** What to mark read: everything up to and including a message, or a list of ids. */
export type ReadSelection = { upTo: string } | { ids: string[] };

/** Options of {@link PostboxClient.send}. */
export interface SendOptions extends CallOptions {
  /** A repeat of the send with the same key (within 24 h) answers the first message and stores nothing new. */
  idempotencyKey?: string;
}

/** The admin's list of users. */
export interface UserList {
  users: User[];
}

/** A newly issued token, shown only in this answer. */
export interface IssuedToken {
  token: string;
}

/** The answer of `/healthz` and `/readyz`. */
export interface HealthStatus {
  status: string;
}

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

  constructor(problem: Problem, request: { method: string; url: string }) {
    super(`${problem.detail || problem.title} (HTTP ${problem.status})`);
    this.status = problem.status;
    this.problem = problem;
    this.method = request.method;
    this.url = request.url;
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

/**
 * `POSTBOX_URL` and `POSTBOX_TOKEN`, when running under Node; nothing elsewhere.
 *
 * The server's rule that only its config module reads the environment keeps a service's
 * settings in one validated place. This is a library instead, used by people's own
 * programs, and the contract promises that clients honour these two variables; a browser
 * has no environment, so the lookup is guarded rather than assumed.
 */
function environmentDefaults(): { url?: string; token?: string } {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  if (!env) return {};
  // An empty variable is a common way to unset one in a shell or a CI file.
  return { url: env.POSTBOX_URL || undefined, token: env.POSTBOX_TOKEN || undefined };
}

type QueryValue = string | number | boolean | undefined;

interface RequestSpec {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  query?: Record<string, QueryValue>;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
}

/** Percent-encodes one path segment: user ids may hold `?`, `#`, `%` and spaces, and ids come from callers. */
const seg = encodeURIComponent;

/**
 * A client for one Postbox server. Each method is one HTTP call and resolves with the
 * answer's wire type; a failed call rejects with {@link PostboxError} (the server said no)
 * or {@link PostboxConnectionError} (no answer).
 *
 * @example
 * const postbox = new PostboxClient({ url: 'http://localhost:8080' });
 * await postbox.send({ fromUser: 'Val', toUser: 'Steve', message: 'hi' });
 * for await (const m of postbox.messages('Steve')) console.log(m.fromUser, m.message);
 */
export class PostboxClient {
  /** The base URL every path is resolved against, without a trailing slash. */
  readonly url: string;
  private readonly token: string | undefined;
  private readonly fetchImpl: typeof fetch;

  constructor(options: PostboxClientOptions = {}) {
    const defaults = options.url === undefined || options.token === undefined ? environmentDefaults() : {};
    const url = options.url ?? defaults.url ?? DEFAULT_URL;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new TypeError(`not a valid Postbox URL: "${url}" (expected e.g. http://localhost:8080)`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new TypeError(`not a valid Postbox URL: "${url}" (expected http:// or https://)`);
    }
    // Joined by string, not `new URL(path, base)`, so a base with a path prefix keeps it.
    this.url = `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}`;
    this.token = options.token === null ? undefined : (options.token ?? defaults.token);
    // Bound, since a bare reference to the global fetch throws "Illegal invocation" in browsers.
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  }

  // ---- messages -------------------------------------------------------------------------

  /** Sends a message (`POST /v1/messages`). In token mode `fromUser` may be omitted. */
  send(message: SendMessage, options: SendOptions = {}): Promise<Message> {
    return this.call<Message>({
      method: 'POST', path: '/v1/messages', body: message, signal: options.signal,
      headers: options.idempotencyKey === undefined ? {} : { 'idempotency-key': options.idempotencyKey },
    });
  }

  /** One message, to its sender or recipient. */
  getMessage(id: string, options: CallOptions = {}): Promise<Message> {
    return this.call<Message>({ method: 'GET', path: `/v1/messages/${seg(id)}`, signal: options.signal });
  }

  /** Deletes a message for both its sender and its recipient. */
  async deleteMessage(id: string, options: CallOptions = {}): Promise<void> {
    await this.call({ method: 'DELETE', path: `/v1/messages/${seg(id)}`, signal: options.signal });
  }

  /** One page of a user's inbox; with `wait`, a long-poll for the next message. */
  inbox(user: string, query: InboxQuery = {}): Promise<MessagePage> {
    const { after, before, limit, from, unread, wait, signal } = query;
    return this.call<MessagePage>({
      method: 'GET', path: `/v1/users/${seg(user)}/messages`, query: { after, before, limit, from, unread, wait }, signal,
    });
  }

  /** One page of the messages a user sent. */
  sent(user: string, query: PageQuery = {}): Promise<MessagePage> {
    const { after, before, limit, signal } = query;
    return this.call<MessagePage>({ method: 'GET', path: `/v1/users/${seg(user)}/sent`, query: { after, before, limit }, signal });
  }

  /** A user's conversations, most recent first. */
  conversations(user: string, query: ConversationsQuery = {}): Promise<ConversationList> {
    const { before, limit, signal } = query;
    return this.call<ConversationList>({
      method: 'GET', path: `/v1/users/${seg(user)}/conversations`, query: { before, limit }, signal,
    });
  }

  /** One page of the messages between a user and a peer, both directions. */
  conversation(user: string, peer: string, query: PageQuery = {}): Promise<MessagePage> {
    const { after, before, limit, signal } = query;
    return this.call<MessagePage>({
      method: 'GET', path: `/v1/users/${seg(user)}/conversations/${seg(peer)}`, query: { after, before, limit }, signal,
    });
  }

  /** Marks messages to a user read; answers how many are still unread. */
  markRead(user: string, which: ReadSelection, options: CallOptions = {}): Promise<ReadResult> {
    return this.call<ReadResult>({ method: 'POST', path: `/v1/users/${seg(user)}/read`, body: which, signal: options.signal });
  }

  // ---- every page -----------------------------------------------------------------------
  // Paging is done once, in `walk`; these only say which call fetches a page.

  /**
   * Every message of a user's inbox matching `query`, across as many pages as it takes.
   * Forward (the default, or `after`) yields oldest first; backward (`before`) newest first.
   * `limit` sets the page size. It ends where the inbox ends now; it does not wait.
   */
  messages(user: string, query: Omit<InboxQuery, 'wait'> = {}): AsyncGenerator<Message, void, undefined> {
    return this.walk(query, (q) => this.inbox(user, q));
  }

  /** Every message a user sent, across pages, in the same order as {@link messages}. */
  sentMessages(user: string, query: PageQuery = {}): AsyncGenerator<Message, void, undefined> {
    return this.walk(query, (q) => this.sent(user, q));
  }

  /** Every message between a user and a peer, across pages, in the same order as {@link messages}. */
  conversationMessages(user: string, peer: string, query: PageQuery = {}): AsyncGenerator<Message, void, undefined> {
    return this.walk(query, (q) => this.conversation(user, peer, q));
  }

  /** Follows `next` in the direction the first query set, until the server says there is no more. */
  private async *walk<Q extends PageQuery>(
    first: Q,
    load: (query: Q) => Promise<MessagePage>,
  ): AsyncGenerator<Message, void, undefined> {
    const backward = first.after === undefined && first.before !== undefined;
    let query = first;
    for (;;) {
      const page = await load(query);
      // Each page is oldest first; reversing backward pages keeps one order throughout.
      yield* backward ? [...page.messages].reverse() : page.messages;
      if (page.next === null) return;
      query = backward ? { ...query, before: page.next } : { ...query, after: page.next };
    }
  }

  // ---- users and tokens -----------------------------------------------------------------

  /** Creates a user and its first token, which is shown only in this answer (admin token). */
  createUser(id: string, options: CallOptions = {}): Promise<CreatedUser> {
    return this.call<CreatedUser>({ method: 'POST', path: '/v1/users', body: { id }, signal: options.signal });
  }

  /** Every user (admin token). */
  listUsers(options: CallOptions = {}): Promise<UserList> {
    return this.call<UserList>({ method: 'GET', path: '/v1/users', signal: options.signal });
  }

  /** Removes a user: its tokens stop working; its messages stay (admin token). */
  async deleteUser(id: string, options: CallOptions = {}): Promise<void> {
    await this.call({ method: 'DELETE', path: `/v1/users/${seg(id)}`, signal: options.signal });
  }

  /** Issues another token for a user (that user's token or the admin token). */
  createToken(user: string, options: CallOptions = {}): Promise<IssuedToken> {
    return this.call<IssuedToken>({ method: 'POST', path: `/v1/users/${seg(user)}/tokens`, signal: options.signal });
  }

  /** Revokes every token of a user, including the one making this call if it is theirs. */
  async revokeTokens(user: string, options: CallOptions = {}): Promise<void> {
    await this.call({ method: 'DELETE', path: `/v1/users/${seg(user)}/tokens`, signal: options.signal });
  }

  // ---- operations -----------------------------------------------------------------------

  /** Liveness: resolves while the server answers HTTP at all. */
  health(options: CallOptions = {}): Promise<HealthStatus> {
    return this.call<HealthStatus>({ method: 'GET', path: '/healthz', signal: options.signal });
  }

  /** Readiness: resolves while storage answers too; rejects with a 503 {@link PostboxError} otherwise. */
  ready(options: CallOptions = {}): Promise<HealthStatus> {
    return this.call<HealthStatus>({ method: 'GET', path: '/readyz', signal: options.signal });
  }

  // ---- live stream ----------------------------------------------------------------------

  /**
   * Follows a user's inbox live (`GET /v1/users/{user}/stream`) until `signal` aborts, the
   * subscription is closed, or the server ends it (user removed, token revoked).
   *
   * It reconnects by itself after any disconnect, with exponential backoff and jitter
   * (honouring `Retry-After` when the server is busy), resuming after the last message it
   * delivered, so `onMessage` sees every message once, in order. Without `after` it starts
   * with the next new message: it first learns the newest id, so that even a disconnect
   * before the first message loses nothing. A refusal that retrying cannot fix (401, 403,
   * 400, 404) stops it and rejects `closed` with the {@link PostboxError}.
   *
   * @example
   * const sub = postbox.subscribe('Steve', { onMessage: (m) => console.log(m.fromUser, m.message) });
   * // later: sub.close(); await sub.closed;
   */
  subscribe(user: string, options: SubscribeOptions): Subscription {
    const controller = new AbortController();
    const abort = () => controller.abort();
    if (options.signal?.aborted) controller.abort();
    else options.signal?.addEventListener('abort', abort, { once: true });
    const state = { lastId: options.after };
    const closed = this.follow(user, options, controller.signal, state)
      .finally(() => options.signal?.removeEventListener('abort', abort));
    // The caller awaits `closed` or not; an unobserved rejection must not crash a process.
    closed.catch(() => undefined);
    return {
      closed,
      close: () => controller.abort(),
      get lastEventId() {
        return state.lastId;
      },
    };
  }

  private async follow(user: string, options: SubscribeOptions, signal: AbortSignal, state: { lastId: string | undefined }): Promise<void> {
    const minDelay = options.reconnect?.minMs ?? 500;
    const maxDelay = options.reconnect?.maxMs ?? 30_000;
    let delay = minDelay;
    const emit = (event: StreamEvent) => options.onEvent?.(event);
    while (!signal.aborted) {
      let wait: number;
      try {
        if (state.lastId === undefined) {
          const newest = await this.inbox(user, { before: 'latest', limit: 1, signal });
          state.lastId = newest.messages[0]?.id ?? '0';
        }
        const url = this.endpoint(`/v1/users/${seg(user)}/stream`);
        let response: Response;
        try {
          response = await this.fetchImpl(url, {
            headers: this.headers({ accept: 'text/event-stream', 'last-event-id': state.lastId }),
            signal,
          });
        } catch (err) {
          if (signal.aborted) return;
          throw new PostboxConnectionError(url, err);
        }
        if (!response.ok) {
          const error = await this.failure(response, 'GET', url);
          if (response.status !== 429 && response.status !== 503) throw error;
          emit({ type: 'disconnected', error });
          wait = Math.max(delay, retryAfterMs(response) ?? 0);
        } else {
          emit({ type: 'open' });
          let sawMessage = false;
          const outcome = await readEvents(response, signal, (event) => {
            if (event.type === 'message') {
              state.lastId = event.message.id;
              sawMessage = true;
              options.onMessage(event.message);
            }
            emit(event);
          });
          if (outcome === 'ended' || signal.aborted) return;
          // A stream that delivered something was healthy: start the backoff over.
          if (sawMessage) delay = minDelay;
          emit({ type: 'disconnected' });
          wait = delay;
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof PostboxError && err.status !== 429 && err.status !== 503) throw err;
        emit({ type: 'disconnected', error: err as Error });
        wait = delay;
      }
      delay = Math.min(maxDelay, delay * 2);
      // Jitter, so a server's many clients do not all come back in the same instant.
      await sleep(wait * (0.5 + Math.random() / 2), signal);
    }
  }

  // ---- transport ------------------------------------------------------------------------

  /** The absolute URL of `path`, with the query parameters that are set. */
  private endpoint(path: string, query: Record<string, QueryValue> = {}): string {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) params.set(key, String(value));
    }
    const search = params.toString();
    return `${this.url}${path}${search ? `?${search}` : ''}`;
  }

  /** Headers every request carries. */
  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return {
      accept: 'application/json, application/problem+json',
      ...(this.token === undefined ? {} : { authorization: `Bearer ${this.token}` }),
      ...extra,
    };
  }

  /** One request: the parsed JSON answer, `undefined` for an answer with no body, or a thrown error. */
  private async call<T = undefined>(spec: RequestSpec): Promise<T> {
    const url = this.endpoint(spec.path, spec.query);
    const init: RequestInit = {
      method: spec.method,
      headers: this.headers(spec.body === undefined ? spec.headers : { 'content-type': 'application/json', ...spec.headers }),
    };
    if (spec.body !== undefined) init.body = JSON.stringify(spec.body);
    if (spec.signal) init.signal = spec.signal;
    let response: Response;
    try {
      response = await this.fetchImpl(url, init);
    } catch (err) {
      // A cancelled call is the caller's doing, not a connection problem: hand back their reason.
      if (spec.signal?.aborted) throw err;
      throw new PostboxConnectionError(url, err);
    }
    if (!response.ok) throw await this.failure(response, spec.method, url);
    const text = await response.text();
    if (text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      // Most likely something other than Postbox answers at this URL (a proxy's or a web server's page).
      throw new Error(`${spec.method} ${url} answered ${response.status} with a body that is not JSON; is this a Postbox server?`);
    }
  }

  /** The {@link PostboxError} for an error answer, whatever its body holds. */
  private async failure(response: Response, method: string, url: string): Promise<PostboxError> {
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
    return new PostboxError(problem, { method, url });
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A `Retry-After` in seconds, as milliseconds. */
function retryAfterMs(response: Response): number | undefined {
  const seconds = Number(response.headers.get('retry-after'));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined;
}

/**
 * Reads a `text/event-stream` body (the WHATWG format) and hands each Postbox event on.
 * Resolves `'ended'` after an `end` event, `'dropped'` when the body stops otherwise.
 */
async function readEvents(response: Response, signal: AbortSignal, on: (event: StreamEvent) => void): Promise<'ended' | 'dropped'> {
  if (!response.body) return 'dropped';
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const cancel = () => void reader.cancel().catch(() => undefined);
  signal.addEventListener('abort', cancel, { once: true });
  let pending = '';
  let name = 'message';
  let data: string[] = [];
  try {
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch {
        return 'dropped';
      }
      if (chunk.done) return 'dropped';
      pending += chunk.value;
      let nl: number;
      while ((nl = pending.search(/\r\n|\r|\n/)) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + (pending.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (data.length > 0) {
            const event = toStreamEvent(name, data.join('\n'));
            if (event) {
              on(event);
              if (event.type === 'end') return 'ended';
            }
          }
          name = 'message';
          data = [];
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') name = value;
          else if (field === 'data') data.push(value);
        }
      }
    }
  } finally {
    signal.removeEventListener('abort', cancel);
    cancel();
  }
}

function toStreamEvent(name: string, data: string): StreamEvent | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return undefined;
  }
  const p = parsed as Record<string, unknown>;
  switch (name) {
    case 'message': return { type: 'message', message: parsed as Message };
    case 'deleted': return { type: 'deleted', id: String(p.id) };
    case 'read': return { type: 'read', ids: (p.ids as string[]) ?? [], readAt: String(p.readAt) };
    case 'end': return { type: 'end', reason: String(p.reason) };
    default: return undefined;
  }
}

function isFieldError(value: unknown): value is ProblemFieldError {
  const v = value as Partial<ProblemFieldError> | null;
  return typeof v === 'object' && v !== null && typeof v.field === 'string' && typeof v.message === 'string';
}
