/**
 * The seed's two endpoints, frozen: every call of the python-class-messaging README works
 * unchanged.
 */
import { Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import type { MessageService, WireRow } from '../domain/messages.js';
import { joinedMessages as joined } from '../protocol/wire.js';
import type { App } from './app-types.js';
import { IdempotencyHeaders, MessageSchema, NoContent, SendBody, UserParams } from './schemas.js';

const JSON_TYPE = 'application/json; charset=utf-8';

/** Registers `POST /post-message` and `GET /get-messages/{user}`. */
export function legacyRoutes(app: App, messages: MessageService): void {
  app.post('/post-message', {
    config: { access: 'user', scope: 'send' },
    schema: {
      tags: ['seed'],
      summary: 'Send a message (seed-compatible)',
      description: 'Takes the message as JSON with any or no Content-Type, or as form fields. ' +
        'Answers 202 with an empty body once the message is durably stored.',
      headers: IdempotencyHeaders,
      body: SendBody,
      response: { 202: NoContent('Stored; Location names the new message.') },
    },
  }, async (request, reply) => {
    const { message } = await messages.send(request.actor, request.body, request.headers['idempotency-key']);
    return reply.code(202).header('location', `/v1/messages/${message.id}`).send();
  });

  app.get('/get-messages/:user', {
    config: { access: 'user', scope: 'read' },
    schema: {
      tags: ['seed'],
      summary: 'All messages to a user, oldest first (seed-compatible)',
      params: UserParams,
      response: { 200: Type.Array(MessageSchema) },
    },
  }, async (request, reply) => {
    const raw = (body: string | Readable) => (reply as FastifyReply).type(JSON_TYPE).send(body);
    const chunks = messages.allInbox(request.actor, request.params.user);
    // Access and validation errors surface on the first read, before anything is sent.
    const first = await chunks.next();
    if (first.done) return raw('[]');
    const second = await chunks.next();
    if (second.done) return raw(`[${joined(first.value)}]`);
    // A large inbox: stream it chunk by chunk, each read only when the client has taken the last.
    async function* body(): AsyncGenerator<string> {
      try {
        yield `[${joined(first.value as readonly WireRow[])}`;
        yield `,${joined(second.value as readonly WireRow[])}`;
        for await (const chunk of chunks) yield `,${joined(chunk)}`;
        yield ']';
      } catch (err) {
        // A read that fails once the 200 is on its way (a damaged row further on) can no
        // longer become a problem document: the stream's error cuts the connection before
        // the chunked body ends, so the client sees a failed answer, never truncated JSON.
        // Logged here as the error handler would have, which never sees it.
        request.log.error({ err }, (err as Error).message);
        throw err;
      }
    }
    return raw(Readable.from(body(), { objectMode: false }));
  });
}
