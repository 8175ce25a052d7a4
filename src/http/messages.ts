/**
 * The v1 message routes: send, read, delete, inbox (with long-poll), sent box,
 * conversations and read state. Each is schema → one domain call → reply.
 */
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import type { MessageService, WireMessagePage } from '../domain/messages.js';
import { pageJson } from '../protocol/wire.js';
import type { App } from './app-types.js';
import {
  ConversationListSchema, ConversationParams, ConversationsQuerySchema, IdempotencyHeaders, InboxQuerySchema,
  MessageIdParam, MessagePageSchema, MessageSchema, NoContent, PageQuerySchema, ReadBody, ReadResultSchema, SendBody, UserParams,
} from './schemas.js';

/**
 * The one serializer of the three page routes (inbox, sent, conversation): the MessagePage
 * document rendered by protocol/wire.ts around the stored JSON texts, concatenated, so no
 * object is built for any message. Fastify's response serializer does not run on a string;
 * test/storage/wire.test.ts holds these bytes to MessagePageSchema instead.
 */
function sendPage(reply: FastifyReply, page: WireMessagePage): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(pageJson(page.rows, page.next));
}

/** An AbortSignal that fires if the client goes away before the answer is sent. */
function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}

/** Registers the v1 message routes. */
export function messageRoutes(app: App, messages: MessageService): void {
  app.post('/v1/messages', {
    config: { access: 'user', scope: 'send' },
    schema: {
      tags: ['messages'],
      summary: 'Send a message',
      headers: IdempotencyHeaders,
      body: SendBody,
      response: { 201: MessageSchema },
    },
  }, async (request, reply) => {
    const { message, replayed } = await messages.send(request.actor, request.body, request.headers['idempotency-key']);
    if (replayed) reply.header('idempotent-replayed', 'true');
    return reply.code(201).header('location', `/v1/messages/${message.id}`).send(message);
  });

  app.get('/v1/messages/:id', {
    config: { access: 'user', scope: 'read' },
    schema: {
      tags: ['messages'],
      summary: 'One message, to its sender or recipient',
      params: Type.Object({ id: MessageIdParam }),
      response: { 200: MessageSchema },
    },
  }, (request) => messages.get(request.actor, request.params.id));

  app.delete('/v1/messages/:id', {
    config: { access: 'user', scope: 'full' },
    schema: {
      tags: ['messages'],
      summary: 'Delete a message for sender and recipient',
      params: Type.Object({ id: MessageIdParam }),
      response: { 204: NoContent('Deleted.') },
    },
  }, async (request, reply) => {
    await messages.delete(request.actor, request.params.id);
    return reply.code(204).send();
  });

  app.get('/v1/users/:user/messages', {
    config: { access: 'user', scope: 'read' },
    schema: {
      tags: ['messages'],
      summary: 'A page of the inbox',
      description: 'after= pages forward, before= (or before=latest) backward; the array is oldest first. ' +
        'wait=N long-polls: answers as soon as a message after the cursor exists, else an empty page after N seconds.',
      params: UserParams,
      querystring: InboxQuerySchema,
      response: { 200: MessagePageSchema },
    },
  }, async (request, reply) => {
    const page = await messages.inbox(request.actor, request.params.user, request.query,
      request.query.wait ? clientGone(reply) : undefined);
    return sendPage(reply, page);
  });

  app.get('/v1/users/:user/sent', {
    config: { access: 'user', scope: 'read' },
    schema: {
      tags: ['messages'],
      summary: 'A page of the messages a user sent',
      params: UserParams,
      querystring: PageQuerySchema,
      response: { 200: MessagePageSchema },
    },
  }, async (request, reply) => sendPage(reply as FastifyReply, await messages.sent(request.actor, request.params.user, request.query)));

  app.get('/v1/users/:user/conversations', {
    config: { access: 'user', scope: 'read' },
    schema: {
      tags: ['conversations'],
      summary: 'A user\'s conversations, most recent first',
      params: UserParams,
      querystring: ConversationsQuerySchema,
      response: { 200: ConversationListSchema },
    },
  }, (request) => messages.conversations(request.actor, request.params.user, request.query));

  app.get('/v1/users/:user/conversations/:peer', {
    config: { access: 'user', scope: 'read' },
    schema: {
      tags: ['conversations'],
      summary: 'Messages between a user and a peer, both directions, chronological',
      params: ConversationParams,
      querystring: PageQuerySchema,
      response: { 200: MessagePageSchema },
    },
  }, async (request, reply) => sendPage(reply as FastifyReply,
    await messages.conversation(request.actor, request.params.user, request.params.peer, request.query)));

  app.post('/v1/users/:user/read', {
    config: { access: 'user', scope: 'read' },
    schema: {
      tags: ['messages'],
      summary: 'Mark messages to the user read',
      params: UserParams,
      body: ReadBody,
      response: { 200: ReadResultSchema },
    },
  }, (request) => messages.markRead(request.actor, request.params.user, request.body));
}
