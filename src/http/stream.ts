/**
 * `GET /v1/users/{user}/stream`: the inbox as server-sent events, resuming after `?after=`
 * or the `Last-Event-ID` an EventSource sends when it reconnects.
 */
import { Type } from 'typebox';
import { EVENT_STREAM_TYPE } from '../protocol/events.js';
import type { StreamRegistry } from '../realtime/streams.js';
import type { App } from './app-types.js';
import { bearerToken } from './auth.js';
import { Cursor, LastEventId, UserParams } from './schemas.js';

/**
 * Headers of a stream beside those every answer gets: a user's messages are never stored by a
 * cache (no-store, as every authenticated answer) and never transformed or buffered on the way.
 */
const EVENT_STREAM_HEADERS = {
  'content-type': EVENT_STREAM_TYPE,
  'cache-control': 'no-store, no-transform',
  connection: 'keep-alive',
  // nginx would otherwise hold events back until its buffer fills.
  'x-accel-buffering': 'no',
};

/** Registers the stream route. */
export function streamRoutes(app: App, streams: StreamRegistry): void {
  app.get('/v1/users/:user/stream', {
    config: { access: 'user', scope: 'read' },
    schema: {
      tags: ['stream'],
      summary: 'The inbox as a live event stream',
      description: 'text/event-stream. Each new message is an event `message` whose id is the message id and whose ' +
        'data is the Message. Resuming (after= or Last-Event-ID) first replays what was missed, then goes live, with ' +
        'no gap and no duplicate. `deleted` ({id}), `read` ({ids, readAt}) and `receipt` ({ids, readAt, by}: the ' +
        'messages the user sent that `by` has read) keep a screen consistent; `end` ' +
        '({reason}) says the stream will not resume (user removed, token revoked). Comment heartbeats keep idle ' +
        'connections open. A client that stops reading is disconnected and resumes by id. With `sent=true` the ' +
        'stream also carries each message the user sends to someone else as an event `sent` (same id sequence, same ' +
        'data), so another tab or device of the same user sees it live.',
      params: UserParams,
      querystring: Type.Object({
        after: Type.Optional(Cursor),
        sent: Type.Optional(Type.Boolean({
          description: 'Also carry the messages the user sends (from any tab, device or client) as events `sent`, ' +
            'and `deleted` for them; resuming replays received and sent messages in id order.',
        })),
      }),
      headers: Type.Object({
        'last-event-id': Type.Optional(LastEventId),
      }),
      response: {
        200: {
          description: 'The event stream.',
          content: { 'text/event-stream': { schema: { type: 'string' } } },
        },
      },
    },
  }, (request, reply) => {
    const body = streams.start({
      actor: request.actor,
      user: request.params.user,
      after: request.query.after,
      lastEventId: request.headers['last-event-id'],
      token: bearerToken(request),
      sent: request.query.sent,
    });
    // A HEAD answer ends at its headers: a stream behind it would live on, unread.
    if (request.method === 'HEAD') body.destroy();
    // A byte stream: Fastify pipes it as it is (the response schema only documents it), and
    // the typed reply, which expects the documented string, is told so.
    void reply.headers(EVENT_STREAM_HEADERS).send(body as unknown as string);
  });
}
