/**
 * The Storage interface: what the domain needs from a backend, and nothing of how.
 *
 * Every method is async, even over synchronous better-sqlite3, so that PostgreSQL meets the
 * same contract; `test/storage/storage.contract.ts` is the executable form of this file and
 * every backend runs it unchanged.
 *
 * Cursors are message sequence numbers (the numeric form of a message id). A backend must
 * make them commit-ordered: once a reader has seen sequence n, no message with a sequence
 * below n may become visible later. Paging and stream resumption rely on it.
 */
import type { Message, User } from '../protocol/types.js';
import type { WireRow } from '../protocol/wire.js';
import type { WebhookStore } from './webhooks.js';
import type { PruneResult, TaskLease } from './writes.js';
import type { NotStoredListener } from './import-check.js';

export type { WireRow };

/** A message as the domain hands it to storage: validated and normalized. */
export interface NewMessage {
  fromUser: string;
  toUser: string;
  message: string;
}

/** An idempotency key, scoped to its sender, with a fingerprint of the request it came with. */
export interface IdempotencyClaim {
  key: string;
  fingerprint: string;
}

/** The outcome of {@link Storage.send}. */
export type SendOutcome =
  | { kind: 'stored'; message: Message }
  /** The key was already used for the same request: the first result, nothing new stored. */
  | { kind: 'replayed'; message: Message }
  /** The key was already used for a different request. */
  | { kind: 'mismatch' };

/**
 * A window over an ordered set of messages. With `after` the page runs forward from just
 * after it; with `before` (and no `after`) backward from just before it (`Infinity` is
 * "latest"); with neither, forward from the oldest.
 */
export interface PageQuery {
  after?: number;
  before?: number;
  limit: number;
}

/** Inbox filters on top of a {@link PageQuery}. */
export interface InboxQuery extends PageQuery {
  from?: string;
  unreadOnly?: boolean;
}

/** One numbered schema step of a backend, applied in order at start and by `postbox migrate`. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * A page read from storage: each message's canonical JSON (protocol/wire.ts) beside its id,
 * oldest first, and whether more lie beyond in the same direction. Every page route and the
 * stream replay send these texts as they are instead of building and serializing objects.
 */
export interface WirePage {
  /** Read-only: a backend may hand the same page to several readers. */
  rows: readonly WireRow[];
  more: boolean;
}

/** One conversation of a user, as storage keeps it. */
export interface StoredConversation {
  peer: string;
  lastMessage: Message;
  unread: number;
}

/** Which messages to mark read. */
export type ReadSelector = { upTo: number } | { ids: number[] };

/** The outcome of {@link Storage.markRead}. */
export interface ReadOutcome {
  /** Messages to the user still unread afterwards. */
  unread: number;
  /** The messages this call changed, with the time it set. */
  ids: string[];
  /** The sender of each of `ids`, index by index: who gets a read receipt. */
  senders: string[];
  readAt: string;
}

/**
 * Something that changed, told to listeners after it committed.
 *
 * Listeners hear events in commit order, so a `message` event's id is greater than that of
 * every message event heard before it; live streams rely on it. A backend whose change feed
 * can lose events (a dropped connection) says `resync` once it is whole again: every
 * listener must then re-read from storage after its own cursor.
 */
export type StoreEvent =
  | { type: 'message'; message: Message }
  | { type: 'deleted'; id: string; fromUser: string; toUser: string }
  /** `senders[i]` sent `ids[i]`; they hear of it as a read receipt. */
  | { type: 'read'; user: string; ids: string[]; senders: string[]; readAt: string }
  | { type: 'user-removed'; user: string }
  | { type: 'tokens-revoked'; user: string }
  | { type: 'resync' };

/** A listener for committed changes. */
export type StoreListener = (events: readonly StoreEvent[]) => void;

/** One line of an export: everything a store holds, in an order an import can replay. */
export type ExportRecord =
  | { type: 'user'; id: string; createdAt: string }
  /** A removed user's id, kept reserved so that no one re-created under it inherits its messages. */
  | { type: 'reservation'; id: string; removedAt: string }
  /** `scopes` is present only for a token narrower than `full`. */
  | { type: 'token'; user: string; hash: string; createdAt: string; scopes?: string }
  | { type: 'message'; message: Message };

/** What a store knows of an id: a user, a removed user's reserved id, or nothing. */
export type UserStatus = 'user' | 'reserved' | 'none';

/** How many records of each kind an import stored. */
export interface ImportCounts {
  users: number;
  tokens: number;
  messages: number;
  reservations: number;
}

/** Whose a token is, and what it may do. */
export interface TokenOwner {
  user: string;
  /** Space-separated scope names, e.g. `full` or `read send`. */
  scopes: string;
}

/** A user's row, with the hashes of its tokens never leaving storage except by export. */
export type StoredUser = User;

/**
 * Where a backend reports trouble that no caller is there to hear (a listener that threw, a
 * connection lost and being recovered). pino's Logger fits.
 */
export interface StorageLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Which messages one prune write removes (at most `limit` of them, the oldest first); with a
 * `lease`, only while its holder still holds that claim, which the write renews.
 */
export type PruneSelector =
  /** Messages sent before this time (ms since the epoch). */
  | { before: number; limit: number; lease?: TaskLease }
  /** Messages to `inbox` whose id is at most `upTo`. */
  | { inbox: string; upTo: number; limit: number; lease?: TaskLease };

/** How an instance claims a maintenance task (see {@link Storage.claimTask}). */
export interface TaskClaim {
  /** This instance, as the claims row names it while it runs the task. */
  holder: string;
  /** The task runs at most once in this long (ms), counted from the later of a run's start and end. */
  everyMs: number;
  /** How long the claim lasts unless renewed (ms): what a crashed holder keeps the task for. */
  leaseMs: number;
}

/** What an operator watches about a store (`/metrics`). */
export interface StoreStats {
  /** Messages stored. */
  messages: number;
  /** When the oldest stored message was sent (ISO 8601), or null without messages. */
  oldestSentAt: string | null;
  /** Bytes the store takes: the database file (SQLite) or the tables and indexes (PostgreSQL). */
  storeBytes: number;
  /** Bytes of SQLite's write-ahead log; null for PostgreSQL, whose WAL is the server's. */
  walBytes: number | null;
  /** When the WAL was last folded back into the database (SQLite, ms), or null. */
  lastCheckpointAt: number | null;
  /** When retention last started a run on any instance of this store (ms, from its claims row), or null. */
  retentionRanAt: number | null;
}

/**
 * Told of each committed batch of writes: how many, and how long its transaction took (on
 * PostgreSQL the server's sync included; SQLite's WAL fsync comes after, see {@link SyncObserver}).
 */
export type CommitObserver = (size: number, seconds: number) => void;

/** Told how long each of the store's own durability fsyncs took (SQLite's WAL, in `fsync` durability). */
export type SyncObserver = (seconds: number) => void;

/** The storage contract. */
export interface Storage {
  /** `sqlite` or `postgres`, for logs and metrics. */
  readonly kind: string;
  /** Webhook endpoints and their delivery outbox. */
  readonly webhooks: WebhookStore;

  /** Stores a message and answers once it is durable (per the configured durability). */
  send(message: NewMessage, idempotency?: IdempotencyClaim): Promise<SendOutcome>;
  /** The message with this sequence number, or null. */
  getMessage(seq: number): Promise<Message | null>;
  /** Deletes a message everywhere; answers what was deleted, or null if there was none. */
  deleteMessage(seq: number): Promise<Message | null>;

  /** Messages to `user`. */
  inbox(user: string, query: InboxQuery): Promise<WirePage>;
  /** Messages `user` sent. */
  sent(user: string, query: PageQuery): Promise<WirePage>;
  /**
   * Messages to `user` and messages `user` sent, in the one id order, read as one snapshot;
   * a message to oneself once. The stream that also carries what the user sends replays it.
   */
  mailbox(user: string, query: PageQuery): Promise<WirePage>;
  /** Messages between `user` and `peer`, both directions. */
  conversation(user: string, peer: string, query: PageQuery): Promise<WirePage>;
  /** `user`'s conversations, most recent first, those whose last message is before `before`. */
  conversations(user: string, query: { before?: number; limit: number }): Promise<{ conversations: StoredConversation[]; more: boolean }>;
  /** Marks messages to `user` read. Messages not to `user`, or already read, are left alone. */
  markRead(user: string, which: ReadSelector): Promise<ReadOutcome>;

  /**
   * Creates a user with its first token hash; false if the id is taken or reserved. Without
   * a hash the user has no token: the record of a user a JWT names (jwt mode).
   */
  createUser(id: string, tokenHash?: string): Promise<boolean>;
  /** All users, by id. */
  listUsers(): Promise<StoredUser[]>;
  /** Removes a user and its tokens (not its messages); false if there was none. */
  deleteUser(id: string): Promise<boolean>;
  /** Adds a token hash to an existing user, with its scopes (`full` if not given); false if there is no such user. */
  addToken(user: string, tokenHash: string, scopes?: string): Promise<boolean>;
  /**
   * Removes a user and its tokens; false if there was none. The id stays reserved (no
   * {@link createUser} takes it) so that no one inherits the messages, which stay. With
   * `purge`, every message to or from the user goes too and the id is free again; a purge
   * also frees the id of a user removed earlier without one.
   */
  deleteUser(id: string, options?: { purge?: boolean }): Promise<boolean>;
  /** True if `id` is a user now (not removed). */
  userExists(id: string): Promise<boolean>;
  /** Whether `id` is a user now, the reserved id of a removed user, or neither. */
  userStatus(id: string): Promise<UserStatus>;
  /** Adds a token hash to an existing user; false if there is no such user. */
  addToken(user: string, tokenHash: string): Promise<boolean>;
  /** Removes every token of a user; answers how many. */
  revokeTokens(user: string): Promise<number>;
  /** The user a token hash belongs to, or null. */
  userForToken(tokenHash: string): Promise<string | null>;
  /** The user a token hash belongs to and the token's scopes (space-separated, `full` by default), or null. */
  tokenOwner(tokenHash: string): Promise<TokenOwner | null>;

  /**
   * Every user id the store names: users, removed users' reserved ids, recipients and
   * senders (each walked through its column's index, not through the messages), an id
   * possibly more than once. For reports of ids an older rule let in.
   */
  storedUserIds(): AsyncIterable<string>;

  /** Every user, reservation, token and message, streamed with flat memory. */
  exportAll(): AsyncIterable<ExportRecord>;
  /**
   * Replays exported records, keeping ids; answers how many of each it stored. An id is
   * never both a user and reserved: a user whose id the store reserves, or a reservation of
   * an id the store holds as a user, is not stored (import-plan.ts names them as conflicts first).
   * A record whose id (or token hash) the store already holds is not stored either, and
   * `notStored` is told of it after its chunk commits, so a caller can tell the same record
   * from a different one written meanwhile.
   */
  importAll(records: AsyncIterable<ExportRecord>, notStored?: NotStoredListener): Promise<ImportCounts>;

  /**
   * Retention: removes the messages `which` selects, in one short write; conversation rows
   * and unread counts follow. Listeners hear nothing of it.
   */
  prune(which: PruneSelector): Promise<PruneResult>;
  /** The first recipient id above `after` that has messages, or null: walks every inbox, one at a time. */
  nextInbox(after: string): Promise<string | null>;
  /** The id of the newest message of `user`'s inbox beyond its newest `keep`, or null if it holds no more than `keep`. */
  inboxCutoff(user: string, keep: number): Promise<number | null>;
  /**
   * Claims maintenance task `task` for `claim.holder` if no instance of this store holds it
   * and none ran it in the last `claim.everyMs`; the claim is held until {@link releaseTask}
   * or until its lease runs out, and each prune write naming it renews the lease.
   */
  claimTask(task: string, claim: TaskClaim): Promise<boolean>;
  /** Lets go of a claim; false if `holder` no longer held it. */
  releaseTask(task: string, holder: string): Promise<boolean>;
  /** Figures for an operator; may be a few seconds old. */
  stats(): Promise<StoreStats>;
  /** Registers an observer of committed batches; returns its removal. */
  onCommit(observer: CommitObserver): () => void;
  /**
   * Registers an observer of the store's own fsyncs; returns its removal, or undefined when
   * the store makes none of its own (PostgreSQL's server syncs inside its commit; SQLite in
   * `relaxed` durability does not wait for one).
   */
  onSync(observer: SyncObserver): (() => void) | undefined;
  /** Whether the store keeps its own write-ahead log and checkpoints (SQLite), whose figures {@link stats} reports; PostgreSQL's are the server's. */
  readonly ownWal: boolean;
  /** Writes queued or being committed, not yet answered. */
  readonly pendingWrites: number;

  /** Resolves when storage answers; rejects with `storage_unavailable` otherwise. */
  ping(): Promise<void>;
  /** Registers a listener for committed changes; returns its removal. */
  onEvents(listener: StoreListener): () => void;
  /** Finishes pending writes and releases every resource. */
  close(): Promise<void>;
}
