/**
 * The decisions inside the writes, as pure functions and small state every dialect shares:
 * a dialect reads what a decision needs with its own SQL, asks here what to do, and writes
 * the answer with its own SQL. So SQLite and PostgreSQL cannot come to decide differently.
 */
import type { Message } from '../protocol/types.js';
import type { SendOutcome } from './storage.js';
import { IDEMPOTENCY_TTL_MS } from './writes.js';

/** An idempotency key's row as remembered: the request's fingerprint and the first answer's JSON. */
export interface RememberedKey {
  fingerprint: string;
  response: string;
}

/**
 * What a send with an idempotency key does, given what the key remembers (looked up among
 * keys younger than {@link keyCutoff}): replay the first answer, refuse a different
 * request, or (undefined) store the message and remember the key.
 */
export function idempotencyOutcome(seen: RememberedKey | undefined, fingerprint: string): SendOutcome | undefined {
  if (!seen) return undefined;
  return seen.fingerprint === fingerprint
    ? { kind: 'replayed', message: JSON.parse(seen.response) as Message }
    : { kind: 'mismatch' };
}

/** The oldest creation time of a key still remembered at `now`. */
export function keyCutoff(now: number): number {
  return now - IDEMPOTENCY_TTL_MS;
}

/** A deleted message as a conversation repair needs it. */
export interface DeletedMessage {
  seq: number;
  fromUser: string;
  toUser: string;
  /** Unread when deleted: the recipient's unread count drops by one. */
  unread: boolean;
}

/** One conversation row a deleted message was counted in. */
export interface ConversationSide {
  owner: string;
  peer: string;
  /** How much the row's unread count drops. */
  unreadDrop: number;
}

/** The conversation rows a message is counted in: the recipient's, and the sender's unless it was to oneself. */
export function sidesOf(m: DeletedMessage): ConversationSide[] {
  const theirs = { owner: m.toUser, peer: m.fromUser, unreadDrop: m.unread ? 1 : 0 };
  return m.fromUser === m.toUser ? [theirs] : [theirs, { owner: m.fromUser, peer: m.toUser, unreadDrop: 0 }];
}

/**
 * The conversation rows a set of deleted messages (one prune write) were counted in, each row
 * once with the sum of its unread drops.
 *
 * A prune repairs conversations the same way on every backend: delete the messages; visit
 * each of these rows once, lowering its unread count and reading its last message; for a row
 * whose last message was among those deleted ({@link pruneNeedsNewest}), read the newest
 * message left between its two users and point the row there, or drop it when none is left
 * ({@link repairStale}). A dialect only chooses how many statements that takes.
 */
export function sidesOfAll(gone: readonly DeletedMessage[]): ConversationSide[] {
  const rows = new Map<string, ConversationSide>();
  for (const m of gone) {
    for (const side of sidesOf(m)) {
      const key = JSON.stringify([side.owner, side.peer]);
      const row = rows.get(key);
      if (row) row.unreadDrop += side.unreadDrop;
      else rows.set(key, { ...side });
    }
  }
  return [...rows.values()];
}

/** Whether a row a prune touched, whose last message is `lastSeq`, needs the newest message left: its last one went. */
export function pruneNeedsNewest(lastSeq: number, removed: ReadonlySet<number>): boolean {
  return removed.has(lastSeq);
}

/** What a row whose last message went becomes, given the newest message left between its two users (null: none). */
export function repairStale(newest: number | null): ConversationRepair {
  return newest === null ? { drop: true } : { drop: false, lastSeq: newest };
}

/** Whether repairing a row needs the newest message left between its two users: the deleted one was its last. */
export function repairNeedsNewest(lastSeq: number, deletedSeq: number): boolean {
  return lastSeq === deletedSeq;
}

/** What a conversation row becomes after a delete: dropped (nothing left between the two), or pointing at `lastSeq`. */
export type ConversationRepair = { drop: true } | { drop: false; lastSeq: number };

/**
 * What deleting message `deletedSeq` does to a conversation row whose last message is
 * `lastSeq`. `newest` is the newest message left between the two users, or null for none;
 * it is read only when {@link repairNeedsNewest} says so, and ignored otherwise.
 */
export function repairConversation(lastSeq: number, deletedSeq: number, newest: number | null): ConversationRepair {
  if (!repairNeedsNewest(lastSeq, deletedSeq)) return { drop: false, lastSeq };
  return repairStale(newest);
}

/** How often expired idempotency keys are swept, at most. */
const PURGE_EVERY_MS = 60_000;

/**
 * The clock of a writer: each batch gets one time, never earlier than any time already
 * handed out, so `sentAt` never goes back as ids go up even if the wall clock steps back;
 * and the schedule of the idempotency-key sweep that rides on batches.
 */
export class WriteClock {
  private last: number;
  private lastPurge = 0;

  /** @param newest the newest `sentAt` (ms) already stored, or 0 */
  constructor(newest = 0) {
    this.last = newest;
  }

  /** The time for the next batch; `floor` is a newest time the dialect read (another instance's). */
  now(floor = 0): number {
    return Math.max(Date.now(), this.last, floor);
  }

  /** Notes that the batch given `now` committed. */
  committed(now: number): void {
    this.last = now;
  }

  /**
   * The cutoff below which keys are to be swept in the batch given `now`, or undefined when
   * a sweep ran recently. Asking counts as sweeping: the batch is expected to do it.
   */
  purgeCutoff(now: number): number | undefined {
    if (now - this.lastPurge <= PURGE_EVERY_MS) return undefined;
    this.lastPurge = now;
    return keyCutoff(now);
  }
}

/** A maintenance task's row of claims, as a dialect reads it. */
export interface TaskClaimRow {
  /** When the last run started (ms). */
  ranAt: number;
  /** The instance running it now, or null when no run is under way. */
  holder: string | null;
  /** Until when the holder's lease lasts (ms); once released, when the last run ended. */
  heldUntil: number | null;
}

/**
 * Whether a maintenance task whose claims row is `row` (undefined: never run) may be claimed
 * at `now` for a task that runs every `everyMs`: not while a run holds an unexpired lease
 * (a long run is never overlapped), and then once `everyMs` has passed since the last run
 * started or ended, whichever is later (a lease that expired counts as an end). A time in the
 * future (the clock stepped back) does not block the task forever.
 */
export function claimDue(row: TaskClaimRow | undefined, now: number, everyMs: number): boolean {
  if (row === undefined) return true;
  if (row.holder !== null && row.heldUntil !== null && now < row.heldUntil) return false;
  const last = Math.max(row.ranAt, row.heldUntil ?? 0);
  return now - last >= everyMs || last > now;
}
