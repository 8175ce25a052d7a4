/**
 * The SQLite dialect: reads on the main thread's own connection (better-sqlite3 is
 * synchronous and a hot page read takes microseconds), writes on a second connection of the
 * main thread, made durable by a WAL fsync off the event loop (main-writer.ts). Everything
 * else is the core's (../core.ts).
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import {
  CoreStorage, Listeners, partiesSql, statusOf, type ConversationRow, type Dialect, type DialectReads, type Reservation, type TokenRow,
  type UserStatusRow,
} from '../core.js';
import { damagedValue, wireJsonIntact } from '../failures.js';
import type { BatchResult } from '../group-commit.js';
import { windowSql } from '../paging.js';
import type { InboxQuery, StorageLogger, StoredUser, StoreEvent, StoreStats, TokenOwner, WireRow } from '../storage.js';
import type { WebhookReads } from '../webhooks.js';
import type { StoreWrite } from '../writes.js';
import { sqliteWebhookReads } from './webhooks.js';
import { FileGuard } from './file-guard.js';
import { migrate } from './migrations.js';
import { isCorruption, MainWriter } from './main-writer.js';
import { checkOnOpen } from './open-check.js';
import { resolveStorePath } from './store-path.js';
import type { Fsync } from './wal-sync.js';
import { CONNECTION_PRAGMAS, SENT_AT, WIRE_COLUMNS } from './rows.js';

/** Options for {@link openSqliteStorage}. */
export interface SqliteOptions {
  /** The database file; its directory is created if missing. */
  path: string;
  /** `fsync`: a commit is on disk before it is answered; `relaxed`: it survives a process crash. */
  durability: 'fsync' | 'relaxed';
  /** Told the SQL (with its values) of each read, for tracing and for query-plan checks. */
  onQuery?: (sql: string) => void;
  /** Where a listener that throws is reported. */
  logger?: StorageLogger;
  /** The WAL fsync, for tests that hold it back; `fs.fsync` by default. */
  fsync?: Fsync;
  /** Look the store over as it opens (a server does; see open-check.ts). Default false. */
  checkOnOpen?: boolean;
}

/** A SQLite store: the core over this dialect. */
export type SqliteStorage = CoreStorage;

/** Opens (creating and migrating if needed) a SQLite store. */
export function openSqliteStorage(given: SqliteOptions): SqliteStorage {
  if (given.path !== ':memory:') mkdirSync(dirname(given.path), { recursive: true });
  // Resolved once, here: the WAL sync, the file guard and the checkpointer all name the file SQLite opened.
  const options = { ...given, path: resolveStorePath(given.path) };
  const db = new Database(options.path, options.onQuery ? { verbose: (sql) => options.onQuery?.(String(sql)) } : {});
  try {
    for (const p of CONNECTION_PRAGMAS) db.pragma(p);
    db.pragma('journal_mode = WAL');
    // No mmap: mapping the file made a 1,000-message read a quarter faster, but every page
    // a long read touched then counted in the server's RSS (up to the map's size), and the
    // read cache now answers repeated reads without touching the file at all.
    migrate(db);
  } catch (err) {
    db.close();
    throw err;
  }
  const listeners = new Listeners(options.logger);
  return new CoreStorage(new SqliteDialect(db, options, (events) => listeners.emit(events)), listeners);
}

/** Applies pending migrations to a SQLite file and answers the versions applied. */
export function migrateSqlite(path: string): number[] {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    for (const p of CONNECTION_PRAGMAS) db.pragma(p);
    db.pragma('journal_mode = WAL');
    return migrate(db);
  } finally {
    db.close();
  }
}

/** How often the store looks for commits made by another process on its file (one PRAGMA, a few µs). */
const FOREIGN_COMMIT_POLL_MS = 250;

/** A `?` placeholder, whatever its number. */
const param = (): string => '?';

/** See the module comment. */
class SqliteDialect implements Dialect {
  readonly kind = 'sqlite';
  readonly ownWal = true;
  readonly ownFeed = false;
  readonly pingWrites = true;
  readonly sameThread = true;
  readonly reads: DialectReads;
  readonly webhookReads: WebhookReads;
  readonly commitVersion: () => number;
  readonly durability: Dialect['durability'];
  private readonly writer: MainWriter;
  private readonly statements = new Map<string, Database.Statement>();
  /** `PRAGMA data_version` as asked in this turn of the event loop (see the constructor). */
  private version: number | undefined;
  /** Watches the file for being deleted or replaced under us (none for `:memory:`). */
  private readonly guard: FileGuard | undefined;

  /** Looks for commits by other processes (see the constructor). */
  private readonly elsewhere: NodeJS.Timeout;
  /** What the look at open found wrong with the store (see open-check.ts), for readiness. */
  private damage: string | undefined;
  private stopCheck: (() => void) | undefined;

  constructor(private readonly db: Database.Database, options: SqliteOptions, emit: (events: readonly StoreEvent[]) => void) {
    this.webhookReads = sqliteWebhookReads(db);
    const guard = options.path !== ':memory:' && options.path !== '' ? new FileGuard(options.path, options.logger) : undefined;
    this.guard = guard;
    this.writer = new MainWriter({
      path: options.path, durability: options.durability, fsync: options.fsync,
      ...(guard ? { refuse: () => guard.checkNow() } : {}),
    });
    this.durability = this.writer.wal;
    guard?.start();
    // One server per file (serve-lock.ts), but `postbox` commands may write beside it (remove
    // a user, import). Their commits are heard by no hub: when one shows, listeners are told
    // to resync, as after a gap in PostgreSQL's change feed, so streams and long-polls read
    // storage again and a removed user's streams end, within a poll rather than a heartbeat.
    this.elsewhere = setInterval(() => {
      if (this.writer.committedElsewhere()) emit([{ type: 'resync' }]);
    }, FOREIGN_COMMIT_POLL_MS);
    this.elsewhere.unref();
    if (options.checkOnOpen && options.path !== ':memory:') {
      this.stopCheck = checkOnOpen(db, options.path, (problems) => {
        if (problems.length === 0) return;
        this.damage = `the database is damaged (${problems[0]}${problems.length > 1 ? `, and ${problems.length - 1} more` : ''}): run postbox check`;
        options.logger?.error({ problems }, this.damage);
      });
    }
    // SQLite's count of commits by other connections: the write connection's and other
    // processes'. Asking costs a read transaction (two fcntl locks, 3-10 µs, more than the
    // rest of a cached read), so it is asked once per turn of the event loop: what this
    // process commits forgets the answer at once (runBatch), and another process's commit
    // shows from the next turn, as if it had landed just after the reads of this one.
    const dataVersion = db.prepare('PRAGMA data_version').pluck();
    this.commitVersion = () => {
      if (this.version === undefined) {
        this.version = dataVersion.get() as number;
        setImmediate(() => (this.version = undefined));
      }
      return this.version;
    };
    // Every message read from the file is checked before it is served (wireJsonIntact: SQLite
    // hands back overwritten bytes without a word); reads the cache answers were checked
    // when they were read. Measured at 0.4-0.5 µs a 240-byte message: about 0.5 ms on a get
    // of 1,000, whose read itself costs 1.3-1.7 ms.
    const rows = (sql: string, args: unknown[]) => {
      const found = this.prepared(sql, true).all(...args) as WireRow[];
      for (const row of found) if (!wireJsonIntact(row[1])) throw damagedValue(row[0]);
      return found;
    };
    this.reads = {
      message: (seq) => {
        const json = this.prepared('SELECT json FROM messages WHERE seq = ?').pluck().get(seq) as string | undefined;
        if (json !== undefined && !wireJsonIntact(json)) throw damagedValue(seq);
        return json;
      },
      inbox: (user, query, window) => {
        const [where, args] = inboxFilter(user, query);
        return rows(`SELECT ${WIRE_COLUMNS} FROM messages WHERE ${where}${windowSql(window, args, param)}`, args);
      },
      sent: (user, window) => {
        const args: unknown[] = [user];
        return rows(`SELECT ${WIRE_COLUMNS} FROM messages WHERE from_user = ?${windowSql(window, args, param)}`, args);
      },
      mailbox: (user, window) => {
        // The inbox and the sent box are each a range of an index; merging the two bounded
        // ranges keeps the cost at O(page). UNION, not UNION ALL: a message to oneself is in both.
        const args: unknown[] = [];
        const bounds = windowSql(window, args, param);
        const side = (column: string) => `SELECT seq, json FROM messages WHERE ${column} = ?${bounds}`;
        const both = `SELECT * FROM (${side('to_user')}) UNION SELECT * FROM (${side('from_user')})`;
        return rows(`SELECT ${WIRE_COLUMNS} FROM (${both}) ORDER BY seq ${window.order} LIMIT ?`,
          [user, ...args, user, ...args, window.fetch]);
      },
      conversation: (user, peer, window) => {
        // Each direction is a range of the (to_user, from_user, seq) index; merging the two
        // bounded ranges keeps the cost at O(page) however long the history.
        const args: unknown[] = [];
        const side = `SELECT seq, json FROM messages WHERE to_user = ? AND from_user = ?${windowSql(window, args, param)}`;
        const both = `SELECT * FROM (${side}) UNION ALL SELECT * FROM (${side})`;
        return rows(`SELECT ${WIRE_COLUMNS} FROM (${both}) ORDER BY seq ${window.order} LIMIT ?`,
          [user, peer, ...args, peer, user, ...args, window.fetch]);
      },
      conversations: (user, before, fetch) => {
        const found = this.prepared(
          `SELECT c.peer, c.unread, m.json, c.last_seq AS seq
           FROM conversations c JOIN messages m ON m.seq = c.last_seq
           WHERE c.owner = ? AND c.last_seq < ? ORDER BY c.last_seq DESC LIMIT ?`,
        ).all(user, before, fetch) as (ConversationRow & { seq: number })[];
        for (const row of found) if (!wireJsonIntact(row.json)) throw damagedValue(row.seq);
        return found;
      },
      users: () => (this.prepared('SELECT id, created_at FROM users ORDER BY id').all() as { id: string; created_at: number }[])
        .map((u): StoredUser => ({ id: u.id, createdAt: new Date(u.created_at).toISOString() })),
      tokens: () => (this.prepared('SELECT hash, user_id, created_at, scopes FROM tokens ORDER BY user_id, hash').all() as
        { hash: string; user_id: string; created_at: number; scopes: string }[])
        .map((t): TokenRow => ({
          user: t.user_id, hash: t.hash, createdAt: new Date(t.created_at).toISOString(), ...(t.scopes === 'full' ? {} : { scopes: t.scopes }),
        })),
      messagesAfter: (after, limit) => rows(`SELECT ${WIRE_COLUMNS} FROM messages WHERE seq > ? ORDER BY seq LIMIT ?`, [after, limit]),
      userForToken: (hash) => (this.prepared('SELECT user_id FROM tokens WHERE hash = ?').pluck().get(hash) as string | undefined) ?? null,
      tokenOwner: (hash) => (this.prepared('SELECT user_id AS user, scopes FROM tokens WHERE hash = ?').get(hash) as TokenOwner | undefined) ?? null,
      nextInbox: (after) => (this.prepared('SELECT to_user FROM messages WHERE to_user > ? ORDER BY to_user LIMIT 1').pluck().get(after) as string | undefined) ?? null,
      inboxCutoff: (user, keep) => (this.prepared('SELECT seq FROM messages WHERE to_user = ? ORDER BY seq DESC LIMIT 1 OFFSET ?').pluck()
        .get(user, keep) as number | undefined) ?? null,
      stats: () => this.stats(options.path),
      taskRanAt: (task) => (this.prepared('SELECT ran_at FROM maintenance WHERE task = ?').pluck().get(task) as number | undefined) ?? null,
      userExists: (id) => this.prepared('SELECT 1 FROM users WHERE id = ?').get(id) !== undefined,
      reservations: () => (this.prepared('SELECT id, removed_at FROM removed_users ORDER BY id').all() as { id: string; removed_at: number }[])
        .map((r): Reservation => ({ id: r.id, removedAt: new Date(r.removed_at).toISOString() })),
      parties: (side, after, limit) => this.prepared(partiesSql(side, after === null, param)).pluck().all(after ?? '', limit) as string[],
      userStatus: (id) => statusOf(this.prepared('SELECT (SELECT 1 FROM users WHERE id = ?) AS live, (SELECT 1 FROM removed_users WHERE id = ?) AS reserved')
        .get(id, id) as UserStatusRow),
      ping: () => this.prepared('SELECT 1').get(),
    };
  }

  /** Counts over the smallest index, the oldest time from the age index, sizes from the files. */
  private stats(path: string): Omit<StoreStats, 'retentionRanAt'> {
    const size = (file: string) => {
      try {
        return statSync(file).size;
      } catch {
        return 0;
      }
    };
    const oldest = this.prepared(`SELECT min(${SENT_AT}) FROM messages`).pluck().get() as string | null;
    return {
      messages: this.prepared('SELECT count(*) FROM messages INDEXED BY messages_seq').pluck().get() as number,
      oldestSentAt: oldest,
      storeBytes: path === ':memory:' ? 0 : size(path),
      walBytes: path === ':memory:' ? 0 : size(`${path}-wal`),
      lastCheckpointAt: this.writer.lastCheckpointAt,
    };
  }

  runBatch(writes: readonly StoreWrite[]): Promise<BatchResult> {
    this.version = undefined;
    return this.writer.run(writes);
  }

  isDamage(err: unknown): boolean {
    return isCorruption(err);
  }

  writesRefused(): string | null {
    return this.guard?.lost ?? null;
  }

  async writeProblem(): Promise<string | null> {
    return this.damage ?? (await this.guard?.writeProblem()) ?? null;
  }

  async close(): Promise<void> {
    clearInterval(this.elsewhere);
    this.stopCheck?.();
    this.guard?.stop();
    await this.writer.close();
    this.db.close();
  }

  private prepared(sql: string, raw = false): Database.Statement {
    const key = raw ? `raw:${sql}` : sql;
    let s = this.statements.get(key);
    if (!s) {
      s = this.db.prepare(sql);
      if (raw) s.raw(true);
      this.statements.set(key, s);
    }
    return s;
  }
}

/** The WHERE of an inbox query, with its values. */
function inboxFilter(user: string, query: InboxQuery): [string, unknown[]] {
  let where = 'to_user = ?';
  const args: unknown[] = [user];
  if (query.from !== undefined) {
    where += ' AND from_user = ?';
    args.push(query.from);
  }
  if (query.unreadOnly) where += ' AND read_at IS NULL';
  return [where, args];
}

