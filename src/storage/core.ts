/**
 * The storage core: the one implementation of {@link Storage}, over a {@link Dialect}.
 *
 * The core owns every algorithm a backend would otherwise repeat: group commit
 * (group-commit.ts), paging (paging.ts), the write decisions (write-decisions.ts), events
 * and their fan-out to listeners (writes.ts), export and import, the read cache
 * (read-cache.ts), and the mapping of trouble to a 503 (failures.ts). A dialect owns only its
 * SQL, its migrations, running a batch in one transaction, and what is truly its own
 * (SQLite's main-thread writer, WAL fsync and checkpointer; PostgreSQL's advisory lock and LISTEN/NOTIFY).
 *
 * How to add a write operation:
 *   1. writes.ts: a member of `StoreWrite`, its result in `StoreWriteResults`, its event (if
 *      listeners hear of it) in `eventOf`.
 *   2. write-decisions.ts: any decision it makes (what to keep, what to refuse), as a pure
 *      function of what the dialect read.
 *   3. Each dialect's write-ops.ts: its SQL, in the `apply` switch. It runs inside the batch's
 *      transaction, so a row that must commit with it (an outbox row) is written right there.
 *   4. Here: a method of `Storage` that is `this.write({ op: … })`.
 * How to add a read:
 *   1. storage.ts: the method on `Storage`, returning what the domain needs.
 *   2. `DialectReads` below: the primitive read (rows as the SQL gives them; paged reads
 *      take a `PageWindow` and answer rows in its order, `fetch` of them at most).
 *   3. Each dialect: the SQL. Here: the method, through `this.read` (503 mapping, closed
 *      check) and, for a page, `finishPage`; through `this.cached` if it is worth keeping.
 *   Message JSON on every read path is the canonical wire text (protocol/wire.ts).
 */
import type { Message } from '../protocol/types.js';
import type { AppError } from '../errors.js';
import { GroupCommit, type BatchResult } from './group-commit.js';
import { importInChunks, type ImportCounts, type NotStoredListener } from './import-check.js';
import { finishPage, isMiddlePage, pageWindow, type PageWindow } from './paging.js';
import { conversationsKey, conversationsSize, inboxKey, ReadCache, wirePageSize } from './read-cache.js';
import { readFailure, StorageDamaged, unavailable } from './failures.js';
import type {
  ExportRecord, IdempotencyClaim, InboxQuery, NewMessage, PageQuery, ReadOutcome, ReadSelector, SendOutcome,
  CommitObserver, PruneSelector, Storage, StorageLogger, StoredConversation, StoredUser, StoreEvent, StoreListener, SyncObserver, TaskClaim,
  StoreStats, TokenOwner, UserStatus, WirePage, WireRow,
} from './storage.js';
import { CoreWebhookStore, type WebhookReads, type WebhookStore } from './webhooks.js';
import type { PruneResult, StoreWrite, StoreWriteResults } from './writes.js';
import { RETENTION_TASK } from './retention.js';

/** A value now (SQLite reads synchronously) or later (PostgreSQL). */
export type Awaitable<T> = T | Promise<T>;

/** A conversation row as a dialect reads it: the last message as its wire JSON. */
export interface ConversationRow {
  peer: string;
  unread: number;
  json: string;
}

/** The row a dialect's one-statement user-status read answers: 1 or null for each table. */
export interface UserStatusRow {
  live: number | null;
  reserved: number | null;
}

/** A {@link UserStatusRow} as the domain reads it. */
export function statusOf(row: UserStatusRow): UserStatus {
  if (row.live !== null) return 'user';
  return row.reserved !== null ? 'reserved' : 'none';
}

/** A removed user's reserved id, and when it was removed. */
export interface Reservation {
  id: string;
  removedAt: string;
}

/**
 * The loose index scan of {@link DialectReads.parties}, in SQL both dialects speak; `param`
 * names their placeholders. `side` picks a column, never user input.
 */
export function partiesSql(side: 'to' | 'from', first: boolean, param: (n: number) => string): string {
  const column = side === 'to' ? 'to_user' : 'from_user';
  return `WITH RECURSIVE ids(id, n) AS (
      SELECT (SELECT min(${column}) FROM messages WHERE ${column} ${first ? '>=' : '>'} ${param(1)}), 1
      UNION ALL
      SELECT (SELECT min(${column}) FROM messages WHERE ${column} > ids.id), n + 1 FROM ids WHERE ids.id IS NOT NULL AND n < ${param(2)}
    ) SELECT id FROM ids WHERE id IS NOT NULL`;
}

/** A token row, for export. */
export interface TokenRow {
  user: string;
  hash: string;
  createdAt: string;
  /** Only for a token narrower than `full`. */
  scopes?: string;
}

/**
 * The reads a dialect answers, each one statement. Paged reads answer rows in the window's
 * order, at most `window.fetch` of them; message JSON is the canonical wire text.
 */
export interface DialectReads {
  message(seq: number): Awaitable<string | undefined>;
  inbox(user: string, query: InboxQuery, window: PageWindow): Awaitable<WireRow[]>;
  sent(user: string, window: PageWindow): Awaitable<WireRow[]>;
  /**
   * Messages to `user` or from `user`, a message to oneself once, in one statement: two
   * separate reads would see different commits, and a page merged from them could skip one.
   */
  mailbox(user: string, window: PageWindow): Awaitable<WireRow[]>;
  /** Both directions between two different users. */
  conversation(user: string, peer: string, window: PageWindow): Awaitable<WireRow[]>;
  /** Conversations whose last message is below `before`, most recent first, at most `fetch`. */
  conversations(user: string, before: number, fetch: number): Awaitable<ConversationRow[]>;
  users(): Awaitable<StoredUser[]>;
  tokens(): Awaitable<TokenRow[]>;
  /** Messages above `after`, oldest first, at most `limit`: the export's chunks. */
  messagesAfter(after: number, limit: number): Awaitable<WireRow[]>;
  userForToken(hash: string): Awaitable<string | null>;
  tokenOwner(hash: string): Awaitable<TokenOwner | null>;
  /** The first recipient above `after` with messages (one index probe), or null. */
  nextInbox(after: string): Awaitable<string | null>;
  /** The id `keep` places below the newest of `user`'s inbox, or null. */
  inboxCutoff(user: string, keep: number): Awaitable<number | null>;
  /** What `/metrics` shows of the store (counted, so the core keeps it a few seconds). */
  stats(): Awaitable<Omit<StoreStats, 'retentionRanAt'>>;
  /** When maintenance task `task` last started a run on any instance (ms), from the store's claims row, or null. */
  taskRanAt(task: string): Awaitable<number | null>;
  /** True if `id` is a user now (not removed). */
  userExists(id: string): Awaitable<boolean>;
  /** Whether `id` is a user, a removed user's reserved id, or neither (one statement). */
  userStatus(id: string): Awaitable<UserStatus>;
  /** Every removed user's reserved id, by id. */
  reservations(): Awaitable<Reservation[]>;
  /**
   * Up to `limit` distinct recipients (`to`) or senders (`from`) above `after` (from the
   * first when null), in order: one statement that skips from id to id through the
   * column's index (a loose index scan), so its cost follows the ids, not the messages.
   */
  parties(side: 'to' | 'from', after: string | null, limit: number): Awaitable<string[]>;
  /** Any cheap statement: proves the database answers. */
  ping(): Awaitable<unknown>;
}

/** What a backend supplies to the core. */
export interface Dialect {
  /** `sqlite` or `postgres`. */
  readonly kind: string;
  readonly reads: DialectReads;
  readonly webhookReads: WebhookReads;
  /** Commits a batch of writes in one transaction (see group-commit.ts's `BatchRunner`). */
  runBatch(writes: readonly StoreWrite[]): Promise<BatchResult>;
  /**
   * Whether the dialect tells listeners itself (PostgreSQL: every instance hears every
   * commit through its change feed, its own included). Otherwise the core tells them.
   */
  readonly ownFeed: boolean;
  /**
   * Whether `runBatch` commits synchronously, on this thread (SQLite): batches then gather
   * the writes of one event-loop turn (see GroupCommit's `sameThread`).
   */
  readonly sameThread?: boolean;
  /** Whether ping also commits an empty batch: readiness means a write could commit now (SQLite's lock may be held elsewhere). */
  readonly pingWrites: boolean;
  /**
   * A number that changes whenever anything commits, by this process or any other, cheap
   * enough to ask before every cached read; a dialect without one gets no read cache.
   */
  readonly commitVersion?: () => number;
  /**
   * A durability step after the commit (SQLite's WAL fsync): while it has commits pending,
   * nothing they changed may be read, so reads wait for it and hold new batches back
   * meanwhile (see {@link ReadGate}). Its runner hands the same step's promise as `settled`,
   * so writers and listeners wait for it too.
   */
  readonly durability?: DurabilityStep;
  /** Whether the store keeps its own write-ahead log and checkpoints (SQLite), rather than a server's. */
  readonly ownWal?: boolean;
  /** How a failed read is described in its 503 (an outage or some other failure). */
  describeReadFailure?(err: unknown): string;
  /** True for a failure that means the store is damaged: a 500 logged as such, not a retryable 503. */
  isDamage?(err: unknown): boolean;
  /**
   * Why every write must be refused now (the store's file was deleted or replaced under
   * us), or null. Asked before every write, so cheap: the answer is kept, not looked up.
   */
  writesRefused?(): string | null;
  /** Why a write could not commit now (file gone, read-only, disk full), or null; asked by ping. */
  writeProblem?(): Promise<string | null>;
  /** Releases the dialect's resources, after the last batch was answered. */
  close(): Promise<void>;
}

/** Commits made visible before they are durable, and the wait for them to be. */
export interface DurabilityStep {
  /** True while some commit is not yet durable. */
  readonly pending: boolean;
  /** Resolves once every commit made so far is durable. */
  whenDurable(): Promise<void>;
  /** Tells `observer` the seconds of each of the step's own fsyncs, when it makes them. */
  observeSync?(observer: (seconds: number) => void): void;
}

/**
 * Shows readers only what is durable when commits become visible before they are: a read
 * that arrives while commits are pending waits until they are durable, and no new batch
 * starts while any read waits, so when the wait ends everything visible is durable and the
 * read (synchronous on SQLite) runs before anything else can commit. A read never waits
 * for more than the fsync under way and the one after it.
 */
export class ReadGate {
  private waiting = 0;
  private reopen: (() => void) | undefined;
  private closed: Promise<void> | undefined;

  constructor(private readonly step: DurabilityStep) {}

  /** Runs `read` once nothing visible is undurable. */
  run<T>(read: () => Promise<T>): Promise<T> {
    if (!this.step.pending) return read();
    this.waiting++;
    this.closed ??= new Promise<void>((resolve) => (this.reopen = resolve));
    return this.step.whenDurable().then(
      () => {
        try {
          return read();
        } finally {
          this.leave();
        }
      },
      (err: unknown) => {
        this.leave();
        throw unavailable('storage could not make its writes durable', err);
      },
    );
  }

  /** For the group-commit engine: a promise while reads wait, before which no batch starts. */
  hold(): Promise<void> | undefined {
    return this.closed;
  }

  private leave(): void {
    if (--this.waiting > 0) return;
    const reopen = this.reopen;
    this.closed = undefined;
    this.reopen = undefined;
    reopen?.();
  }
}

/** The listeners of one store, each told every batch of events; one that throws costs only itself. */
export class Listeners {
  private readonly set = new Set<StoreListener>();

  constructor(private readonly logger?: StorageLogger) {}

  /** How many listen. */
  get size(): number {
    return this.set.size;
  }

  /** Adds a listener; returns its removal. */
  add(listener: StoreListener): () => void {
    this.set.add(listener);
    return () => this.set.delete(listener);
  }

  /** Tells every listener. */
  emit(events: readonly StoreEvent[]): void {
    for (const listener of this.set) {
      try {
        listener(events);
      } catch (err) {
        // This runs where a commit is being answered, or in the change feed: an error
        // escaping would stall writers or deafen the feed. One broken listener must cost
        // only its own events.
        this.logger?.error({ err }, 'a storage event listener failed');
      }
    }
  }
}

/** How long store statistics are kept: two scrapers, or a scraper and a person, need not count a large table twice. */
const STATS_TTL_MS = 2_000;

/** How many rows an export reads at a time. */
const EXPORT_CHUNK = 1000;
/** How many records an import commits at a time. */
const IMPORT_CHUNK = 1000;

/** See the module comment. */
export class CoreStorage implements Storage {
  readonly kind: string;
  private readonly reads: DialectReads;
  private readonly engine: GroupCommit;
  private readonly cache: ReadCache | undefined;
  private readonly gate: ReadGate | undefined;
  private closing: Promise<void> | undefined;
  /** The first damage a read or a write met (see {@link CoreStorage.ping}); it does not heal while the store is open. */
  private damage: StorageDamaged | undefined;
  /** Webhook endpoints and the delivery outbox: dialect reads, writes through the group commit. */
  readonly webhooks: WebhookStore;
  private readonly observers = new Set<CommitObserver>();
  private readonly syncObservers = new Set<SyncObserver>();
  readonly ownWal: boolean;
  private statsKept: { at: number; value: Promise<StoreStats> } | undefined;

  /**
   * @param listeners shared with the dialect when it has its own feed ({@link Dialect.ownFeed})
   */
  constructor(private readonly dialect: Dialect, private readonly listeners: Listeners) {
    this.kind = dialect.kind;
    this.ownWal = dialect.ownWal === true;
    dialect.durability?.observeSync?.((seconds) => {
      for (const o of this.syncObservers) o(seconds);
    });
    this.reads = dialect.reads;
    const gate = dialect.durability ? new ReadGate(dialect.durability) : undefined;
    this.gate = gate;
    this.engine = new GroupCommit({
      run: (writes) => dialect.runBatch(writes).catch((err: unknown) => {
        this.noteDamage(err);
        throw err;
      }),
      ...(dialect.ownFeed ? {} : { publish: listeners }),
      ...(gate ? { hold: () => gate.hold(), afterSettled: true } : {}),
      ...(dialect.sameThread ? { sameThread: true } : {}),
      observe: (size, seconds) => {
        for (const o of this.observers) o(size, seconds);
      },
      outbox: () => webhooks.deliveriesCommitted(),
    });
    this.cache = dialect.commitVersion ? new ReadCache() : undefined;
    const webhooks = new CoreWebhookStore(dialect.webhookReads, (fn) => this.read(fn, (v) => v), (write) => this.write({ op: 'webhook', write }));
    this.webhooks = webhooks;
  }

  /** Writes waiting for the next batch, for metrics. */
  get queuedWrites(): number {
    return this.engine.queued;
  }

  send(message: NewMessage, idempotency?: IdempotencyClaim): Promise<SendOutcome> {
    return this.write({ op: 'send', message, key: idempotency?.key, fingerprint: idempotency?.fingerprint });
  }

  getMessage(seq: number): Promise<Message | null> {
    return this.read(() => this.reads.message(seq), (json) => (json === undefined ? null : JSON.parse(json) as Message));
  }

  deleteMessage(seq: number): Promise<Message | null> {
    return this.write({ op: 'delete', seq });
  }

  inbox(user: string, query: InboxQuery): Promise<WirePage> {
    return this.cached(inboxKey(user, query), (page) => (isMiddlePage(query, page.more) ? undefined : wirePageSize(page)),
      () => this.read(() => this.reads.inbox(user, query, pageWindow(query)), (rows) => finishPage(rows, query)));
  }

  sent(user: string, query: PageQuery): Promise<WirePage> {
    const window = pageWindow(query);
    return this.read(() => this.reads.sent(user, window), (rows) => finishPage(rows, query));
  }

  mailbox(user: string, query: PageQuery): Promise<WirePage> {
    const window = pageWindow(query);
    return this.read(() => this.reads.mailbox(user, window), (rows) => finishPage(rows, query));
  }

  conversation(user: string, peer: string, query: PageQuery): Promise<WirePage> {
    // With oneself, "both directions" is the inbox from oneself.
    if (user === peer) return this.inbox(user, { ...query, from: user });
    const window = pageWindow(query);
    return this.read(() => this.reads.conversation(user, peer, window), (rows) => finishPage(rows, query));
  }

  conversations(user: string, query: { before?: number; limit: number }): Promise<{ conversations: StoredConversation[]; more: boolean }> {
    return this.cached(conversationsKey(user, query), (page) => (isMiddlePage(query, page.more) ? undefined : conversationsSize(page.conversations)),
      () => this.read(() => this.reads.conversations(user, query.before ?? Number.MAX_SAFE_INTEGER, query.limit + 1), (rows) => ({
        conversations: rows.slice(0, query.limit).map((r) => ({ peer: r.peer, unread: r.unread, lastMessage: JSON.parse(r.json) as Message })),
        more: rows.length > query.limit,
      })));
  }

  markRead(user: string, which: ReadSelector): Promise<ReadOutcome> {
    return this.write({ op: 'markRead', user, ...which });
  }

  createUser(id: string, tokenHash?: string): Promise<boolean> {
    return this.write({ op: 'createUser', id, ...(tokenHash === undefined ? {} : { tokenHash }) });
  }

  listUsers(): Promise<StoredUser[]> {
    return this.read(() => this.reads.users(), (users) => users);
  }

  deleteUser(id: string, options: { purge?: boolean } = {}): Promise<boolean> {
    return this.write({ op: 'deleteUser', id, purge: options.purge === true });
  }

  userExists(id: string): Promise<boolean> {
    return this.read(() => this.reads.userExists(id), (exists) => exists);
  }

  userStatus(id: string): Promise<UserStatus> {
    return this.read(() => this.reads.userStatus(id), (status) => status);
  }

  async *storedUserIds(): AsyncIterable<string> {
    for (const u of await this.listUsers()) yield u.id;
    for (const r of await this.read(() => this.reads.reservations(), (rows) => rows)) yield r.id;
    for (const side of ['to', 'from'] as const) {
      let after: string | null = null;
      for (;;) {
        const ids: string[] = await this.read(() => this.reads.parties(side, after, EXPORT_CHUNK), (rows) => rows);
        yield* ids;
        if (ids.length < EXPORT_CHUNK) break;
        after = ids[ids.length - 1]!;
      }
    }
  }

  addToken(user: string, tokenHash: string, scopes?: string): Promise<boolean> {
    return this.write({ op: 'addToken', user, tokenHash, ...(scopes === undefined ? {} : { scopes }) });
  }

  revokeTokens(user: string): Promise<number> {
    return this.write({ op: 'revokeTokens', user });
  }

  userForToken(tokenHash: string): Promise<string | null> {
    return this.read(() => this.reads.userForToken(tokenHash), (user) => user);
  }

  tokenOwner(tokenHash: string): Promise<TokenOwner | null> {
    return this.read(() => this.reads.tokenOwner(tokenHash), (owner) => owner);
  }

  async *exportAll(): AsyncIterable<ExportRecord> {
    for (const u of await this.listUsers()) yield { type: 'user', ...u };
    for (const r of await this.read(() => this.reads.reservations(), (rows) => rows)) yield { type: 'reservation', ...r };
    for (const t of await this.read(() => this.reads.tokens(), (tokens) => tokens)) yield { type: 'token', ...t };
    let after = 0;
    for (;;) {
      const rows = await this.read(() => this.reads.messagesAfter(after, EXPORT_CHUNK), (r) => r);
      for (const [, json] of rows) yield { type: 'message', message: JSON.parse(json) as Message };
      if (rows.length < EXPORT_CHUNK) return;
      after = Number(rows[rows.length - 1]![0]);
    }
  }

  importAll(records: AsyncIterable<ExportRecord>, notStored?: NotStoredListener): Promise<ImportCounts> {
    return importInChunks(records, IMPORT_CHUNK, (chunk) => this.write({ op: 'import', records: chunk }), notStored);
  }

  prune(which: PruneSelector): Promise<PruneResult> {
    const lease = which.lease ? { lease: which.lease } : {};
    return 'inbox' in which
      ? this.write({ op: 'prune', limit: which.limit, inbox: which.inbox, upTo: which.upTo, ...lease })
      : this.write({ op: 'prune', limit: which.limit, before: which.before, ...lease });
  }

  nextInbox(after: string): Promise<string | null> {
    return this.read(() => this.reads.nextInbox(after), (user) => user);
  }

  inboxCutoff(user: string, keep: number): Promise<number | null> {
    return this.read(() => this.reads.inboxCutoff(user, keep), (seq) => seq);
  }

  claimTask(task: string, claim: TaskClaim): Promise<boolean> {
    return this.write({ op: 'claim', task, ...claim });
  }

  releaseTask(task: string, holder: string): Promise<boolean> {
    return this.write({ op: 'release', task, holder });
  }

  stats(): Promise<StoreStats> {
    const now = Date.now();
    if (this.statsKept && now - this.statsKept.at < STATS_TTL_MS) return this.statsKept.value;
    const value = this.read(() => this.reads.stats(), (stats) => stats).then(async (stats) => ({
      ...stats,
      retentionRanAt: await this.read(() => this.reads.taskRanAt(RETENTION_TASK), (at) => at),
    }));
    this.statsKept = { at: now, value };
    // A failed count is not kept: the next scrape asks again.
    value.catch(() => (this.statsKept = undefined));
    return value;
  }

  onCommit(observer: CommitObserver): () => void {
    this.observers.add(observer);
    return () => this.observers.delete(observer);
  }

  onSync(observer: SyncObserver): (() => void) | undefined {
    if (!this.dialect.durability?.observeSync) return undefined;
    this.syncObservers.add(observer);
    return () => this.syncObservers.delete(observer);
  }

  get pendingWrites(): number {
    return this.engine.pending;
  }

  /** Resolves only if a read works, a write could commit now, and no read or write met damage. */
  async ping(): Promise<void> {
    // Damage does not heal: once met, this store is not ready until it is repaired and reopened.
    if (this.damage) throw unavailable(this.damage.message, this.damage);
    await this.read(() => this.reads.ping(), () => undefined);
    const probe = this.dialect.writeProblem?.bind(this.dialect);
    const problem = probe ? await this.read(probe, (p) => p) : null;
    if (problem) throw unavailable(`storage cannot take writes: ${problem}`);
    if (this.dialect.pingWrites) await this.write({ op: 'ping' });
  }

  onEvents(listener: StoreListener): () => void {
    return this.listeners.add(listener);
  }

  close(): Promise<void> {
    // Pending writes finish and are answered, then the dialect lets go of its resources.
    this.closing ??= (async () => {
      await this.engine.close();
      await this.dialect.close();
    })();
    return this.closing;
  }

  private write<K extends StoreWrite['op']>(write: Extract<StoreWrite, { op: K }>): Promise<StoreWriteResults[K]> {
    const refused = this.dialect.writesRefused?.();
    // Taken and then lost with the file would be worse than refused: the client can retry elsewhere.
    if (refused) return Promise.reject(unavailable(`storage cannot take writes: ${refused}`));
    return this.engine.submit(write);
  }

  /**
   * Runs a dialect read and shapes its answer, turning any failure into a 503 rather than a
   * leak of internals. A synchronous read stays synchronous up to the one promise it answers.
   */
  private read<R, T>(fn: () => Awaitable<R>, shape: (raw: R) => T): Promise<T> {
    if (this.closing) return Promise.reject(unavailable('storage is closed'));
    return this.gate ? this.gate.run(() => this.readNow(fn, shape)) : this.readNow(fn, shape);
  }

  private readNow<R, T>(fn: () => Awaitable<R>, shape: (raw: R) => T): Promise<T> {
    let raw: Awaitable<R>;
    try {
      raw = fn();
      if (!(raw instanceof Promise)) return Promise.resolve(shape(raw));
    } catch (err) {
      return Promise.reject(this.failure(err));
    }
    return raw.then(shape, (err: unknown) => {
      throw this.failure(err);
    });
  }

  private failure(err: unknown): AppError {
    if (err instanceof StorageDamaged || this.dialect.isDamage?.(err)) {
      const damaged = err instanceof StorageDamaged ? err : new StorageDamaged(err);
      this.noteDamage(damaged);
      return damaged;
    }
    return readFailure(err, this.dialect.describeReadFailure?.(err));
  }

  /** Remembers the first damage a read or a write met, for readiness (see {@link ping}). */
  private noteDamage(err: unknown): void {
    if (err instanceof StorageDamaged) this.damage ??= err;
  }

  /**
   * A read kept in the cache until the next commit by anyone (see read-cache.ts), for a
   * dialect that offers a commit version; `sizeOf` answers the text a value holds, or
   * undefined for one not worth keeping.
   */
  private cached<T>(key: string, sizeOf: (value: T) => number | undefined, fn: () => Promise<T>): Promise<T> {
    return this.gate ? this.gate.run(() => this.cachedNow(key, sizeOf, fn)) : this.cachedNow(key, sizeOf, fn);
  }

  private cachedNow<T>(key: string, sizeOf: (value: T) => number | undefined, fn: () => Promise<T>): Promise<T> {
    const cache = this.cache;
    const version = this.dialect.commitVersion;
    if (!cache || !version || this.closing) return fn();
    let seen: number;
    try {
      seen = version();
    } catch (err) {
      return Promise.reject(this.failure(err));
    }
    cache.observe(seen);
    const kept = cache.get<T>(key);
    if (kept !== undefined) return Promise.resolve(kept);
    return fn().then((value) => {
      const size = sizeOf(value);
      // Kept only if no other read has seen a newer version meanwhile: this value was read
      // at `seen`, and must not outlive it.
      if (size !== undefined && cache.isAt(seen)) cache.set(key, value, size);
      return value;
    });
  }
}
