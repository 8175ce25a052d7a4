/**
 * Every write Postbox makes to SQLite, applied a batch at a time in one transaction.
 *
 * This runs on the main thread's write connection (main-writer.ts), the store's only one:
 * group commit is a whole batch of operations sharing one `BEGIN IMMEDIATE … COMMIT` and
 * therefore one WAL fsync.
 * An operation that fails must fail alone; but operations almost never fail (their input was
 * checked before it got here), so a batch first runs plain, and only if one of its operations
 * throws is it rolled back and run again with a savepoint around each.
 */
import type Database from 'better-sqlite3';
import type { Message } from '../../protocol/types.js';
import { messageJson, readTail } from '../../protocol/wire.js';
import type { ExportRecord, NewMessage, ReadOutcome, SendOutcome } from '../storage.js';
import {
  claimDue, idempotencyOutcome, keyCutoff, pruneNeedsNewest, repairConversation, repairNeedsNewest, repairStale, sidesOf, sidesOfAll,
  type TaskClaimRow, WriteClock,
} from '../write-decisions.js';
import { outboxEventOf } from '../webhooks.js';
import { SqliteWebhookWrites } from './webhooks.js';
import type { PruneResult, StoreWrite, StoreWriteResults, WriteReply } from '../writes.js';
import { MARK_READ_JSON, SENT_AT } from './rows.js';

/** Thrown out of a plain batch when one of its operations fails: run it again, isolated. */
class OperationFailed extends Error {}

/**
 * Every statement the writer runs, by name: one table, so a test can ask SQLite for the
 * plan of each and prove none of them scans a table.
 */
export const WRITE_SQL = {
  lastSeq: "SELECT value FROM counters WHERE name = 'message_seq'",
  setLastSeq: "UPDATE counters SET value = max(value, ?) WHERE name = 'message_seq'",
  insert: 'INSERT INTO messages (to_user, seq, from_user, json) VALUES (?, ?, ?, ?)',
  insertWithSeq: 'INSERT OR IGNORE INTO messages (to_user, seq, from_user, json, read_at) VALUES (?, ?, ?, ?, ?)',
  byKey: 'SELECT fingerprint, response FROM idempotency_keys WHERE sender = ? AND key = ? AND created_at >= ?',
  rememberKey: 'INSERT OR REPLACE INTO idempotency_keys (sender, key, fingerprint, response, created_at) VALUES (?, ?, ?, ?, ?)',
  purgeKeys: 'DELETE FROM idempotency_keys WHERE created_at < ?',
  received: `INSERT INTO conversations (owner, peer, last_seq, unread) VALUES (?, ?, ?, ?)
         ON CONFLICT (owner, peer) DO UPDATE SET
           last_seq = max(last_seq, excluded.last_seq), unread = unread + excluded.unread`,
  getRow: 'SELECT seq, from_user, to_user, json, read_at FROM messages WHERE seq = ?',
  deleteRow: 'DELETE FROM messages WHERE seq = ?',
  conversation: 'SELECT last_seq, unread FROM conversations WHERE owner = ? AND peer = ?',
  lastBetween: `SELECT max(s) FROM (
           SELECT max(seq) AS s FROM messages WHERE to_user = ? AND from_user = ?
           UNION ALL
           SELECT max(seq) AS s FROM messages WHERE to_user = ? AND from_user = ?)`,
  setConversation: 'UPDATE conversations SET last_seq = ?, unread = max(unread - ?, 0) WHERE owner = ? AND peer = ?',
  dropConversation: 'DELETE FROM conversations WHERE owner = ? AND peer = ?',
  readUpTo: `UPDATE messages SET read_at = ?, json = ${MARK_READ_JSON}
         WHERE to_user = ? AND read_at IS NULL AND seq <= ? RETURNING seq, from_user`,
  readIds: `UPDATE messages SET read_at = ?, json = ${MARK_READ_JSON}
         WHERE to_user = ? AND read_at IS NULL AND seq IN (SELECT value FROM json_each(?)) RETURNING seq, from_user`,
  lessUnread: 'UPDATE conversations SET unread = max(unread - ?, 0) WHERE owner = ? AND peer = ?',
  unreadTotal: 'SELECT coalesce(sum(unread), 0) FROM conversations WHERE owner = ?',
  createUser: 'INSERT INTO users (id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING',
  // An id is never both a user and reserved (the id is given twice: once for each side).
  importUser: 'INSERT OR IGNORE INTO users (id, created_at) SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM removed_users WHERE id = ?)',
  importReservation: 'INSERT OR IGNORE INTO removed_users (id, removed_at) SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = ?)',
  deleteUser: 'DELETE FROM users WHERE id = ?',
  userExists: 'SELECT 1 FROM users WHERE id = ?',
  addToken: "INSERT OR IGNORE INTO tokens (hash, user_id, created_at, scopes) VALUES (?, ?, ?, coalesce(?, 'full'))",
  isReserved: 'SELECT 1 FROM removed_users WHERE id = ?',
  reserve: 'INSERT OR IGNORE INTO removed_users (id, removed_at) VALUES (?, ?)',
  unreserve: 'DELETE FROM removed_users WHERE id = ?',
  purgeReceived: 'DELETE FROM messages WHERE to_user = ?',
  purgeSent: 'DELETE FROM messages WHERE from_user = ?',
  purgeConversations: 'DELETE FROM conversations WHERE owner = ? OR peer = ?',
  purgeKeysOf: 'DELETE FROM idempotency_keys WHERE sender = ?',
  revokeTokens: 'DELETE FROM tokens WHERE user_id = ?',
  newest: 'SELECT json FROM messages WHERE seq = (SELECT max(seq) FROM messages)',
  pruneOld: `SELECT seq, from_user, to_user, read_at FROM messages WHERE ${SENT_AT} < ? ORDER BY ${SENT_AT} LIMIT ?`,
  pruneInbox: 'SELECT seq, from_user, to_user, read_at FROM messages WHERE to_user = ? AND seq <= ? ORDER BY seq LIMIT ?',
  lowerUnread: 'UPDATE conversations SET unread = max(unread - ?, 0) WHERE owner = ? AND peer = ? RETURNING last_seq',
  pointConversation: 'UPDATE conversations SET last_seq = ? WHERE owner = ? AND peer = ?',
  claimRead: 'SELECT ran_at AS ranAt, holder, held_until AS heldUntil FROM maintenance WHERE task = ?',
  claimWrite: `INSERT INTO maintenance (task, ran_at, holder, held_until) VALUES (?, ?, ?, ?)
         ON CONFLICT (task) DO UPDATE SET ran_at = excluded.ran_at, holder = excluded.holder, held_until = excluded.held_until`,
  renewLease: 'UPDATE maintenance SET held_until = ? WHERE task = ? AND holder = ?',
  release: 'UPDATE maintenance SET holder = NULL, held_until = ? WHERE task = ? AND holder = ?',
} as const;

/** Applies batches of writes to one write connection. */
export class WriteSide {
  private readonly stmt;
  private readonly clock: WriteClock;
  /**
   * The next message id, known before the insert so the stored JSON can carry it. Read
   * inside the batch's transaction, whose write lock keeps any other process out, and
   * written back at its end; forgotten after each batch.
   */
  private nextSeq: number | undefined;
  /** One batch in one transaction (made once: a wrapper per call would cost every batch). */
  private readonly batch: Database.Transaction<(ops: readonly StoreWrite[], now: number, isolate: boolean) => WriteReply[]>;
  /** One operation in a savepoint (a transaction nested in the batch's). */
  private readonly isolated: Database.Transaction<(op: StoreWrite, now: number) => unknown>;
  private readonly webhooks: SqliteWebhookWrites;
  /** Whether an endpoint is enabled, asked once a batch (and again after a webhook write). */
  private webhooksEnabled: boolean | undefined;
  /**
   * Whether the last batch wrote webhook deliveries (a savepoint that rolled back may have
   * set it: one needless look by the dispatcher).
   */
  wroteOutbox = false;

  constructor(db: Database.Database) {
    this.stmt = {
      lastSeq: db.prepare(WRITE_SQL.lastSeq).pluck(),
      setLastSeq: db.prepare(WRITE_SQL.setLastSeq),
      insert: db.prepare(WRITE_SQL.insert),
      insertWithSeq: db.prepare(WRITE_SQL.insertWithSeq),
      byKey: db.prepare(WRITE_SQL.byKey),
      rememberKey: db.prepare(WRITE_SQL.rememberKey),
      purgeKeys: db.prepare(WRITE_SQL.purgeKeys),
      received: db.prepare(WRITE_SQL.received),
      getRow: db.prepare(WRITE_SQL.getRow),
      deleteRow: db.prepare(WRITE_SQL.deleteRow),
      conversation: db.prepare(WRITE_SQL.conversation),
      lastBetween: db.prepare(WRITE_SQL.lastBetween).pluck(),
      setConversation: db.prepare(WRITE_SQL.setConversation),
      dropConversation: db.prepare(WRITE_SQL.dropConversation),
      readUpTo: db.prepare(WRITE_SQL.readUpTo),
      readIds: db.prepare(WRITE_SQL.readIds),
      lessUnread: db.prepare(WRITE_SQL.lessUnread),
      unreadTotal: db.prepare(WRITE_SQL.unreadTotal).pluck(),
      createUser: db.prepare(WRITE_SQL.createUser),
      importUser: db.prepare(WRITE_SQL.importUser),
      importReservation: db.prepare(WRITE_SQL.importReservation),
      deleteUser: db.prepare(WRITE_SQL.deleteUser),
      userExists: db.prepare(WRITE_SQL.userExists).pluck(),
      isReserved: db.prepare(WRITE_SQL.isReserved).pluck(),
      reserve: db.prepare(WRITE_SQL.reserve),
      unreserve: db.prepare(WRITE_SQL.unreserve),
      purgeReceived: db.prepare(WRITE_SQL.purgeReceived),
      purgeSent: db.prepare(WRITE_SQL.purgeSent),
      purgeConversations: db.prepare(WRITE_SQL.purgeConversations),
      purgeKeysOf: db.prepare(WRITE_SQL.purgeKeysOf),
      addToken: db.prepare(WRITE_SQL.addToken),
      revokeTokens: db.prepare(WRITE_SQL.revokeTokens),
      newest: db.prepare(WRITE_SQL.newest).pluck(),
      pruneOld: db.prepare(WRITE_SQL.pruneOld),
      pruneInbox: db.prepare(WRITE_SQL.pruneInbox),
      lowerUnread: db.prepare(WRITE_SQL.lowerUnread).pluck(),
      pointConversation: db.prepare(WRITE_SQL.pointConversation),
      claimRead: db.prepare(WRITE_SQL.claimRead),
      claimWrite: db.prepare(WRITE_SQL.claimWrite),
      renewLease: db.prepare(WRITE_SQL.renewLease),
      release: db.prepare(WRITE_SQL.release),
    };
    this.webhooks = new SqliteWebhookWrites(db);
    this.batch = db.transaction((ops: readonly StoreWrite[], now: number, isolate: boolean) => this.runBatch(ops, now, isolate));
    this.isolated = db.transaction((op: StoreWrite, now: number) => this.apply(op, now));
    // sentAt stays monotonic with the sequence from the newest stored message on.
    const newest = this.stmt.newest.get() as string | undefined;
    this.clock = new WriteClock(newest ? Date.parse((JSON.parse(newest) as Message).sentAt) : 0);
  }

  /**
   * Applies a batch in one transaction; throws only if the batch as a whole cannot commit.
   * Operations almost never fail, so the batch runs plain; if one throws, the transaction is
   * rolled back and the batch run again with each operation in a savepoint, so it fails alone.
   */
  applyBatch(ops: readonly StoreWrite[]): WriteReply[] {
    const now = this.clock.now();
    let replies: WriteReply[];
    try {
      replies = this.batch.immediate(ops, now, false);
    } catch (err) {
      if (!(err instanceof OperationFailed)) throw err;
      replies = this.batch.immediate(ops, now, true);
    }
    this.clock.committed(now);
    return replies;
  }

  /** The body of a batch's transaction; `isolate` puts each operation in a savepoint. */
  private runBatch(ops: readonly StoreWrite[], now: number, isolate: boolean): WriteReply[] {
    this.nextSeq = undefined;
    this.webhooksEnabled = undefined;
    this.wroteOutbox = false;
    const replies = ops.map((op): WriteReply => {
      if (!isolate) {
        try {
          return { ok: true, value: this.apply(op, now) };
        } catch (err) {
          throw new OperationFailed((err as Error).message);
        }
      }
      try {
        return { ok: true, value: this.isolated(op, now) };
      } catch (err) {
        return { ok: false, error: (err as Error).message };
      }
    });
    if (this.nextSeq !== undefined) this.stmt.setLastSeq.run(this.nextSeq - 1);
    const cutoff = this.clock.purgeCutoff(now);
    if (cutoff !== undefined) this.stmt.purgeKeys.run(cutoff);
    return replies;
  }

  /**
   * Applies one write, then writes the webhook deliveries it makes, if any, in the same
   * transaction (or savepoint): they commit with it or not at all.
   */
  private apply(op: StoreWrite, now: number): unknown {
    const value = this.applyOne(op, now);
    if (op.op === 'webhook') this.webhooksEnabled = undefined;
    this.webhooksEnabled ??= this.webhooks.anyEnabled();
    if (this.webhooksEnabled) {
      const event = outboxEventOf(op, value, now);
      if (event && this.webhooks.outbox(event, now) > 0) this.wroteOutbox = true;
    }
    return value;
  }

  private applyOne(op: StoreWrite, now: number): unknown {
    switch (op.op) {
      case 'send': return this.send(op.message, now, op.key, op.fingerprint);
      case 'delete': return this.delete(op.seq);
      case 'markRead': return this.markRead(op.user, now, op.upTo, op.ids);
      case 'createUser': {
        if (this.stmt.isReserved.get(op.id)) return false;
        if (this.stmt.createUser.run(op.id, now).changes === 0) return false;
        if (op.tokenHash !== undefined) this.stmt.addToken.run(op.tokenHash, op.id, now, null);
        return true;
      }
      case 'deleteUser': {
        const existed = this.stmt.deleteUser.run(op.id).changes > 0;
        if (!op.purge) {
          if (existed) this.stmt.reserve.run(op.id, now);
          return existed;
        }
        const reserved = this.stmt.unreserve.run(op.id).changes > 0;
        this.stmt.purgeReceived.run(op.id);
        this.stmt.purgeSent.run(op.id);
        this.stmt.purgeConversations.run(op.id, op.id);
        this.stmt.purgeKeysOf.run(op.id);
        return existed || reserved;
      }
      case 'addToken': {
        if (!this.stmt.userExists.get(op.user)) return false;
        this.stmt.addToken.run(op.tokenHash, op.user, now, op.scopes ?? null);
        return true;
      }
      case 'revokeTokens': return this.stmt.revokeTokens.run(op.user).changes;
      case 'import': return this.import(op.records);
      case 'prune': {
        if (op.lease && this.stmt.renewLease.run(now + op.lease.leaseMs, op.lease.task, op.lease.holder).changes === 0) {
          return { removed: 0, more: false, lost: true };
        }
        return this.prune(op);
      }
      case 'claim': {
        if (!claimDue(this.stmt.claimRead.get(op.task) as TaskClaimRow | undefined, now, op.everyMs)) return false;
        this.stmt.claimWrite.run(op.task, now, op.holder, now + op.leaseMs);
        return true;
      }
      case 'release': return this.stmt.release.run(now, op.task, op.holder).changes > 0;
      case 'ping': return true;
      case 'webhook': return this.webhooks.apply(op.write);
    }
  }

  private send(m: NewMessage, now: number, key?: string, fingerprint?: string): SendOutcome {
    if (key !== undefined && fingerprint !== undefined) {
      const seen = this.stmt.byKey.get(m.fromUser, key, keyCutoff(now)) as { fingerprint: string; response: string } | undefined;
      const decided = idempotencyOutcome(seen, fingerprint);
      if (decided) return decided;
    }
    this.nextSeq ??= ((this.stmt.lastSeq.get() as number | undefined) ?? 0) + 1;
    const seq = this.nextSeq++;
    const message: Message = {
      id: String(seq), fromUser: m.fromUser, toUser: m.toUser, message: m.message,
      sentAt: new Date(now).toISOString(), readAt: null,
    };
    const json = messageJson(message);
    this.stmt.insert.run(m.toUser, seq, m.fromUser, json);
    this.noteInserted(seq, m.fromUser, m.toUser, true);
    if (key !== undefined && fingerprint !== undefined) {
      this.stmt.rememberKey.run(m.fromUser, key, fingerprint, json, now);
    }
    return { kind: 'stored', message };
  }

  /** Keeps both sides' conversation rows in step with a new message. */
  private noteInserted(seq: number, from: string, to: string, unread: boolean): void {
    this.stmt.received.run(to, from, seq, unread ? 1 : 0);
    if (from !== to) this.stmt.received.run(from, to, seq, 0);
  }

  private delete(seq: number): Message | null {
    const row = this.stmt.getRow.get(seq) as
      | { seq: number; from_user: string; to_user: string; json: string; read_at: number | null }
      | undefined;
    if (!row) return null;
    this.stmt.deleteRow.run(seq);
    const sides = sidesOf({ seq, fromUser: row.from_user, toUser: row.to_user, unread: row.read_at === null });
    for (const { owner, peer, unreadDrop } of sides) {
      const conv = this.stmt.conversation.get(owner, peer) as { last_seq: number } | undefined;
      if (!conv) continue;
      const newest = repairNeedsNewest(conv.last_seq, seq) ? this.stmt.lastBetween.get(owner, peer, peer, owner) as number | null : null;
      const repair = repairConversation(conv.last_seq, seq, newest);
      if (repair.drop) this.stmt.dropConversation.run(owner, peer);
      else this.stmt.setConversation.run(repair.lastSeq, unreadDrop, owner, peer);
    }
    return JSON.parse(row.json) as Message;
  }

  /**
   * Removes what a prune selects, repairing conversations as write-decisions.ts's sidesOfAll
   * says: a statement per message and per row touched, each microseconds in-process.
   */
  private prune(op: Extract<StoreWrite, { op: 'prune' }>): PruneResult {
    const gone = (op.inbox !== undefined
      ? this.stmt.pruneInbox.all(op.inbox, op.upTo ?? 0, op.limit)
      : this.stmt.pruneOld.all(new Date(op.before ?? 0).toISOString(), op.limit)) as
      { seq: number; from_user: string; to_user: string; read_at: number | null }[];
    for (const r of gone) this.stmt.deleteRow.run(r.seq);
    const removed = new Set(gone.map((r) => r.seq));
    const rows = sidesOfAll(gone.map((r) => ({ seq: r.seq, fromUser: r.from_user, toUser: r.to_user, unread: r.read_at === null })));
    for (const { owner, peer, unreadDrop } of rows) {
      const lastSeq = this.stmt.lowerUnread.get(unreadDrop, owner, peer) as number | undefined;
      if (lastSeq === undefined || !pruneNeedsNewest(lastSeq, removed)) continue;
      const repair = repairStale(this.stmt.lastBetween.get(owner, peer, peer, owner) as number | null);
      if (repair.drop) this.stmt.dropConversation.run(owner, peer);
      else this.stmt.pointConversation.run(repair.lastSeq, owner, peer);
    }
    return { removed: gone.length, more: gone.length === op.limit };
  }

  private markRead(user: string, now: number, upTo?: number, ids?: number[]): ReadOutcome {
    const readAt = new Date(now).toISOString();
    const tail = readTail(readAt);
    const changed = (upTo !== undefined
      ? this.stmt.readUpTo.all(now, tail, user, upTo)
      : this.stmt.readIds.all(now, tail, user, JSON.stringify(ids ?? []))) as { seq: number; from_user: string }[];
    const perPeer = new Map<string, number>();
    for (const c of changed) perPeer.set(c.from_user, (perPeer.get(c.from_user) ?? 0) + 1);
    for (const [peer, n] of perPeer) this.stmt.lessUnread.run(n, user, peer);
    changed.sort((a, b) => a.seq - b.seq);
    return {
      unread: this.stmt.unreadTotal.get(user) as number,
      ids: changed.map((c) => String(c.seq)),
      senders: changed.map((c) => c.from_user),
      readAt,
    };
  }

  private import(records: readonly ExportRecord[]): StoreWriteResults['import'] {
    const counts = { users: 0, tokens: 0, messages: 0, reservations: 0, notStored: [] as number[] };
    // Users of this chunk the store already held: their tokens would join another's account.
    const unstoredUsers = new Set<string>();
    let highest = 0;
    for (const [i, r] of records.entries()) {
      if (r.type === 'user') {
        const stored = this.stmt.importUser.run(r.id, Date.parse(r.createdAt), r.id).changes;
        counts.users += stored;
        if (!stored) {
          counts.notStored.push(i);
          unstoredUsers.add(r.id);
        }
      } else if (r.type === 'reservation') {
        const stored = this.stmt.importReservation.run(r.id, Date.parse(r.removedAt), r.id).changes;
        counts.reservations += stored;
        if (!stored) counts.notStored.push(i);
      } else if (r.type === 'token') {
        if (unstoredUsers.has(r.user)) {
          counts.notStored.push(i);
          continue;
        }
        const stored = this.stmt.addToken.run(r.hash, r.user, Date.parse(r.createdAt), r.scopes ?? null).changes;
        counts.tokens += stored;
        if (!stored) counts.notStored.push(i);
      } else {
        const m = r.message;
        const seq = Number(m.id);
        const readAt = m.readAt === null ? null : Date.parse(m.readAt);
        const inserted = this.stmt.insertWithSeq.run(m.toUser, seq, m.fromUser, messageJson(m), readAt).changes;
        highest = Math.max(highest, seq);
        if (inserted) {
          this.noteInserted(seq, m.fromUser, m.toUser, readAt === null);
          counts.messages++;
        } else {
          counts.notStored.push(i);
        }
      }
    }
    // New ids go on past every imported one.
    this.stmt.setLastSeq.run(highest);
    if (this.nextSeq !== undefined && this.nextSeq <= highest) this.nextSeq = highest + 1;
    return counts;
  }
}
