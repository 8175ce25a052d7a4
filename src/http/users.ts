/**
 * Users and tokens: the admin creates, lists and removes users; a user (or the admin)
 * issues and revokes that user's tokens.
 */
import { Type } from 'typebox';
import type { UserService } from '../domain/users.js';
import type { App } from './app-types.js';
import { NoContent, UserId, UserParams } from './schemas.js';

const CreatedUserSchema = Type.Object({
  id: Type.String(),
  token: Type.String({ description: 'The bearer token, shown only in this answer.' }),
}, { title: 'CreatedUser' });

const UserListSchema = Type.Object({
  users: Type.Array(Type.Object({ id: Type.String(), createdAt: Type.String({ format: 'date-time' }) }, { title: 'User' })),
}, { title: 'UserList' });

/** Registers the user and token routes. */
export function userRoutes(app: App, users: UserService): void {
  app.post('/v1/users', {
    config: { access: 'admin' },
    schema: {
      tags: ['users'],
      summary: 'Create a user and its first token (admin)',
      body: Type.Object({ id: Type.Union([UserId, Type.Number()]) }, { title: 'NewUser' }),
      response: { 201: CreatedUserSchema },
    },
  }, async (request, reply) => {
    const created = await users.create(request.actor, request.body.id);
    return reply.code(201).header('location', `/v1/users/${encodeURIComponent(created.id)}`).send(created);
  });

  app.get('/v1/users', {
    config: { access: 'admin' },
    schema: { tags: ['users'], summary: 'List users (admin)', response: { 200: UserListSchema } },
  }, async (request) => ({ users: await users.list(request.actor) }));

  app.delete('/v1/users/:user', {
    config: { access: 'admin' },
    schema: {
      tags: ['users'],
      summary: 'Remove a user: its tokens stop working and its streams end (admin)',
      description: 'Without purge the user\'s messages stay and its id stays reserved: creating it again is a 409, ' +
        'so no one inherits them. With purge=true every message to or from the user is deleted and the id is free.',
      params: UserParams,
      querystring: Type.Object({
        purge: Type.Optional(Type.Boolean({ description: 'Also delete every message to or from the user, and free the id.' })),
      }),
      response: { 204: NoContent('Removed.') },
    },
  }, async (request, reply) => {
    await users.remove(request.actor, request.params.user, { purge: request.query.purge === true });
    return reply.code(204).send();
  });

  app.post('/v1/users/:user/tokens', {
    config: { access: 'user', scope: 'full' },
    schema: {
      tags: ['users'],
      summary: 'Issue another token for a user (that user or the admin), optionally narrowed to scopes',
      description: 'Scopes: `send` (send as the user, nothing else: a bot or a device), `read` (inbox, sent, ' +
        'conversations, stream, mark read: a dashboard), `full` (everything the user may do; the default).',
      params: UserParams,
      body: Type.Object({
        scopes: Type.Optional(Type.Array(Type.String({ enum: ['full', 'send', 'read'] }), { minItems: 1 })),
      }, { title: 'NewTokenRequest', description: 'Optional: no body is a full token.' }),
      response: {
        201: Type.Object({
          token: Type.String({ description: 'The bearer token, shown only in this answer.' }),
          scopes: Type.Array(Type.String()),
        }, { title: 'NewToken' }),
      },
    },
    // No body at all (as before scopes existed) asks for a full token.
    preValidation: (request, _reply, done) => {
      request.body ??= {};
      done();
    },
  }, async (request, reply) => reply.code(201).send(await users.addToken(request.actor, request.params.user, request.body.scopes)));

  app.delete('/v1/users/:user/tokens', {
    config: { access: 'user', scope: 'full' },
    schema: {
      tags: ['users'],
      summary: 'Revoke every token of a user; their streams end (that user or the admin)',
      params: UserParams,
      response: { 204: NoContent('Revoked.') },
    },
  }, async (request, reply) => {
    await users.revokeTokens(request.actor, request.params.user);
    return reply.code(204).send();
  });
}
