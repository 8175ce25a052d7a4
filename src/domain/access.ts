/**
 * Who may do what: the contract's Access section as plain functions over an {@link Actor}.
 *
 * The HTTP layer only works out who is calling; every decision about whose data that
 * caller may touch is made here, so the same rules hold for every route and every client.
 */
import { AppError } from '../errors.js';
import type { Message } from '../protocol/types.js';
import { toUserId } from './rules.js';

/** Who is making a call. */
export type Actor =
  /** Open mode: anyone may act as anyone, as in the seed. */
  | { kind: 'anyone' }
  /** Token mode: a bearer token that acts as exactly one user. */
  | { kind: 'user'; id: string }
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
  if (actor.kind !== 'admin') throw forbidden('only the admin token may manage users');
}

/** Allows the admin, or a token acting as `user` (to manage its own tokens). */
export function assertAdminOrSelf(actor: Actor, user: string): void {
  if (actor.kind === 'admin') return;
  if (actor.kind === 'user' && actor.id === user) return;
  throw forbidden(actor.kind === 'anyone'
    ? 'in open mode a user\'s tokens are managed only with the admin token (Authorization: Bearer <POSTBOX_ADMIN_TOKEN>)'
    : `this token acts as "${actor.id}", not "${user}"`);
}
