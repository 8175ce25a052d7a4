/**
 * Who may do what: the contract's Access section as plain functions over an {@link Actor}.
 *
 * The HTTP layer only works out who is calling; every decision about whose data that
 * caller may touch is made here, so the same rules hold for every route and every client.
 */
import { AppError, invalid } from '../errors.js';
import type { Message } from '../protocol/types.js';
import { toUserId } from './rules.js';

/**
 * What a token may do. `send`: send as its user and nothing else (a bot, a device); `read`:
 * the inbox, conversations, the stream, marking read (a dashboard); `full`: everything a
 * user may do, the default.
 */
export type Scope = 'full' | 'send' | 'read';

/** Every scope, widest first. */
export const SCOPES: readonly Scope[] = ['full', 'send', 'read'];

/** A token (or JWT) acting as one user, with what it may do. */
export interface UserActor {
  kind: 'user';
  id: string;
  /**
   * Never empty: a JWT without a `scope` claim, or whose claim names none of ours (only
   * other applications' scopes), is `full`.
   */
  scopes: readonly Scope[];
  /**
   * When a JWT stops being accepted (its `exp` plus the leeway), in epoch milliseconds;
   * undefined for a Postbox token, which does not expire.
   */
  expiresAt?: number;
}

/** Who is making a call. */
export type Actor =
  /** Open mode: anyone may act as anyone, as in the seed. */
  | { kind: 'anyone' }
  /** Token or JWT mode: a bearer token that acts as exactly one user. */
  | UserActor
  /** The holder of `POSTBOX_ADMIN_TOKEN`: manages users, reads no one's messages. */
  | { kind: 'admin' };

/** The actor of every call in open mode. */
export const ANYONE: Actor = Object.freeze({ kind: 'anyone' });

/**
 * Whoever holds the store itself (the `postbox users` commands, which open the database
 * directly): the admin's rights over accounts, and no more. An actor like any other, so
 * those commands pass the same access checks as the HTTP routes.
 */
export const STORE_HOLDER: Actor = Object.freeze({ kind: 'admin' });

function forbidden(detail: string): AppError {
  return new AppError('forbidden', detail);
}

/** Allows `actor` to read or change the messages addressed to, or sent by, `user`. */
export function assertActsAs(actor: Actor, user: string): void {
  if (actor.kind === 'anyone') return;
  if (actor.kind === 'user' && actor.id === user) return;
  throw forbidden(actor.kind === 'admin'
    ? 'the admin token manages users; it does not read or send messages'
    : `this token acts as "${actor.id}", not "${user}"`);
}

/**
 * The sender of a new message: the given `fromUser` in open mode; in token mode the token's
 * user, whether `fromUser` is omitted or names that same user.
 */
export function senderOf(actor: Actor, fromUser: unknown): string {
  if (actor.kind === 'user' && (fromUser === undefined || fromUser === null)) return actor.id;
  const from = toUserId(fromUser, 'fromUser');
  assertActsAs(actor, from);
  return from;
}

/**
 * Allows `actor` to see or delete `message`: its sender or its recipient. Anyone else gets
 * the very 404 of a message that does not exist, so that probing ids reveals nothing.
 */
export function assertParty(actor: Actor, message: Message): void {
  if (actor.kind === 'anyone') return;
  if (actor.kind === 'user' && (actor.id === message.fromUser || actor.id === message.toUser)) return;
  throw noSuchMessage(message.id);
}

/** The answer for a message id that does not exist, or that the caller may not see. */
export function noSuchMessage(id: string): AppError {
  return new AppError('not_found', `no message with id "${id}"`);
}

/** Allows only the admin. */
export function assertAdmin(actor: Actor): void {
  if (actor.kind !== 'admin') throw forbidden('only the admin token may make this call (it manages users or webhooks)');
}

/** Allows the admin, or a token acting as `user` (to manage its own tokens). */
export function assertAdminOrSelf(actor: Actor, user: string): void {
  if (actor.kind === 'admin') return;
  if (actor.kind === 'user' && actor.id === user) return;
  throw forbidden(actor.kind === 'anyone'
    ? 'in open mode a user\'s tokens are managed only with the admin token (Authorization: Bearer <POSTBOX_ADMIN_TOKEN>)'
    : `this token acts as "${actor.id}", not "${user}"`);
}

/**
 * Scopes from a request (`{"scopes": [...]}`) or a JWT `scope` claim (space-separated, or an
 * array). A request must name only known scopes, at least one; a JWT may carry other
 * applications' scopes too, which are ignored. Answers them deduplicated, widest first.
 */
export function toScopes(value: unknown, field: string, strict: boolean): Scope[] {
  const list = typeof value === 'string' && !strict ? value.split(' ').filter(Boolean) : value;
  if (!Array.isArray(list) || list.some((v) => typeof v !== 'string')) {
    throw invalid(field, strict ? 'must be a list of scopes (full, send, read)' : 'must be a space-separated string or a list of strings');
  }
  const known = SCOPES.filter((s) => (list as string[]).includes(s));
  if (strict) {
    const unknown = (list as string[]).filter((s) => !(SCOPES as readonly string[]).includes(s));
    if (unknown.length > 0) throw invalid(field, `has "${unknown[0]}", which is not a scope (full, send, read)`);
    if (known.length === 0) throw invalid(field, 'must name at least one scope (full, send, read)');
  }
  return known;
}

/** Whether a token with `scopes` may make a call that needs `need`. */
export function allows(scopes: readonly Scope[], need: Scope): boolean {
  return scopes.includes('full') || scopes.includes(need);
}

/** Allows a call needing `need` for every actor but a user token whose scopes lack it. */
export function assertScope(actor: Actor, need: Scope): void {
  if (actor.kind !== 'user' || allows(actor.scopes, need)) return;
  throw forbidden(`this token has scope ${actor.scopes.join(' ')}; this call needs ${need === 'full' ? 'a full token' : `scope ${need}`}`);
}
