/**
 * Every write Postbox makes to PostgreSQL, with the same semantics, operation for operation,
 * as the SQLite backend's `write-ops.ts`.
 *
 * A batch runs in one transaction that first takes the store's write lock (a
 * transaction-scoped advisory lock) and holds it to commit. That lock is what makes message
 * ids commit-ordered across any number of instances: a sequence value is drawn only while
 * the lock is held, and PostgreSQL makes a commit visible before it releases the
 * transaction's locks, so by the time the next writer draws a higher id every lower one is
 * already visible. It also makes all writes of the store one queue, as SQLite's single
 * writer does, so check-then-insert (idempotency keys) is safe and no two batches can
 * deadlock on conversation rows.
 */
import type pg from 'pg';
import type { Message } from '../../protocol/types.js';
import { messageJson } from '../../protocol/wire.js';
import type { ExportRecord, NewMessage, ReadOutcome, SendOutcome } from '../storage.js';
import {
  claimDue, idempotencyOutcome, keyCutoff, pruneNeedsNewest, repairConversation, repairNeedsNewest, repairStale, sidesOf, sidesOfAll,
  type TaskClaimRow, WriteClock,
} from '../write-decisions.js';
import type { PruneResult, StoreWrite, StoreWriteResults, WriteReply } from '../writes.js';
import { isTransient } from './failures.js';
import { MESSAGE_COLUMNS, toMessage, type MessageRow } from './rows.js';
import { applyWebhookWrite } from './webhooks.js';

type WriteOp = StoreWrite;

/** A named statement: parsed once per connection, then only bound and executed. */
function named(name: string, text: string): (values: unknown[]) => pg.QueryConfig {
  return (values) => ({ name: `postbox_${name}`, text, values });
}

const SQL = {
  newestSentAt: named('newest_sent_at', 'SELECT sent_at FROM messages ORDER BY seq DESC LIMIT 1'),
  // The message and both sides' conversation rows in one statement: one round trip while
  // the write lock is held. The sender's own row is skipped for a message to oneself, where
  // the recipient's row is the same row.
  insert: named('insert', `
    WITH m AS (
      INSERT INTO messages (from_user, to_user, body, sent_at) VALUES ($1, $2, $3, $4) RETURNING seq
    ), theirs AS (
      INSERT INTO conversations AS c (owner, peer, last_seq, unread) SELECT $2, $1, seq, 1 FROM m
      ON CONFLICT (owner, peer) DO UPDATE
        SET last_seq = greatest(c.last_seq, excluded.last_seq), unread = c.unread + excluded.unread
    ), mine AS (
      INSERT INTO conversations AS c (owner, peer, last_seq, unread) SELECT $1, $2, seq, 0 FROM m WHERE $1::text <> $2::text
      ON CONFLICT (owner, peer) DO UPDATE SET last_seq = greatest(c.last_seq, excluded.last_seq)
    )
    SELECT seq FROM m`),
  // For a run of sends: ids drawn from the sequence (in any order: they are sorted and all
  // drawn under the write lock), then every message and conversation row in one statement.
  // Two round trips under the lock however many sends arrived together.
  drawIds: named('draw_ids', "SELECT nextval('messages_seq_seq') AS seq FROM generate_series(1, $1::int)"),
  insertMany: named('insert_many', `
    WITH m AS (
      INSERT INTO messages (seq, from_user, to_user, body, sent_at) OVERRIDING SYSTEM VALUE
      SELECT s, f, t, b, $5::bigint FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(s, f, t, b)
      RETURNING seq, from_user, to_user
    ), sides AS (
      SELECT to_user AS owner, from_user AS peer, seq, 1 AS unread FROM m
      UNION ALL
      SELECT from_user, to_user, seq, 0 FROM m WHERE from_user <> to_user
    ), per_pair AS (
      SELECT owner, peer, max(seq) AS last_seq, sum(unread)::int AS unread FROM sides GROUP BY owner, peer
    )
    INSERT INTO conversations AS c (owner, peer, last_seq, unread) SELECT owner, peer, last_seq, unread FROM per_pair
    ON CONFLICT (owner, peer) DO UPDATE
      SET last_seq = greatest(c.last_seq, excluded.last_seq), unread = c.unread + excluded.unread`),
  byKey: named('by_key',
    'SELECT fingerprint, response FROM idempotency_keys WHERE sender = $1 AND key = $2 AND created_at >= $3'),
  rememberKey: named('remember_key', `
    INSERT INTO idempotency_keys (sender, key, fingerprint, response, created_at) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (sender, key) DO UPDATE
      SET fingerprint = excluded.fingerprint, response = excluded.response, created_at = excluded.created_at`),
  purgeKeys: named('purge_keys', 'DELETE FROM idempotency_keys WHERE created_at < $1'),
  deleteRow: named('delete_row', `DELETE FROM messages WHERE seq = $1 RETURNING ${MESSAGE_COLUMNS}`),
  conversation: named('conversation', 'SELECT last_seq FROM conversations WHERE owner = $1 AND peer = $2'),
  lastBetween: named('last_between', `
    SELECT greatest(
      (SELECT max(seq) FROM messages WHERE to_user = $1 AND from_user = $2),
      (SELECT max(seq) FROM messages WHERE to_user = $2 AND from_user = $1)) AS seq`),
  setConversation: named('set_conversation',
    'UPDATE conversations SET last_seq = $1, unread = greatest(unread - $2, 0) WHERE owner = $3 AND peer = $4'),
  dropConversation: named('drop_conversation', 'DELETE FROM conversations WHERE owner = $1 AND peer = $2'),
  // Marking read and lowering the per-peer unread counts in one statement; the remaining
  // total is read by the next statement, which sees this one's changes.
  readUpTo: named('read_up_to', `
    WITH changed AS (
      UPDATE messages SET read_at = $1 WHERE to_user = $2 AND read_at IS NULL AND seq <= $3 RETURNING seq, from_user
    ), per_peer AS (
      SELECT from_user AS peer, count(*)::int AS n FROM changed GROUP BY from_user
    ), lowered AS (
      UPDATE conversations c SET unread = greatest(c.unread - p.n, 0) FROM per_peer p WHERE c.owner = $2 AND c.peer = p.peer
    )
    SELECT seq, from_user FROM changed ORDER BY seq`),
  readIds: named('read_ids', `
    WITH changed AS (
      UPDATE messages SET read_at = $1 WHERE to_user = $2 AND read_at IS NULL AND seq = ANY($3::bigint[]) RETURNING seq, from_user
    ), per_peer AS (
      SELECT from_user AS peer, count(*)::int AS n FROM changed GROUP BY from_user
    ), lowered AS (
      UPDATE conversations c SET unread = greatest(c.unread - p.n, 0) FROM per_peer p WHERE c.owner = $2 AND c.peer = p.peer
    )
    SELECT seq, from_user FROM changed ORDER BY seq`),
  unreadTotal: named('unread_total', 'SELECT coalesce(sum(unread), 0)::int AS n FROM conversations WHERE owner = $1'),
  createUser: named('create_user', 'INSERT INTO users (id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING'),
  deleteUser: named('delete_user', 'DELETE FROM users WHERE id = $1'),
  userExists: named('user_exists', 'SELECT 1 FROM users WHERE id = $1'),
  addToken: named('add_token', "INSERT INTO tokens (hash, user_id, created_at, scopes) VALUES ($1, $2, $3, coalesce($4, 'full')) ON CONFLICT DO NOTHING"),
  isReserved: named('is_reserved', 'SELECT 1 FROM removed_users WHERE id = $1'),
  reserve: named('reserve', 'INSERT INTO removed_users (id, removed_at) VALUES ($1, $2) ON CONFLICT DO NOTHING'),
  unreserve: named('unreserve', 'DELETE FROM removed_users WHERE id = $1'),
  purgeMessages: named('purge_messages', 'DELETE FROM messages WHERE to_user = $1 OR from_user = $1'),
  purgeConversations: named('purge_conversations', 'DELETE FROM conversations WHERE owner = $1 OR peer = $1'),
  purgeKeysOf: named('purge_keys_of', 'DELETE FROM idempotency_keys WHERE sender = $1'),
  revokeTokens: named('revoke_tokens', 'DELETE FROM tokens WHERE user_id = $1'),
  // Retention: a bounded set of the oldest, deleted in one statement that answers what went.
  pruneOld: named('prune_old', `
    WITH doomed AS (SELECT seq FROM messages WHERE sent_at < $1 ORDER BY sent_at LIMIT $2)
    DELETE FROM messages m USING doomed d WHERE m.seq = d.seq RETURNING m.seq, m.from_user, m.to_user, m.read_at`),
  pruneInbox: named('prune_inbox', `
    WITH doomed AS (SELECT seq FROM messages WHERE to_user = $1 AND seq <= $2 ORDER BY seq LIMIT $3)
    DELETE FROM messages m USING doomed d WHERE m.seq = d.seq RETURNING m.seq, m.from_user, m.to_user, m.read_at`),
  // The conversation rows the pruned messages were counted in, set-wise: unread counts lowered
  // (answering each row's last message), then the rows whose last message went repaired.
  lowerUnreadMany: named('lower_unread_many', `
    UPDATE conversations c SET unread = greatest(c.unread - p.d, 0)
    FROM unnest($1::text[], $2::text[], $3::int[]) AS p(o, q, d) WHERE c.owner = p.o AND c.peer = p.q
    RETURNING c.owner, c.peer, c.last_seq`),
  newestBetweenMany: named('newest_between_many', `
    SELECT p.o AS owner, p.q AS peer, greatest(
      (SELECT max(seq) FROM messages WHERE to_user = p.o AND from_user = p.q),
      (SELECT max(seq) FROM messages WHERE to_user = p.q AND from_user = p.o)) AS seq
    FROM unnest($1::text[], $2::text[]) AS p(o, q)`),
  setLastSeqMany: named('set_last_seq_many', `
    UPDATE conversations c SET last_seq = p.s
    FROM unnest($1::text[], $2::text[], $3::bigint[]) AS p(o, q, s) WHERE c.owner = p.o AND c.peer = p.q`),
  dropConversationMany: named('drop_conversation_many', `
    DELETE FROM conversations c USING unnest($1::text[], $2::text[]) AS p(o, q) WHERE c.owner = p.o AND c.peer = p.q`),
  claimRead: named('claim_read', 'SELECT ran_at AS "ranAt", holder, held_until AS "heldUntil" FROM maintenance WHERE task = $1'),
  claimWrite: named('claim_write', `
    INSERT INTO maintenance (task, ran_at, holder, held_until) VALUES ($1, $2, $3, $4)
    ON CONFLICT (task) DO UPDATE SET ran_at = excluded.ran_at, holder = excluded.holder, held_until = excluded.held_until`),
  renewLease: named('renew_lease', 'UPDATE maintenance SET held_until = $1 WHERE task = $2 AND holder = $3'),
  release: named('release', 'UPDATE maintenance SET holder = NULL, held_until = $1 WHERE task = $2 AND holder = $3'),
  importUsers: named('import_users', `
    INSERT INTO users (id, created_at) SELECT * FROM unnest($1::text[], $2::bigint[]) AS f(id, at)
    WHERE NOT EXISTS (SELECT 1 FROM removed_users r WHERE r.id = f.id) ON CONFLICT DO NOTHING RETURNING id`),
  importReservations: named('import_reservations', `
    INSERT INTO removed_users (id, removed_at) SELECT * FROM unnest($1::text[], $2::bigint[]) AS f(id, at)
    WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = f.id) ON CONFLICT DO NOTHING RETURNING id`),
  importTokens: named('import_tokens', `
    INSERT INTO tokens (hash, user_id, created_at, scopes) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
    ON CONFLICT DO NOTHING RETURNING hash`),
  // Set-based, one statement per run of messages. Conversation rows are summed per
  // (owner, peer) first, because one INSERT … ON CONFLICT DO UPDATE may touch a row once.
  importMessages: named('import_messages', `
    WITH m AS (
      INSERT INTO messages (seq, from_user, to_user, body, sent_at, read_at) OVERRIDING SYSTEM VALUE
      SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
      ON CONFLICT (seq) DO NOTHING
      RETURNING seq, from_user, to_user, read_at
    ), sides AS (
      SELECT to_user AS owner, from_user AS peer, seq, (read_at IS NULL)::int AS unread FROM m
      UNION ALL
      SELECT from_user, to_user, seq, 0 FROM m WHERE from_user <> to_user
    ), per_pair AS (
      SELECT owner, peer, max(seq) AS last_seq, sum(unread)::int AS unread FROM sides GROUP BY owner, peer
    ), noted AS (
      INSERT INTO conversations AS c (owner, peer, last_seq, unread) SELECT owner, peer, last_seq, unread FROM per_pair
      ON CONFLICT (owner, peer) DO UPDATE
        SET last_seq = greatest(c.last_seq, excluded.last_seq), unread = c.unread + excluded.unread
    )
    SELECT count(*)::int AS n, max(seq) AS top, coalesce(array_agg(seq), '{}') AS seqs FROM m`),
  // New ids must continue past imported ones. The sequence only ever moves forward here, and
  // the write lock keeps every other writer from drawing from it meanwhile.
  advanceSequence: named('advance_sequence', `
    SELECT setval('messages_seq_seq', greatest($1::bigint, last_value)) FROM messages_seq_seq`),
};

/** Applies batches of {@link WriteOp}s, one transaction per batch, on connections it is lent. */
export class WriteSide {
  private readonly clock = new WriteClock();

  /**
   * @param lockKey the store's write-lock key (see the module comment)
   * @param durability `relaxed` commits without waiting for the WAL flush
   */
  constructor(private readonly lockKey: bigint, private readonly durability: 'fsync' | 'relaxed') {}

  /**
   * Applies a batch in one transaction, left open for the caller to add notifications to and
   * commit. Operations run without savepoints, since they rarely fail; if one does, the
   * transaction is rolled back and the batch run again with each operation in its own
   * savepoint, so that it fails alone. Throws only what fails the batch as a whole.
   */
  async applyBatch(client: pg.ClientBase, ops: readonly WriteOp[]): Promise<{ replies: WriteReply[]; now: number }> {
    const fast = await this.attempt(client, ops, false);
    return fast ?? (await this.attempt(client, ops, true))!;
  }

  /** Notes that the batch applied with `now` committed. */
  committed(now: number): void {
    this.clock.committed(now);
  }

  private async attempt(client: pg.ClientBase, ops: readonly WriteOp[], isolate: boolean): Promise<{ replies: WriteReply[]; now: number } | null> {
    // One round trip. READ COMMITTED, stated rather than assumed from the server's default,
    // because every statement after the lock must take a fresh snapshot that includes the
    // previous lock holder's commit.
    await client.query(
      'BEGIN ISOLATION LEVEL READ COMMITTED; ' +
        (this.durability === 'relaxed' ? 'SET LOCAL synchronous_commit TO off; ' : '') +
        `SELECT pg_advisory_xact_lock(${this.lockKey.toString()})`,
    );
    const newest = (await client.query<{ sent_at: number }>(SQL.newestSentAt([]))).rows[0]?.sent_at ?? 0;
    // Keep sentAt monotonic with the sequence even if this clock, or another instance's,
    // is behind.
    const now = this.clock.now(newest);
    const replies: WriteReply[] = [];
    for (let i = 0; i < ops.length; i++) {
      const run = isolate ? 0 : plainSends(ops, i);
      if (run > 1) {
        const sends = ops.slice(i, i + run) as Extract<WriteOp, { op: 'send' }>[];
        try {
          for (const out of await this.sendRun(client, sends.map((o) => o.message), now)) replies.push({ ok: true, value: out });
        } catch (err) {
          if (isTransient(err)) throw err;
          await client.query('ROLLBACK');
          return null;
        }
        i += run - 1;
        continue;
      }
      const op = ops[i]!;
      if (isolate) await client.query('SAVEPOINT op');
      try {
        replies.push({ ok: true, value: await this.apply(client, op, now) });
        if (isolate) await client.query('RELEASE SAVEPOINT op');
      } catch (err) {
        if (isTransient(err)) throw err;
        if (!isolate) {
          await client.query('ROLLBACK');
          return null;
        }
        await client.query('ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op');
        replies.push({ ok: false, error: err });
      }
    }
    const cutoff = this.clock.purgeCutoff(now);
    if (cutoff !== undefined) await client.query(SQL.purgeKeys([cutoff]));
    return { replies, now };
  }

  private async apply(client: pg.ClientBase, op: WriteOp, now: number): Promise<unknown> {
    switch (op.op) {
      case 'send': return this.send(client, op.message, now, op.key, op.fingerprint);
      case 'delete': return this.delete(client, op.seq);
      case 'markRead': return this.markRead(client, op.user, now, op.upTo, op.ids);
      case 'createUser': {
        if ((await client.query(SQL.isReserved([op.id]))).rowCount !== 0) return false;
        if ((await client.query(SQL.createUser([op.id, now]))).rowCount === 0) return false;
        if (op.tokenHash !== undefined) await client.query(SQL.addToken([op.tokenHash, op.id, now, null]));
        return true;
      }
      case 'deleteUser': {
        const existed = ((await client.query(SQL.deleteUser([op.id]))).rowCount ?? 0) > 0;
        if (!op.purge) {
          if (existed) await client.query(SQL.reserve([op.id, now]));
          return existed;
        }
        const reserved = ((await client.query(SQL.unreserve([op.id]))).rowCount ?? 0) > 0;
        await client.query(SQL.purgeMessages([op.id]));
        await client.query(SQL.purgeConversations([op.id]));
        await client.query(SQL.purgeKeysOf([op.id]));
        return existed || reserved;
      }
      case 'addToken': {
        if ((await client.query(SQL.userExists([op.user]))).rowCount === 0) return false;
        await client.query(SQL.addToken([op.tokenHash, op.user, now, op.scopes ?? null]));
        return true;
      }
      case 'revokeTokens': return (await client.query(SQL.revokeTokens([op.user]))).rowCount ?? 0;
      case 'import': return this.import(client, op.records);
      case 'prune': {
        if (op.lease && (await client.query(SQL.renewLease([now + op.lease.leaseMs, op.lease.task, op.lease.holder]))).rowCount === 0) {
          return { removed: 0, more: false, lost: true };
        }
        return this.prune(client, op);
      }
      case 'claim': {
        const row = (await client.query<TaskClaimRow>(SQL.claimRead([op.task]))).rows[0];
        if (!claimDue(row, now, op.everyMs)) return false;
        await client.query(SQL.claimWrite([op.task, now, op.holder, now + op.leaseMs]));
        return true;
      }
      case 'release': return ((await client.query(SQL.release([now, op.task, op.holder]))).rowCount ?? 0) > 0;
      case 'ping': return true;
      case 'webhook': return applyWebhookWrite(client, op.write);
    }
  }

  private async send(client: pg.ClientBase, m: NewMessage, now: number, key?: string, fingerprint?: string): Promise<SendOutcome> {
    if (key !== undefined && fingerprint !== undefined) {
      const seen = (await client.query<{ fingerprint: string; response: string }>(
        SQL.byKey([m.fromUser, key, keyCutoff(now)]),
      )).rows[0];
      const decided = idempotencyOutcome(seen, fingerprint);
      if (decided) return decided;
    }
    const seq = (await client.query<{ seq: number }>(SQL.insert([m.fromUser, m.toUser, m.message, now]))).rows[0]!.seq;
    const message = toMessage({
      seq, from_user: m.fromUser, to_user: m.toUser, body: m.message, sent_at: now, read_at: null,
    });
    if (key !== undefined && fingerprint !== undefined) {
      await client.query(SQL.rememberKey([m.fromUser, key, fingerprint, messageJson(message), now]));
    }
    return { kind: 'stored', message };
  }

  /** Sends without idempotency keys, in order: the same outcome as one {@link send} each. */
  private async sendRun(client: pg.ClientBase, run: readonly NewMessage[], now: number): Promise<SendOutcome[]> {
    const seqs = (await client.query<{ seq: number }>(SQL.drawIds([run.length]))).rows.map((r) => r.seq).sort((x, y) => x - y);
    await client.query(SQL.insertMany([
      seqs, run.map((m) => m.fromUser), run.map((m) => m.toUser), run.map((m) => m.message), now,
    ]));
    return run.map((m, i) => ({
      kind: 'stored',
      message: toMessage({ seq: seqs[i]!, from_user: m.fromUser, to_user: m.toUser, body: m.message, sent_at: now, read_at: null }),
    }));
  }

  private async delete(client: pg.ClientBase, seq: number): Promise<Message | null> {
    const row = (await client.query<MessageRow>(SQL.deleteRow([seq]))).rows[0];
    if (!row) return null;
    for (const { owner, peer, unreadDrop } of sidesOf({ seq, fromUser: row.from_user, toUser: row.to_user, unread: row.read_at === null })) {
      const conv = (await client.query<{ last_seq: number }>(SQL.conversation([owner, peer]))).rows[0];
      if (!conv) continue;
      const newest = repairNeedsNewest(conv.last_seq, seq)
        ? (await client.query<{ seq: number | null }>(SQL.lastBetween([owner, peer]))).rows[0]?.seq ?? null
        : null;
      const repair = repairConversation(conv.last_seq, seq, newest);
      await client.query(repair.drop ? SQL.dropConversation([owner, peer]) : SQL.setConversation([repair.lastSeq, unreadDrop, owner, peer]));
    }
    return toMessage(row);
  }

  /**
   * Removes what a prune selects in a fixed number of statements however many messages it
   * takes (the write lock is held meanwhile), repairing conversations as write-decisions.ts's
   * sidesOfAll says, each step set-wise.
   */
  private async prune(client: pg.ClientBase, op: Extract<WriteOp, { op: 'prune' }>): Promise<PruneResult> {
    const gone = (await client.query<{ seq: number; from_user: string; to_user: string; read_at: number | null }>(
      op.inbox !== undefined ? SQL.pruneInbox([op.inbox, op.upTo ?? 0, op.limit]) : SQL.pruneOld([op.before ?? 0, op.limit]),
    )).rows;
    if (gone.length === 0) return { removed: 0, more: false };
    // The repair of write-decisions.ts (sidesOfAll), a fixed number of statements for any number of rows.
    const rows = sidesOfAll(gone.map((r) => ({ seq: r.seq, fromUser: r.from_user, toUser: r.to_user, unread: r.read_at === null })));
    const lowered = (await client.query<{ owner: string; peer: string; last_seq: number }>(
      SQL.lowerUnreadMany([rows.map((r) => r.owner), rows.map((r) => r.peer), rows.map((r) => r.unreadDrop)]),
    )).rows;
    const removed = new Set(gone.map((r) => r.seq));
    const stale = lowered.filter((c) => pruneNeedsNewest(c.last_seq, removed));
    if (stale.length > 0) {
      const newest = (await client.query<{ owner: string; peer: string; seq: number | null }>(
        SQL.newestBetweenMany([stale.map((c) => c.owner), stale.map((c) => c.peer)]),
      )).rows;
      const set: { owner: string; peer: string; seq: number }[] = [];
      const drop: { owner: string; peer: string }[] = [];
      for (const n of newest) {
        const repair = repairStale(n.seq);
        if (repair.drop) drop.push(n);
        else set.push({ owner: n.owner, peer: n.peer, seq: repair.lastSeq });
      }
      if (set.length > 0) await client.query(SQL.setLastSeqMany([set.map((r) => r.owner), set.map((r) => r.peer), set.map((r) => r.seq)]));
      if (drop.length > 0) await client.query(SQL.dropConversationMany([drop.map((r) => r.owner), drop.map((r) => r.peer)]));
    }
    return { removed: gone.length, more: gone.length === op.limit };
  }

  private async markRead(client: pg.ClientBase, user: string, now: number, upTo?: number, ids?: number[]): Promise<ReadOutcome> {
    const changed = (await client.query<{ seq: number; from_user: string }>(
      upTo !== undefined ? SQL.readUpTo([now, user, upTo]) : SQL.readIds([now, user, ids ?? []]),
    )).rows;
    const unread = (await client.query<{ n: number }>(SQL.unreadTotal([user]))).rows[0]!.n;
    return {
      unread, ids: changed.map((c) => String(c.seq)), senders: changed.map((c) => c.from_user), readAt: new Date(now).toISOString(),
    };
  }

  /**
   * Replays records in their order, a run of same-type records at a time, so that a token
   * may name a user from earlier in the same chunk exactly as on SQLite.
   */
  private async import(client: pg.ClientBase, records: readonly ExportRecord[]): Promise<StoreWriteResults['import']> {
    const counts = { users: 0, tokens: 0, messages: 0, reservations: 0, notStored: [] as number[] };
    // The positions of a run whose key is not among those its statement stored (each stored key counts once).
    const noteNotStored = (from: number, keys: readonly string[], stored: readonly string[]) => {
      const left = new Map<string, number>();
      for (const k of stored) left.set(k, (left.get(k) ?? 0) + 1);
      keys.forEach((k, n) => {
        const have = left.get(k) ?? 0;
        if (have > 0) left.set(k, have - 1);
        else counts.notStored.push(from + n);
      });
    };
    // Users of this chunk the store already held: their tokens would join another's account.
    const unstoredUsers = new Set<string>();
    let i = 0;
    while (i < records.length) {
      const type = records[i]!.type;
      const from = i;
      let j = i;
      while (j < records.length && records[j]!.type === type) j++;
      const run = records.slice(i, j);
      i = j;
      if (type === 'user') {
        const users = run as Extract<ExportRecord, { type: 'user' }>[];
        const stored = (await client.query<{ id: string }>(SQL.importUsers([
          users.map((u) => u.id), users.map((u) => Date.parse(u.createdAt)),
        ]))).rows.map((r) => r.id);
        counts.users += stored.length;
        noteNotStored(from, users.map((u) => u.id), stored);
        const storedIds = new Set(stored);
        for (const u of users) if (!storedIds.has(u.id)) unstoredUsers.add(u.id);
      } else if (type === 'reservation') {
        const reserved = run as Extract<ExportRecord, { type: 'reservation' }>[];
        const stored = (await client.query<{ id: string }>(SQL.importReservations([
          reserved.map((r) => r.id), reserved.map((r) => Date.parse(r.removedAt)),
        ]))).rows.map((r) => r.id);
        counts.reservations += stored.length;
        noteNotStored(from, reserved.map((r) => r.id), stored);
      } else if (type === 'token') {
        const tokens = run as Extract<ExportRecord, { type: 'token' }>[];
        // Those of an unstored user are not sent: noteNotStored names them, as never stored.
        const kept = tokens.filter((t) => !unstoredUsers.has(t.user));
        const stored = kept.length === 0 ? [] : (await client.query<{ hash: string }>(SQL.importTokens([
          kept.map((t) => t.hash), kept.map((t) => t.user), kept.map((t) => Date.parse(t.createdAt)), kept.map((t) => t.scopes ?? 'full'),
        ]))).rows.map((r) => r.hash);
        counts.tokens += stored.length;
        noteNotStored(from, tokens.map((t) => t.hash), stored);
      } else {
        const ms = (run as Extract<ExportRecord, { type: 'message' }>[]).map((r) => r.message);
        const out = (await client.query<{ n: number; top: number | null; seqs: (string | number)[] }>(SQL.importMessages([
          ms.map((m) => m.id), ms.map((m) => m.fromUser), ms.map((m) => m.toUser), ms.map((m) => m.message),
          ms.map((m) => Date.parse(m.sentAt)), ms.map((m) => (m.readAt === null ? null : Date.parse(m.readAt))),
        ]))).rows[0]!;
        counts.messages += out.n;
        noteNotStored(from, ms.map((m) => String(Number(m.id))), out.seqs.map((s) => String(Number(s))));
        if (out.top !== null) await client.query(SQL.advanceSequence([out.top]));
      }
    }
    return counts;
  }
}

/** How many sends without an idempotency key run on from `ops[i]`. */
function plainSends(ops: readonly WriteOp[], i: number): number {
  let j = i;
  while (j < ops.length) {
    const op = ops[j]!;
    if (op.op !== 'send' || op.key !== undefined) break;
    j++;
  }
  return j - i;
}
