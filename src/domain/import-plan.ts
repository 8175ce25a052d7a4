/**
 * What an import would do to a store that already holds data, decided before anything is
 * written: which records are new, which the store already holds unchanged (skipped: running
 * an import again is harmless), and which conflict with what the store holds.
 *
 * A conflict is never resolved silently. A message id the store holds with a different
 * sender, recipient, text or time; a user id the store holds with a different creation time
 * (another user of the same name); a token that would be added to a user the store already
 * holds (merging two people's tokens into one account), or that belongs to another user:
 * a user id the store reserves for a removed user (the new user would inherit the removed
 * one's messages), or a reservation of an id the store holds as a live user (that user could
 * no longer sign in, nor be re-created): each refuses the import, naming the record, unless
 * the person says how to resolve it.
 * The one resolution offered keeps what the store holds and skips the file's record (and
 * with a skipped user, its tokens).
 *
 * A message the store has since marked read is the same message: its read state in the
 * store is newer than the file's, and is kept.
 *
 * The check reads the store's messages alongside the file's, both in id order (the order an
 * export writes), so it costs one ranged read per thousand messages rather than a lookup
 * per message; a file out of order falls back to a lookup for each record out of place.
 */
import type { Message } from '../protocol/types.js';
import type { ExportRecord, ImportCounts, Storage } from '../storage/storage.js';
import { messageSeq } from './rules.js';

/** How conflicts are resolved: refuse the import, or keep the store's record and skip the file's. */
export type ConflictPolicy = 'fail' | 'skip';

/** One record of the file that conflicts with the store. */
export interface ImportConflict {
  kind: 'user' | 'reservation' | 'token' | 'message';
  /** The user id, the message id, or the first characters of a token hash. */
  id: string;
  why: string;
}

/** What {@link planImport} found. */
export interface ImportPlan {
  /** Records the store already holds unchanged, by kind. */
  same: ImportCounts;
  /** Conflicting records, by kind. */
  conflicting: ImportCounts;
  /** The first conflicts, to name them (at most {@link NAMED_CONFLICTS}). */
  conflicts: ImportConflict[];
  /** Decisions the import pass needs, kept small: per user of the file, and conflicting token hashes. */
  users: Map<string, 'new' | 'same' | 'conflict'>;
  badTokens: Set<string>;
  /** Reserved ids of the file that conflict with a live user of the store. */
  badReservations: Set<string>;
  /** Ids of the file's messages that conflict: not written, so that only a race shows as a record the write did not store. */
  badMessages: Set<string>;
}

/** How many conflicts a plan names; the rest are counted. */
export const NAMED_CONFLICTS = 20;

/** The fields that make a message the same one, whatever its read state. */
function sameMessage(a: Message, b: Message): boolean {
  return a.id === b.id && a.fromUser === b.fromUser && a.toUser === b.toUser && a.message === b.message && a.sentAt === b.sentAt;
}

/**
 * The store's messages by id, for ids asked in mostly ascending order: a walk along the
 * store's own id order, and a single lookup for an id behind the walk.
 */
class StoredMessages {
  private readonly walk: AsyncIterator<ExportRecord>;
  private current: Message | undefined;
  private done = false;

  constructor(private readonly storage: Storage) {
    this.walk = storage.exportAll()[Symbol.asyncIterator]();
  }

  async get(seq: number): Promise<Message | null> {
    if (this.current && Number(this.current.id) > seq) return this.storage.getMessage(seq);
    while (!this.done && (!this.current || Number(this.current.id) < seq)) {
      const next = await this.walk.next();
      if (next.done) this.done = true;
      else if (next.value.type === 'message') this.current = next.value.message;
    }
    return this.current && Number(this.current.id) === seq ? this.current : null;
  }

  async close(): Promise<void> {
    await this.walk.return?.();
  }
}

/** Reads the file's records once against the store, writing nothing. */
export async function planImport(storage: Storage, records: AsyncIterable<ExportRecord>): Promise<ImportPlan> {
  const stored = new Map((await storage.listUsers()).map((u) => [u.id, u.createdAt]));
  const plan: ImportPlan = {
    same: { users: 0, tokens: 0, messages: 0, reservations: 0 },
    conflicting: { users: 0, tokens: 0, messages: 0, reservations: 0 },
    conflicts: [],
    users: new Map(),
    badTokens: new Set(),
    badReservations: new Set(),
    badMessages: new Set(),
  };
  const conflict = (c: ImportConflict) => {
    plan.conflicting[`${c.kind}s`]++;
    if (plan.conflicts.length < NAMED_CONFLICTS) plan.conflicts.push(c);
  };
  const messages = new StoredMessages(storage);
  try {
    await check(storage, records, stored, messages, plan, conflict);
  } finally {
    await messages.close();
  }
  return plan;
}

async function check(
  storage: Storage,
  records: AsyncIterable<ExportRecord>,
  stored: Map<string, string>,
  messages: StoredMessages,
  plan: ImportPlan,
  conflict: (c: ImportConflict) => void,
): Promise<void> {
  for await (const r of records) {
    switch (r.type) {
      case 'user': {
        const have = stored.get(r.id);
        if (have === undefined && (await storage.userStatus(r.id)) === 'reserved') {
          plan.users.set(r.id, 'conflict');
          conflict({
            kind: 'user', id: r.id,
            why: `the store reserves "${r.id}" for a removed user: a user of that id would inherit its messages (purge it first to free the id)`,
          });
        } else if (have === undefined) plan.users.set(r.id, 'new');
        else if (have === r.createdAt) {
          plan.users.set(r.id, 'same');
          plan.same.users++;
        } else {
          plan.users.set(r.id, 'conflict');
          conflict({ kind: 'user', id: r.id, why: `the store holds another user "${r.id}" (created ${have}; the file's was created ${r.createdAt})` });
        }
        break;
      }
      case 'reservation': {
        if (stored.has(r.id)) {
          plan.badReservations.add(r.id);
          conflict({ kind: 'reservation', id: r.id, why: `the file reserves "${r.id}" for a removed user, but the store holds "${r.id}" as a live user` });
        } else if ((await storage.userStatus(r.id)) === 'reserved') {
          plan.same.reservations++;
        }
        break;
      }
      case 'token': {
        const owner = await storage.userForToken(r.hash);
        const short = `${r.hash.slice(0, 12)}…`;
        if (owner === r.user) {
          plan.same.tokens++;
        } else if (owner !== null) {
          plan.badTokens.add(r.hash);
          conflict({ kind: 'token', id: short, why: `the token of "${r.user}" in the file belongs to "${owner}" in the store` });
        } else if (plan.users.get(r.user) === 'same' || (!plan.users.has(r.user) && stored.has(r.user))) {
          plan.badTokens.add(r.hash);
          conflict({ kind: 'token', id: short, why: `importing it would add a token to "${r.user}", whom the store already holds (tokens are never merged)` });
        } else if (plan.users.get(r.user) === 'conflict') {
          plan.badTokens.add(r.hash);
          conflict({ kind: 'token', id: short, why: `it belongs to the file's "${r.user}", who conflicts with the store's` });
        }
        break;
      }
      case 'message': {
        const have = await messages.get(messageSeq(r.message.id) ?? Number(r.message.id));
        if (have === null) break;
        if (sameMessage(have, r.message)) plan.same.messages++;
        else {
          const fields = (['fromUser', 'toUser', 'message', 'sentAt'] as const).filter((f) => have[f] !== r.message[f]);
          plan.badMessages.add(r.message.id);
          conflict({
            kind: 'message', id: r.message.id,
            why: `the store holds a different message ${r.message.id} (its ${fields.join(', ')} differ${fields.length === 1 ? 's' : ''})`,
          });
        }
        break;
      }
    }
  }
}

/** Whether the plan (or an import's outcome) found anything that conflicts. */
export function hasConflicts(plan: Pick<ImportPlan, 'conflicting'>): boolean {
  const c = plan.conflicting;
  return c.users + c.tokens + c.messages + c.reservations > 0;
}

/**
 * The records of the file the import writes, following the plan: every record but the
 * conflicting ones (and the tokens of a conflicting user). Records the store already holds
 * go through too: storing one that is already there changes nothing, and counting what
 * actually changed is the storage's answer.
 */
export async function* recordsToImport(records: AsyncIterable<ExportRecord>, plan: ImportPlan): AsyncGenerator<ExportRecord> {
  for await (const r of records) {
    if (r.type === 'user' && plan.users.get(r.id) === 'conflict') continue;
    if (r.type === 'reservation' && plan.badReservations.has(r.id)) continue;
    if (r.type === 'token' && (plan.badTokens.has(r.hash) || plan.users.get(r.user) === 'conflict')) continue;
    if (r.type === 'message' && plan.badMessages.has(r.message.id)) continue;
    yield r;
  }
}

/** What an import pass did: what it stored, and what became of the records it did not store. */
export interface ImportOutcome {
  imported: ImportCounts;
  /** Records not stored because the store holds them unchanged: skipped (already there). */
  same: ImportCounts;
  /**
   * Records not stored because the store holds another record under their id (or token
   * hash), written after the plan was made: by a running server, say, which took a new id
   * between the check and the write.
   */
  conflicting: ImportCounts;
  /** The first of those, named (at most {@link NAMED_CONFLICTS}). */
  conflicts: ImportConflict[];
}

/**
 * The import pass: writes the records the plan lets through, and compares every record the
 * write did not store (its id was taken) with what the store holds right after: the same
 * record is counted as skipped; a different one is a conflict, named, never dropped in
 * silence. The plan is made before the write, and the store may change in between.
 */
export async function importPlanned(storage: Storage, records: AsyncIterable<ExportRecord>, plan: ImportPlan): Promise<ImportOutcome> {
  const outcome: ImportOutcome = {
    imported: { users: 0, tokens: 0, messages: 0, reservations: 0 },
    same: { users: 0, tokens: 0, messages: 0, reservations: 0 },
    conflicting: { users: 0, tokens: 0, messages: 0, reservations: 0 },
    conflicts: [],
  };
  const conflict = (c: ImportConflict) => {
    outcome.conflicting[`${c.kind}s`]++;
    if (outcome.conflicts.length < NAMED_CONFLICTS) outcome.conflicts.push(c);
  };
  outcome.imported = await storage.importAll(recordsToImport(records, plan), async (notStored) => {
    const users = notStored.some((r) => r.type === 'user')
      ? new Map((await storage.listUsers()).map((u) => [u.id, u.createdAt]))
      : new Map<string, string>();
    for (const r of notStored) {
      if (r.type === 'user') {
        const have = users.get(r.id);
        if (have === r.createdAt) outcome.same.users++;
        else {
          // The file's tokens of this user, in chunks still to come, are not written either.
          plan.users.set(r.id, 'conflict');
          conflict({ kind: 'user', id: r.id, why: `the store took the id meanwhile: it holds another user "${r.id}" (created ${have ?? 'unknown'}; the file's was created ${r.createdAt})` });
        }
      } else if (r.type === 'reservation') {
        if ((await storage.userStatus(r.id)) === 'reserved') outcome.same.reservations++;
        else conflict({ kind: 'reservation', id: r.id, why: `the store took the id meanwhile: "${r.id}" is a live user there` });
      } else if (r.type === 'token') {
        const owner = await storage.userForToken(r.hash);
        if (owner === r.user) outcome.same.tokens++;
        else if (plan.users.get(r.user) === 'conflict') {
          conflict({ kind: 'token', id: `${r.hash.slice(0, 12)}…`, why: `it belongs to the file's "${r.user}", whose id the store took meanwhile (tokens are never merged)` });
        } else conflict({ kind: 'token', id: `${r.hash.slice(0, 12)}…`, why: `the store took it meanwhile: it belongs to "${owner ?? 'nobody'}", not "${r.user}"` });
      } else {
        const have = await storage.getMessage(messageSeq(r.message.id) ?? Number(r.message.id));
        if (have && sameMessage(have, r.message)) outcome.same.messages++;
        else {
          const fields = have ? (['fromUser', 'toUser', 'message', 'sentAt'] as const).filter((f) => have[f] !== r.message[f]) : [];
          conflict({
            kind: 'message', id: r.message.id,
            why: have
              ? `the store took the id meanwhile (a running server?): it holds a different message ${r.message.id} (its ${fields.join(', ')} differ${fields.length === 1 ? 's' : ''})`
              : `it was not stored, and the store holds no message ${r.message.id}`,
          });
        }
      }
    }
  });
  return outcome;
}
