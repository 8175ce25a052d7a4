/**
 * The Postbox client class: every v1 call as one method over `fetch`.
 */
import type {
  ConversationList, CreatedUser, Identity, Message, MessagePage, ReadResult, SendMessage, ServerInfo,
} from '../protocol/types.js';
import type { CreatedWebhook, Webhook, WebhookDelivery } from '../protocol/webhooks.js';
import { PostboxConnectionError, problemError } from './errors.js';
import { follow, reconnectNow, type FollowState, type StreamSource } from './stream.js';
import type {
  CallOptions, ConversationsQuery, CreateTokenOptions, HealthStatus, InboxQuery, IssuedToken, NewWebhook, PageQuery,
  PostboxClientOptions, ReadSelection, SendOptions, Subscription, SubscribeOptions, TokenProvider, UserList, WebhookChange,
  WebhookDeliveryPage,
} from './types.js';

/** Where the server is when neither the options nor `POSTBOX_URL` say. */
export const DEFAULT_URL = 'http://localhost:8080';

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
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
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
  private token: string | undefined;
  private readonly provider: TokenProvider | undefined;
  private refreshing: Promise<void> | undefined;
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
    if (typeof options.token === 'function') this.provider = options.token;
    else this.token = options.token === null ? undefined : (options.token ?? defaults.token);
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

  /** Issues another token for a user (that user's token or the admin token), optionally narrowed to `scopes`. */
  createToken(user: string, options: CreateTokenOptions = {}): Promise<IssuedToken> {
    return this.call<IssuedToken>({
      method: 'POST', path: `/v1/users/${seg(user)}/tokens`, signal: options.signal,
      ...(options.scopes === undefined ? {} : { body: { scopes: options.scopes } }),
    });
  }

  /** Revokes every token of a user, including the one making this call if it is theirs. */
  async revokeTokens(user: string, options: CallOptions = {}): Promise<void> {
    await this.call({ method: 'DELETE', path: `/v1/users/${seg(user)}/tokens`, signal: options.signal });
  }

  // ---- webhooks (admin token) -----------------------------------------------------------

  /** Creates a webhook endpoint; its signing secret is in this answer only. */
  createWebhook(webhook: NewWebhook, options: CallOptions = {}): Promise<CreatedWebhook> {
    return this.call<CreatedWebhook>({ method: 'POST', path: '/v1/webhooks', body: webhook, signal: options.signal });
  }

  /** Every webhook endpoint. */
  async listWebhooks(options: CallOptions = {}): Promise<Webhook[]> {
    return (await this.call<{ webhooks: Webhook[] }>({ method: 'GET', path: '/v1/webhooks', signal: options.signal })).webhooks;
  }

  /** One webhook endpoint, with whether it is enabled and why not. */
  getWebhook(id: string, options: CallOptions = {}): Promise<Webhook> {
    return this.call<Webhook>({ method: 'GET', path: `/v1/webhooks/${seg(id)}`, signal: options.signal });
  }

  /** Changes a webhook endpoint; `{ enabled: true }` turns a disabled one back on. */
  updateWebhook(id: string, change: WebhookChange, options: CallOptions = {}): Promise<Webhook> {
    return this.call<Webhook>({ method: 'PATCH', path: `/v1/webhooks/${seg(id)}`, body: change, signal: options.signal });
  }

  /** Removes a webhook endpoint and its deliveries. */
  async deleteWebhook(id: string, options: CallOptions = {}): Promise<void> {
    await this.call({ method: 'DELETE', path: `/v1/webhooks/${seg(id)}`, signal: options.signal });
  }

  /** An endpoint's deliveries, newest first, each with its latest attempt. */
  webhookDeliveries(id: string, query: { before?: string; limit?: number } & CallOptions = {}): Promise<WebhookDeliveryPage> {
    const { before, limit, signal } = query;
    return this.call<WebhookDeliveryPage>({ method: 'GET', path: `/v1/webhooks/${seg(id)}/deliveries`, query: { before, limit }, signal });
  }

  /** Delivers one again, now. */
  retryWebhookDelivery(id: string, deliveryId: string, options: CallOptions = {}): Promise<WebhookDelivery> {
    return this.call<WebhookDelivery>({
      method: 'POST', path: `/v1/webhooks/${seg(id)}/deliveries/${seg(deliveryId)}/retry`, signal: options.signal,
    });
  }

  // ---- operations -----------------------------------------------------------------------

  /** How the server runs: open or token mode, and its message size limit (no token needed). */
  serverInfo(options: CallOptions = {}): Promise<ServerInfo> {
    return this.call<ServerInfo>({ method: 'GET', path: '/v1/server', signal: options.signal });
  }

  /** Who this client's token is: a user, or the admin; in token mode a bad token rejects with a 401. */
  me(options: CallOptions = {}): Promise<Identity> {
    return this.call<Identity>({ method: 'GET', path: '/v1/me', signal: options.signal });
  }

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
   * subscription is closed, or the server ends it (user removed, token revoked). With
   * `sent: true` it follows what the user sends too (another tab, device or client).
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
    const state: FollowState = { lastId: options.after };
    const url = this.endpoint(`/v1/users/${seg(user)}/stream`, { sent: options.sent === true ? 'true' : undefined });
    const newest = async (page: Promise<MessagePage>) => Number((await page).messages[0]?.id ?? '0');
    const source: StreamSource = {
      url,
      // With `sent`, the newest of both boxes: anything committing after both reads is above it.
      newestId: async (signal) => String(Math.max(
        await newest(this.inbox(user, { before: 'latest', limit: 1, signal })),
        options.sent === true ? await newest(this.sent(user, { before: 'latest', limit: 1, signal })) : 0,
      )),
      open: async (lastId, signal) => this.fetchImpl(url, {
        headers: await this.headers({ accept: 'text/event-stream', 'last-event-id': lastId }),
        signal,
      }),
      ...(this.provider ? { refresh: () => this.refreshToken() } : {}),
      failure: (response) => problemError(response, 'GET', url),
    };
    const closed = follow(source, options, controller.signal, state)
      .finally(() => options.signal?.removeEventListener('abort', abort));
    // The caller awaits `closed` or not; an unobserved rejection must not crash a process.
    closed.catch(() => undefined);
    return {
      closed,
      close: () => controller.abort(),
      reconnect: () => reconnectNow(state),
      get lastEventId() {
        return state.lastId;
      },
    };
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

  /** Asks the provider for a fresh token; concurrent askers share one call. */
  private refreshToken(): Promise<void> {
    const provider = this.provider;
    if (!provider) return Promise.resolve();
    this.refreshing ??= (async () => {
      try {
        this.token = await provider();
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** Headers every request carries. */
  private async headers(extra: Record<string, string> = {}): Promise<Record<string, string>> {
    if (this.provider && this.token === undefined) await this.refreshToken();
    return {
      accept: 'application/json, application/problem+json',
      ...(this.token === undefined ? {} : { authorization: `Bearer ${this.token}` }),
      ...extra,
    };
  }

  /** One request: the parsed JSON answer, `undefined` for an answer with no body, or a thrown error. */
  private async call<T = undefined>(spec: RequestSpec, refreshed = false): Promise<T> {
    const url = this.endpoint(spec.path, spec.query);
    const init: RequestInit = {
      method: spec.method,
      headers: await this.headers(spec.body === undefined ? spec.headers : { 'content-type': 'application/json', ...spec.headers }),
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
    // An expired (or otherwise refused) token from a provider: ask it once for a fresh one.
    if (response.status === 401 && this.provider && !refreshed) {
      await response.body?.cancel();
      await this.refreshToken();
      return this.call<T>(spec, true);
    }
    if (!response.ok) throw await problemError(response, spec.method, url);
    const text = await response.text();
    if (text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      // Most likely something other than Postbox answers at this URL (a proxy's or a web server's page).
      throw new Error(`${spec.method} ${url} answered ${response.status} with a body that is not JSON; is this a Postbox server?`);
    }
  }
}
