/**
 * `GET /v1/users/{user}/stream`: the inbox as server-sent events, resuming after `?after=`
 * or the `Last-Event-ID` an EventSource sends when it reconnects.
 */
import { Type } from 'typebox';
import type { MessageService } from '../domain/messages.js';
import type { UserService } from '../domain/users.js';
import { toCursor } from '../domain/rules.js';
import type { StreamRegistry } from '../realtime/streams.js';
import type { App } from './app-types.js';
import { bearerToken } from './auth.js';
import { Cursor, UserParams } from './schemas.js';

/** Registers the stream route. */
export function streamRoutes(app: App, messages: MessageService, users: UserService, streams: StreamRegistry): void {
  app.get('/v1/users/:user/stream', {
    config: { access: 'user', scope: 'read' },
    schema: {
      tags: ['stream'],
      summary: 'The inbox as a live event stream',
      description: 'text/event-stream. Each new message is an event `message` whose id is the message id and whose ' +
        'data is the Message. Resuming (after= or Last-Event-ID) first replays what was missed, then goes live, with ' +
        'no gap and no duplicate. `deleted` ({id}) and `read` ({ids, readAt}) keep a screen consistent; `end` ' +
        '({reason}) says the stream will not resume (user removed, token revoked). Comment heartbeats keep idle ' +
        'connections open. A client that stops reading is disconnected and resumes by id.',
      params: UserParams,
      querystring: Type.Object({ after: Type.Optional(Cursor) }),
      headers: Type.Object({
        'last-event-id': Type.Optional(Type.String({ description: 'Sent by EventSource on reconnect; wins over after=.' })),
      }),
      response: {
        200: {
          description: 'The event stream.',
          content: { 'text/event-stream': { schema: { type: 'string' } } },
        },
      },
    },
  }, (request, reply) => {
    const user = messages.inboxOwner(request.actor, request.params.user);
    const lastEventId = request.headers['last-event-id'];
    const after = lastEventId !== undefined && lastEventId !== ''
      ? String(toCursor(lastEventId, 'Last-Event-ID'))
      : request.query.after;
    streams.admit(user);
    const token = bearerToken(request);
    const actor = request.actor;
    // From here the response is ours: Fastify neither serializes nor ends it.
    reply.hijack();
    streams.start({
      user,
      actor: request.actor,
      after,
      readPage: (params) => messages.inbox(request.actor, user, params),
      // A Postbox token can be revoked, so each heartbeat asks again; a JWT cannot, but
      // expires: the stream ends then with `end` {"reason":"token expired"}.
      ...(actor.kind === 'user' && token && actor.expiresAt === undefined
        ? { stillAuthorized: async () => (await users.authenticate(token))?.kind === 'user' }
        : {}),
      ...(actor.kind === 'user' && actor.expiresAt !== undefined ? { endsAt: actor.expiresAt } : {}),
      response: reply.raw,
    });
  });
}
