/**
 * The client's types: what each call takes and answers, and what a live stream reports.
 * The wire shapes themselves come from `../protocol/`, re-exported here for callers.
 */
import type { Message, User } from '../protocol/types.js';
export type { CreatedWebhook, Webhook, WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookEventType } from '../protocol/webhooks.js';
import type { WebhookDelivery, WebhookEventType } from '../protocol/webhooks.js';

export type {
  Conversation, ConversationList, CreatedUser, Identity, Message, MessagePage, Problem, ProblemFieldError, ReadResult,
  SendMessage, ServerInfo, User,
} from '../protocol/types.js';

/** Something a live stream said, or what became of its connection. */
export type StreamEvent =
  | { type: 'message'; message: Message }
  /** A message the user sent to someone else, from anywhere (only with {@link SubscribeOptions.sent}). */
  | { type: 'sent'; message: Message }
  /** A message to the user (with {@link SubscribeOptions.sent}, or from the user) was deleted. */
  | { type: 'deleted'; id: string }
  /** Messages to the user were marked read (elsewhere, perhaps). */
  | { type: 'read'; ids: string[]; readAt: string }
  /** Messages the user sent were read by their recipient `by` (the sender's read receipt). */
  | { type: 'receipt'; ids: string[]; readAt: string; by: string }
  /** The server ended the stream (user removed, token revoked, token expired); no reconnect follows, except after "token expired" with a token provider. */
  | { type: 'end'; reason: string }
  /** Connected (again). */
  | { type: 'open' }
  /** The connection dropped or was refused for now; a reconnect follows. */
  | { type: 'disconnected'; error?: Error };

/** Options of {@link PostboxClient.subscribe}. */
export interface SubscribeOptions {
  /** Resume after this message id (`"0"` replays the whole inbox). Default: from the next new message. */
  after?: string;
  /**
   * Also follow the messages the user sends, from this client or any other (`sent=true`):
   * each arrives once, in id order with the received ones, through `onSent` and as a `sent`
   * event, and a resume replays both.
   */
  sent?: boolean;
  /** Each message, once, in order. */
  onMessage: (message: Message) => void;
  /** With `sent`: each message the user sent to someone else, once, in order with `onMessage`'s. */
  onSent?: (message: Message) => void;
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
  /**
   * Connects again now, resuming after the last message delivered: cuts a reconnect wait
   * short, or drops the current connection first. For when the network changed (a browser's
   * `online` and `offline` events), since a connection may die without a sign for minutes.
   */
  reconnect(): void;
  /** The id of the last message delivered: where a resume would start. */
  readonly lastEventId: string | undefined;
}

/** How a {@link PostboxClient} reaches its server. */
export interface PostboxClientOptions {
  /** Base URL of the server, e.g. `https://postbox.example.com`; a path prefix is kept. Default: `POSTBOX_URL` under Node, else {@link DEFAULT_URL}. */
  url?: string;
  /**
   * Bearer token for token mode. Default: `POSTBOX_TOKEN` under Node. `null` sends no token
   * even when `POSTBOX_TOKEN` is set, for a caller that has decided on its own settings.
   *
   * Or a token provider (jwt mode): a function answering a token, called for the first call
   * and again whenever the server says the token expired (a 401, or a stream's `end`
   * {"reason":"token expired"}); the call or the stream then goes on with the fresh token.
   */
  token?: string | null | TokenProvider;
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

/** Answers a (fresh) bearer token, e.g. the app's JWT for the signed-in user. */
export type TokenProvider = () => string | Promise<string>;

/** A newly issued token, shown only in this answer. */
export interface IssuedToken {
  token: string;
  /** What it may do: `full`, or some of `send` and `read`. */
  scopes: TokenScope[];
}

/** A token scope: `send` (send as the user only), `read` (inbox, stream, mark read), `full` (everything). */
export type TokenScope = 'full' | 'send' | 'read';

/** Options of {@link PostboxClient.createToken}. */
export interface CreateTokenOptions extends CallOptions {
  /** Narrows the token; default full. */
  scopes?: TokenScope[];
}

/** A new webhook endpoint. */
export interface NewWebhook {
  url: string;
  events: WebhookEventType[];
  description?: string | null;
}

/** A change to a webhook endpoint; absent fields stay. */
export interface WebhookChange {
  url?: string;
  events?: WebhookEventType[];
  description?: string | null;
  /** `true` turns a disabled endpoint back on. */
  enabled?: boolean;
}

/** A page of an endpoint's deliveries, newest first. */
export interface WebhookDeliveryPage {
  deliveries: WebhookDelivery[];
  /** Pass as `before` for older deliveries; null at the oldest. */
  next: string | null;
}

/** The answer of `/healthz` and `/readyz`. */
export interface HealthStatus {
  status: string;
}
