/**
 * Works out who is calling, before the body is read, and enforces each route's declared
 * {@link Access}. Whose data that caller may touch is the domain's decision.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Access } from './route-table.js';
import { ANYONE, assertScope, type Actor } from '../domain/access.js';
import type { UserService } from '../domain/users.js';
import { AppError } from '../errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling; set for every route that is not public. */
    actor: Actor;
  }
}

/** The bearer token of a request, if it carries one. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return m ? m[1] : '';
}

function unauthorized(detail: string): AppError {
  return new AppError('unauthorized', detail, { headers: { 'WWW-Authenticate': 'Bearer realm="postbox"' } });
}

/** Registers the hook that sets `request.actor` and applies route access rules. */
export function registerAuth(app: FastifyInstance, users: UserService, mode: 'open' | 'token' | 'jwt'): void {
  app.decorateRequest<Actor | null>('actor', null);
  // A callback hook, not an async one: the common cases (public routes, open mode) settle at
  // once, and only a token that must be looked up waits for storage.
  app.addHook('onRequest', (request, _reply, done) => {
    const access = request.routeOptions.config.access ?? 'public';
    if (access === 'public') {
      request.actor = ANYONE;
      return done();
    }
    const token = bearerToken(request);
    if (token === undefined && mode === 'open' && access === 'user') {
      request.actor = ANYONE;
      return done();
    }
    identify(users, request, access, token).then(() => done(), done);
  });
}

/** Looks the token up and sets `request.actor`, or throws the 401/403 the route calls for. */
async function identify(users: UserService, request: FastifyRequest, access: Access, token: string | undefined): Promise<void> {
  const actor = await users.authenticate(token);
  if (actor === null) {
    throw unauthorized(token === undefined
      ? 'this server runs in token mode: send Authorization: Bearer <token>'
      : 'the bearer token is not valid (revoked, mistyped, or for another server)');
  }
  if (access === 'admin' && actor.kind !== 'admin') {
    if (token === undefined || token === '') throw unauthorized('this call needs the admin token: send Authorization: Bearer <POSTBOX_ADMIN_TOKEN>');
    throw new AppError('forbidden', 'only the admin token may make this call (it manages users or webhooks)');
  }
  const scope = request.routeOptions.config.scope;
  if (scope) assertScope(actor, scope);
  request.actor = actor;
}
