/**
 * The writes every backend applies, and what each tells listeners once committed. A backend
 * queues these for its group commit; the shapes and the events are the same on all of them,
 * so live delivery cannot differ between SQLite and PostgreSQL.
 */
import type { Message } from '../protocol/types.js';
import type { ExportRecord, NewMessage, ReadOutcome, SendOutcome, StoreEvent } from './storage.js';

/** How long an idempotency key is remembered: the contract's 24 hours. */
export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;

/** One write, as a storage queues it for the next batch. */
export type StoreWrite =
  | { op: 'send'; message: NewMessage; key?: string; fingerprint?: string }
  | { op: 'delete'; seq: number }
  | { op: 'markRead'; user: string; upTo?: number; ids?: number[] }
  | { op: 'createUser'; id: string; tokenHash: string }
  | { op: 'deleteUser'; id: string }
  | { op: 'addToken'; user: string; tokenHash: string; scopes?: string }
  | { op: 'revokeTokens'; user: string }
  | { op: 'import'; records: ExportRecord[] };

/** The result type of each write. */
export interface StoreWriteResults {
  send: SendOutcome;
  delete: Message | null;
  markRead: ReadOutcome;
  createUser: boolean;
  deleteUser: boolean;
  addToken: boolean;
  revokeTokens: number;
  import: { users: number; tokens: number; messages: number };
}

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
      return r.ids.length > 0 ? { type: 'read', user: write.user, ids: r.ids, readAt: r.readAt } : undefined;
    }
    case 'deleteUser':
      return value === true ? { type: 'user-removed', user: write.id } : undefined;
    case 'revokeTokens':
      return (value as number) > 0 ? { type: 'tokens-revoked', user: write.user } : undefined;
    default:
      return undefined;
  }
}
