/**
 * Messages: sending, reading, paging, conversations, read state and deletion.
 *
 * Plain objects in and out. Input arrives as the client sent it (after the HTTP schema's
 * first pass); the rules of `rules.ts` and `access.ts` are applied here for every caller.
 */
import { createHash } from 'node:crypto';
import { AppError, invalid } from '../errors.js';
import type { ConversationList, Message, ReadResult } from '../protocol/types.js';
import { nextCursor } from '../storage/paging.js';
import type { PageQuery, ReadSelector, Storage, WirePage, WireRow } from '../storage/storage.js';
import { assertActsAs, assertParty, noSuchMessage, senderOf, type Actor } from './access.js';
import {
  DEFAULT_PAGE, MAX_PAGE, MAX_WAIT_SECONDS, messageSeq, toCursor, toIdempotencyKey, toMessageText, toUserId,
} from './rules.js';

export type { WireRow };

/** A message as a client submits it, before any rule is applied. */
export interface SendInput {
  fromUser?: unknown;
  toUser?: unknown;
  message?: unknown;
}

/** Paging parameters as they arrive in a query string. */
export interface PageParams {
  after?: string;
  before?: string;
  limit?: number;
}

/** Inbox parameters: paging, filters and an optional long-poll. */
export interface InboxParams extends PageParams {
  from?: string;
  unread?: boolean;
  /** Seconds to wait for a message when the page would be empty (0–60). */
  wait?: number;
}

/**
 * Lets the domain sleep until something arrives for a user, without polling storage.
 * The realtime hub implements it; `watch` must be called before the read it guards so that
 * a message committing between the read and the wait is not missed.
 */
export interface InboxWaiter {
  watch(user: string): InboxWatch;
}

/** One armed watch on a user's inbox. */
export interface InboxWatch {
  /** Resolves true when a message for the user commits (or already has since `watch`), false at the deadline or on abort. */
  next(timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  close(): void;
}

/** What a send produced, and whether it was a replay of an earlier identical send. */
export interface SendResult {
  message: Message;
  replayed: boolean;
}

/**
 * A page of messages in wire form: each message's canonical JSON beside its id, oldest
 * first, and the cursor of the following page. Every page route, the legacy inbox and the
 * stream send these texts as they are (protocol/wire.ts renders the page around them).
 */
export interface WireMessagePage {
  rows: readonly WireRow[];
  next: string | null;
}

/** How many messages the legacy full-inbox read takes from storage at a time. */
export const INBOX_CHUNK = 1000;

/** The message operations, bound to one store. */
export class MessageService {
  constructor(
    private readonly storage: Storage,
    private readonly waiter: InboxWaiter,
    private readonly options: {
      maxMessageBytes: number;
      /**
       * Refuses a recipient no one may receive as (a 404 `unknown_recipient`), before
       * anything is stored: see `UserService.assertRecipient` (users.ts). Open mode has none.
       */
      checkRecipient?: (toUser: string) => Promise<void>;
      /** Told of each message stored (not of replays), for metrics. */
      onStored?: () => void;
    },
  ) {}

  /** Stores a message; with an idempotency key, a repeat answers the first result. */
  async send(actor: Actor, input: SendInput, idempotencyKey?: string): Promise<SendResult> {
    const fromUser = senderOf(actor, input.fromUser);
    const toUser = toUserId(input.toUser, 'toUser');
    const message = toMessageText(input.message, this.options.maxMessageBytes);
    if (this.options.checkRecipient) await this.options.checkRecipient(toUser);
    const claim = idempotencyKey === undefined
      ? undefined
      : { key: toIdempotencyKey(idempotencyKey), fingerprint: fingerprint(toUser, message) };
    const outcome = await this.storage.send({ fromUser, toUser, message }, claim);
    if (outcome.kind === 'mismatch') {
      throw new AppError('idempotency_mismatch',
        'this Idempotency-Key was already used by this sender for a different message', {
          errors: [{ field: 'Idempotency-Key', message: 'was used for a different request in the last 24 hours' }],
        });
    }
    if (outcome.kind === 'stored') this.options.onStored?.();
    return { message: outcome.message, replayed: outcome.kind === 'replayed' };
  }

  /** One message, to its sender or recipient. */
  async get(actor: Actor, id: string): Promise<Message> {
    const message = await this.find(id);
    assertParty(actor, message);
    return message;
  }

  /** Deletes a message for both sides. */
  async delete(actor: Actor, id: string): Promise<void> {
    const message = await this.find(id);
    assertParty(actor, message);
    await this.storage.deleteMessage(Number(message.id));
  }

  /** A page of a user's inbox, in wire form, optionally waiting for the first message to arrive. */
  async inbox(actor: Actor, user: string, params: InboxParams, signal?: AbortSignal): Promise<WireMessagePage> {
    const owner = this.owner(actor, user);
    const query = {
      ...toPageQuery(params),
      ...(params.from === undefined ? {} : { from: toUserId(params.from, 'from') }),
      unreadOnly: params.unread === true,
    };
    const wait = params.wait ?? 0;
    if (!(wait >= 0 && wait <= MAX_WAIT_SECONDS)) throw invalid('wait', `must be between 0 and ${MAX_WAIT_SECONDS} seconds`);
    if (wait > 0 && query.after === undefined && query.before !== undefined) {
      throw invalid('wait', 'applies only to forward paging (after=, or no cursor)');
    }
    if (wait === 0) return toWirePage(await this.storage.inbox(owner, query), query);

    const deadline = Date.now() + wait * 1000;
    const watch = this.waiter.watch(owner);
    try {
      for (;;) {
        const page = await this.storage.inbox(owner, query);
        const left = deadline - Date.now();
        if (page.rows.length > 0 || left <= 0 || signal?.aborted) return toWirePage(page, query);
        // A message that arrives but does not pass the filters wakes us for nothing; loop.
        if (!(await watch.next(left, signal))) return toWirePage(await this.storage.inbox(owner, query), query);
      }
    } finally {
      watch.close();
    }
  }

  /**
   * Every message to a user, oldest first, in chunks read from storage one after another,
   * so a huge inbox is never held in memory at once (the legacy `GET /get-messages`).
   */
  async *allInbox(actor: Actor, user: string): AsyncGenerator<readonly WireRow[]> {
    const owner = this.owner(actor, user);
    let after: number | undefined;
    for (;;) {
      const page = await this.storage.inbox(owner, { after, limit: INBOX_CHUNK });
      if (page.rows.length > 0) yield page.rows;
      if (!page.more) return;
      after = Number(page.rows[page.rows.length - 1]![0]);
    }
  }

  /** A page of the messages a user sent, in wire form. */
  async sent(actor: Actor, user: string, params: PageParams): Promise<WireMessagePage> {
    const owner = this.owner(actor, user);
    const query = toPageQuery(params);
    return toWirePage(await this.storage.sent(owner, query), query);
  }

  /**
   * A page of the messages to a user and those it sent, in one id order, in wire form: what a
   * stream that also carries the user's own messages replays.
   */
  async mailbox(actor: Actor, user: string, params: PageParams): Promise<WireMessagePage> {
    const owner = this.owner(actor, user);
    const query = toPageQuery(params);
    return toWirePage(await this.storage.mailbox(owner, query), query);
  }

  /** A page of the messages between a user and a peer, both directions, in wire form. */
  async conversation(actor: Actor, user: string, peer: string, params: PageParams): Promise<WireMessagePage> {
    const owner = this.owner(actor, user);
    const other = toUserId(peer, 'peer');
    const query = toPageQuery(params);
    return toWirePage(await this.storage.conversation(owner, other, query), query);
  }

  /** A user's conversations, most recent first. */
  async conversations(actor: Actor, user: string, params: { before?: string; limit?: number }): Promise<ConversationList> {
    const owner = this.owner(actor, user);
    const limit = toLimit(params.limit);
    const before = params.before === undefined || params.before === 'latest' ? undefined : toCursor(params.before, 'before');
    const { conversations, more } = await this.storage.conversations(owner, { before, limit });
    const last = conversations[conversations.length - 1];
    return { conversations, next: more && last ? last.lastMessage.id : null };
  }

  /** Marks messages to a user read: all up to an id, or a list of ids. */
  async markRead(actor: Actor, user: string, body: { upTo?: unknown; ids?: unknown }): Promise<ReadResult> {
    const owner = this.owner(actor, user);
    let which: ReadSelector;
    if (body.upTo !== undefined && body.ids !== undefined) throw invalid('body', 'must give either upTo or ids, not both');
    if (body.upTo !== undefined) {
      if (typeof body.upTo !== 'string') throw invalid('upTo', 'must be a message id');
      which = { upTo: toCursor(body.upTo, 'upTo') };
    } else if (Array.isArray(body.ids)) {
      which = {
        ids: body.ids.map((id, i) => {
          if (typeof id !== 'string') throw invalid(`ids/${i}`, 'must be a message id');
          return toCursor(id, `ids/${i}`);
        }),
      };
    } else {
      throw invalid('body', 'must give upTo (a message id) or ids (a list of message ids)');
    }
    const outcome = await this.storage.markRead(owner, which);
    return { unread: outcome.unread, marked: outcome.ids.length };
  }

  /** The user whose inbox `actor` asks for, validated and allowed (for the live stream). */
  inboxOwner(actor: Actor, user: string): string {
    return this.owner(actor, user);
  }

  private owner(actor: Actor, user: string): string {
    const owner = toUserId(user, 'user');
    assertActsAs(actor, owner);
    return owner;
  }

  private async find(id: string): Promise<Message> {
    const seq = messageSeq(id);
    const message = seq === null ? null : await this.storage.getMessage(seq);
    if (!message) throw noSuchMessage(id);
    return message;
  }
}

function toLimit(limit: number | undefined): number {
  const n = limit ?? DEFAULT_PAGE;
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE) throw invalid('limit', `must be a whole number from 1 to ${MAX_PAGE}`);
  return n;
}

/** Turns query parameters into a storage window, per the contract's Paging section. */
export function toPageQuery(params: PageParams): PageQuery {
  const query: PageQuery = { limit: toLimit(params.limit) };
  if (params.after !== undefined) query.after = toCursor(params.after, 'after');
  if (params.before !== undefined) {
    query.before = params.before === 'latest' ? Infinity : toCursor(params.before, 'before');
  }
  return query;
}

function toWirePage(page: WirePage, query: PageQuery): WireMessagePage {
  return { rows: page.rows, next: nextCursor(page, query) };
}

/** What makes two sends "the same request" for an idempotency key. */
function fingerprint(toUser: string, message: string): string {
  return createHash('sha256').update(JSON.stringify([toUser, message])).digest('base64url');
}
