/**
 * The writes every backend applies, and what each tells listeners once committed. A backend
 * queues these for its group commit; the shapes and the events are the same on all of them,
 * so live delivery cannot differ between SQLite and PostgreSQL.
 */
import type { Message } from '../protocol/types.js';
import type { ExportRecord, NewMessage, ReadOutcome, SendOutcome, StoreEvent } from './storage.js';
import type { WebhookWrite } from './webhooks.js';
import type { ImportChunkResult } from './import-check.js';

/** How long an idempotency key is remembered: the contract's 24 hours. */
export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;

/**
 * One write, as a storage queues it for the next batch. `ping` writes nothing: it proves
 * that the dialect's writer answers.
 *
 * A new write operation is a new member here, its result type in {@link StoreWriteResults},
 * its event (if any) in {@link eventOf}, its decisions (if any) as pure functions in
 * write-decisions.ts, and its SQL in each dialect's write-ops.ts. Anything written in the
 * same transaction as the operation (an outbox row, say) belongs in the dialect's apply of
 * it, or in its batch runner for a batch's worth of rows: the batch is one transaction.
 */
export type StoreWrite =
  | { op: 'ping' }
  | { op: 'send'; message: NewMessage; key?: string; fingerprint?: string }
  | { op: 'delete'; seq: number }
  | { op: 'markRead'; user: string; upTo?: number; ids?: number[] }
  /** Without `tokenHash`, a user with no token (one a JWT names). */
  | { op: 'createUser'; id: string; tokenHash?: string }
  | { op: 'deleteUser'; id: string; purge?: boolean }
  | { op: 'addToken'; user: string; tokenHash: string; scopes?: string }
  | { op: 'revokeTokens'; user: string }
  | { op: 'import'; records: ExportRecord[] }
  /** A change to webhook endpoints or deliveries (see webhooks.ts). */
  | { op: 'webhook'; write: WebhookWrite }
  /**
   * Retention (retention.ts): removes at most `limit` messages, the oldest first, that were
   * sent before `before` (ms), or that lie at or below `upTo` in `inbox`. Conversation rows
   * and unread counts follow, as for a delete; no event (pruned history simply is gone).
   */
  | { op: 'prune'; limit: number; before?: number; inbox?: string; upTo?: number; lease?: TaskLease }
  /**
   * Claims the maintenance task `task` for `holder` if no instance holds it and none ran it in
   * the last `everyMs`: one claim wins per period across every instance of a store, and the
   * claim is held (a lease of `leaseMs`, renewed by each prune write that names it) until
   * released or, if its holder dies, until the lease runs out.
   */
  | { op: 'claim'; task: string; holder: string; everyMs: number; leaseMs: number }
  /** Lets go of a claim `holder` holds, noting now as the end of its run. */
  | { op: 'release'; task: string; holder: string };

/** A held claim a prune write renews in its own transaction, and without which it removes nothing. */
export interface TaskLease {
  task: string;
  holder: string;
  leaseMs: number;
}

/** The result type of each write. */
export interface StoreWriteResults {
  ping: true;
  send: SendOutcome;
  delete: Message | null;
  markRead: ReadOutcome;
  createUser: boolean;
  deleteUser: boolean;
  addToken: boolean;
  revokeTokens: number;
  import: ImportChunkResult;
  webhook: unknown;
  prune: PruneResult;
  claim: boolean;
  release: boolean;
}

/**
 * What one prune write removed, and whether more of the same remains; `lost` when the write
 * named a lease its holder no longer holds (another instance took the task over): nothing
 * was removed, and the run must stop.
 */
export interface PruneResult {
  removed: number;
  more: boolean;
  lost?: true;
}

/** One operation's answer from a batch: its value, or the error that failed it alone. */
export type WriteReply = { ok: true; value: unknown } | { ok: false; error: unknown };

/** What a committed write tells listeners, if anything. Imported messages are history, not news. */
export function eventOf(write: StoreWrite, value: unknown): StoreEvent | undefined {
  switch (write.op) {
    case 'send': {
      const out = value as SendOutcome;
      return out.kind === 'stored' ? { type: 'message', message: out.message } : undefined;
    }
    case 'delete': {
      const m = value as Message | null;
      return m ? { type: 'deleted', id: m.id, fromUser: m.fromUser, toUser: m.toUser } : undefined;
    }
    case 'markRead': {
      const r = value as ReadOutcome;
      return r.ids.length > 0 ? { type: 'read', user: write.user, ids: r.ids, senders: r.senders, readAt: r.readAt } : undefined;
    }
    case 'deleteUser':
      return value === true ? { type: 'user-removed', user: write.id } : undefined;
    case 'revokeTokens':
      return (value as number) > 0 ? { type: 'tokens-revoked', user: write.user } : undefined;
    default:
      return undefined;
  }
}

/** Turns a committed batch into the events listeners hear, in commit order. */
export function eventsOf(writes: readonly StoreWrite[], replies: readonly WriteReply[]): StoreEvent[] {
  const events: StoreEvent[] = [];
  for (let i = 0; i < writes.length; i++) {
    const reply = replies[i];
    const event = reply?.ok ? eventOf(writes[i]!, reply.value) : undefined;
    if (event) events.push(event);
  }
  return events;
}
