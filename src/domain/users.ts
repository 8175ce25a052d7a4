/**
 * Users and their bearer tokens, and telling who a caller is.
 *
 * A token is `pbx_` and 256 random bits; storage keeps only its SHA-256, so a copy of the
 * database grants nothing. Looking a token up by its hash leaks nothing useful through
 * timing (an attacker cannot steer the hash); the admin token, held in memory, is compared
 * in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { AppError } from '../errors.js';
import type { CreatedUser, User } from '../protocol/types.js';
import type { Storage, StoreEvent, UserStatus } from '../storage/storage.js';
import { ANYONE, assertAdmin, assertAdminOrSelf, SCOPES, toScopes, type Actor, type Scope } from './access.js';
import { JwtVerifier, refused } from './jwt.js';
import { exactIdProblem, toUserId } from './rules.js';

/** The recognisable start of every Postbox token. */
export const TOKEN_PREFIX = 'pbx_';

/** A fresh token: the prefix and 32 random bytes, base64url. */
export function newToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

/** How a token is kept at rest. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** How many ids an instance remembers as users ({@link KnownUsers}). */
export const KNOWN_USERS_MAX = 10_000;
/**
 * How long an id is remembered as a user. Removals this instance makes, or hears of (every
 * PostgreSQL instance hears every other's through the change feed), forget the id at once;
 * this bounds only what no instance hears: `postbox users remove` run beside a SQLite server.
 */
export const KNOWN_USER_TTL_MS = 30_000;

/**
 * Ids known to be users (not removed): a bounded, least-recently-added set with an expiry,
 * so that a JWT user's requests, and sends to a user, cost no storage round-trip after the
 * first. Not a source of truth: a miss asks storage.
 */
export class KnownUsers {
  private readonly expiry = new Map<string, number>();
  /** Counts forgets, so a lookup that raced a removal does not remember a stale answer. */
  private forgets = 0;

  constructor(private readonly max = KNOWN_USERS_MAX, private readonly ttlMs = KNOWN_USER_TTL_MS) {}

  /** The current forget count, to hand back to {@link add}. */
  get generation(): number {
    return this.forgets;
  }

  /** Whether `id` is remembered as a user and its entry has not expired by `now`. */
  has(id: string, now: number): boolean {
    const until = this.expiry.get(id);
    if (until === undefined) return false;
    if (until > now) return true;
    this.expiry.delete(id);
    return false;
  }

  /** Remembers `id`, unless something was forgotten since `generation` was read. */
  add(id: string, now: number, generation: number): void {
    if (generation !== this.forgets) return;
    this.expiry.delete(id);
    this.expiry.set(id, now + this.ttlMs);
    if (this.expiry.size > this.max) this.expiry.delete(this.expiry.keys().next().value!);
  }

  /** Drops `id` (its user was removed). */
  forget(id: string): void {
    this.forgets++;
    this.expiry.delete(id);
  }

  /** Drops every id (removals may have been missed). */
  clear(): void {
    this.forgets++;
    this.expiry.clear();
  }

  /** How many ids are remembered, expired ones not yet dropped included. */
  get size(): number {
    return this.expiry.size;
  }
}

/** Account operations, and authentication of bearer tokens. */
export class UserService {
  private readonly adminDigest: Buffer | undefined;
  private readonly known = new KnownUsers();
  private readonly clock: () => number;

  /**
   * @param options how callers are told apart ({@link authenticate}); without them, as for
   *   the `postbox users` commands that act as `STORE_HOLDER` (access.ts), no token authenticates.
   */
  constructor(
    private readonly storage: Storage,
    private readonly options?: {
      mode: 'open' | 'token' | 'jwt';
      adminToken: string | undefined;
      jwt?: JwtVerifier | undefined;
      /** Epoch ms, for the expiry of {@link KnownUsers}; default Date.now. */
      clock?: (() => number) | undefined;
    },
  ) {
    this.adminDigest = options?.adminToken === undefined ? undefined : digest(options.adminToken);
    this.clock = options?.clock ?? Date.now;
  }

  /**
   * Forgets known users as storage reports their removal: this instance's, and on
   * PostgreSQL every other instance's (the change feed; after a gap in it, `resync`
   * forgets everyone). Returns the unsubscription.
   */
  watchRemovals(): () => void {
    return this.storage.onEvents((events: readonly StoreEvent[]) => {
      for (const e of events) {
        if (e.type === 'user-removed') this.known.forget(e.user);
        else if (e.type === 'resync') this.known.clear();
      }
    });
  }

  /**
   * Who a bearer token makes the caller: the admin, a user (token mode), or in open mode
   * anyone. Answers null for a token that is missing or unknown where one is needed.
   */
  async authenticate(token: string | undefined): Promise<Actor | null> {
    if (token !== undefined && this.adminDigest && timingSafeEqual(digest(token), this.adminDigest)) {
      return { kind: 'admin' };
    }
    if (!this.options) return null;
    if (this.options.mode === 'open') return ANYONE;
    if (token === undefined) return null;
    if (token.startsWith(TOKEN_PREFIX)) {
      const owner = await this.storage.tokenOwner(hashToken(token));
      return owner === null ? null : { kind: 'user', id: owner.user, scopes: owner.scopes.split(' ') as Scope[] };
    }
    // The application's own JWT (jwt mode); a refused one throws the 401 that says why.
    if (this.options.jwt && JwtVerifier.looksLikeJwt(token)) {
      const actor = await this.options.jwt.verify(token);
      await this.admit(actor.id);
      return actor;
    }
    return null;
  }

  /**
   * Makes the user a JWT names part of the user model: the first request creates its record
   * (and `user.created`, as POST /v1/users does, without a token), so the admin lists,
   * removes, purges and issues tokens for it like any user. A removed user's reserved id is
   * refused: whoever signs in as it would read the removed user's messages.
   */
  private async admit(id: string): Promise<void> {
    const now = this.clock();
    if (this.known.has(id, now)) return;
    const generation = this.known.generation;
    let status: UserStatus = await this.storage.userStatus(id);
    // A create that loses a race (another request or instance made or removed it) asks again.
    if (status === 'none') status = (await this.storage.createUser(id)) ? 'user' : await this.storage.userStatus(id);
    if (status === 'reserved') {
      throw refused(`user "${id}" was removed; its id stays reserved so that no one inherits its messages (the admin may purge it to free the id)`);
    }
    if (status === 'user') this.known.add(id, now, generation);
  }

  /**
   * Refuses a send to `id` with a 404 `unknown_recipient` when no one may receive as it: in
   * token mode an id that is not a user; in jwt mode only a removed user's reserved id (any
   * other id may yet sign in, and finds its messages waiting).
   */
  async assertRecipient(id: string): Promise<void> {
    // Token mode asks storage every time, as it always has: a removal by the CLI beside a
    // SQLite server is honoured at once. In jwt mode the known set serves, as for sign-in.
    const remember = this.options?.mode === 'jwt';
    const now = this.clock();
    if (remember && this.known.has(id, now)) return;
    const generation = this.known.generation;
    const status = await this.storage.userStatus(id);
    if (status === 'user') {
      if (remember) this.known.add(id, now, generation);
      return;
    }
    if (status === 'reserved') {
      throw new AppError('unknown_recipient', `user "${id}" was removed; it receives no more messages`, {
        errors: [{ field: 'toUser', message: 'is a removed user' }],
      });
    }
    if (this.options?.mode === 'token') {
      throw new AppError('unknown_recipient', `there is no user "${id}" to send to`, {
        errors: [{ field: 'toUser', message: 'is not a user of this server' }],
      });
    }
  }

  /** Creates a user with a first token, shown only in this answer. */
  async create(actor: Actor, id: unknown): Promise<CreatedUser> {
    assertAdmin(actor);
    const user = toUserId(id, 'id');
    const token = newToken();
    if (!(await this.storage.createUser(user, hashToken(token)))) {
      throw new AppError('user_exists',
        `user "${user}" already exists, or was removed: a removed user's id stays reserved so that no one inherits ` +
        'its messages (remove it with ?purge=true to delete them and free the id)',
        { errors: [{ field: 'id', message: 'is taken or reserved' }] });
    }
    return { id: user, token };
  }

  /** Every user. */
  async list(actor: Actor): Promise<User[]> {
    assertAdmin(actor);
    return this.storage.listUsers();
  }

  /**
   * Removes a user: its tokens stop working and its streams end. Its messages stay and its
   * id stays reserved (no one inherits them); with `purge` its messages, sent and received,
   * are deleted and the id is free again.
   */
  async remove(actor: Actor, id: string, options: { purge?: boolean } = {}): Promise<void> {
    assertAdmin(actor);
    const user = toUserId(id, 'user');
    const removed = await this.storage.deleteUser(user, options);
    // At once, not only when the event arrives: the next request of its JWT must be refused.
    this.known.forget(user);
    if (!removed) throw new AppError('not_found', `no user "${user}"`);
  }

  /** Issues another token for a user. */
  async addToken(actor: Actor, id: string, scopes?: unknown): Promise<{ token: string; scopes: Scope[] }> {
    const user = toUserId(id, 'user');
    assertAdminOrSelf(actor, user);
    const granted = scopes === undefined ? ['full' as const] : toScopes(scopes, 'scopes', true);
    // `full` already holds the others; keeping only it makes the stored form canonical.
    const stored = granted.includes('full') ? ['full' as const] : SCOPES.filter((s) => granted.includes(s));
    const token = newToken();
    if (!(await this.storage.addToken(user, hashToken(token), stored.join(' ')))) throw new AppError('not_found', `no user "${user}"`);
    return { token, scopes: stored };
  }

  /** Revokes every token of a user; their streams end. */
  async revokeTokens(actor: Actor, id: string): Promise<void> {
    const user = toUserId(id, 'user');
    assertAdminOrSelf(actor, user);
    await this.storage.revokeTokens(user);
  }
}

/** A stored id that today's rule refuses, and why. */
export interface NonconformingId {
  id: string;
  problem: string;
}

/**
 * The ids in `ids` that today's rule refuses (see docs/API.md, "User id"), at most `limit`
 * of them, each once. For reports only: such ids are never changed or deleted.
 */
export async function nonconformingIds(ids: AsyncIterable<string> | Iterable<string>, limit = 1000): Promise<NonconformingId[]> {
  const seen = new Set<string>();
  const found: NonconformingId[] = [];
  for await (const id of ids) {
    if (seen.has(id)) continue;
    seen.add(id);
    const problem = exactIdProblem(id);
    if (problem !== null) found.push({ id, problem });
    if (found.length >= limit) break;
  }
  return found;
}

/**
 * What an operator is told of stored ids today's rule refuses: what happens to them, so
 * that no one is led to think they still work through the API.
 */
export function nonconformingNotice(count: number): string {
  return `${count} stored user id(s) would be refused by the current id rule (created under an older one). ` +
    'Nothing is changed or deleted: their accounts and messages stay in the store and postbox export carries them, ' +
    'but the API refuses these ids wherever a request names one (a path, a body, a JWT sub), so their inboxes ' +
    'cannot be read or written through it';
}
