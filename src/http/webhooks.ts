/**
 * Webhook endpoints (admin): create (the secret is shown once), list, show, change, remove,
 * and each endpoint's deliveries, with a redelivery on demand.
 */
import { Type } from 'typebox';
import type { WebhookService } from '../domain/webhooks.js';
import { WEBHOOK_EVENTS } from '../protocol/webhooks.js';
import type { App } from './app-types.js';
import { NoContent } from './schemas.js';

const EventType = Type.String({ enum: [...WEBHOOK_EVENTS] });

const WebhookFields = {
  id: Type.String(),
  url: Type.String({ format: 'uri' }),
  events: Type.Array(EventType),
  description: Type.Union([Type.String(), Type.Null()]),
  enabled: Type.Boolean({ description: 'False once every call failed for 24 hours (or the admin switched it off).' }),
  disabledReason: Type.Union([Type.String(), Type.Null()], { description: 'Why it is disabled.' }),
  failingSince: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'Since when every call has failed.' }),
  createdAt: Type.String({ format: 'date-time' }),
};

const WebhookSchema = Type.Object(WebhookFields, { title: 'Webhook' });

const CreatedWebhookSchema = Type.Object({
  ...WebhookFields,
  secret: Type.String({ description: 'The signing secret (whsec_…), shown only in this answer.' }),
}, { title: 'CreatedWebhook' });

const DeliverySchema = Type.Object({
  id: Type.String({ description: 'Also the webhook-id header (msg_<id>), the same on every attempt.' }),
  type: EventType,
  status: Type.String({ enum: ['pending', 'delivered', 'failed'] }),
  attempts: Type.Integer(),
  createdAt: Type.String({ format: 'date-time' }),
  nextAttemptAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  lastAttemptAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  lastStatus: Type.Union([Type.Integer(), Type.Null()], { description: 'The HTTP status of the latest attempt.' }),
  lastError: Type.Union([Type.String(), Type.Null()]),
  history: Type.Array(Type.Object({
    at: Type.String({ format: 'date-time' }),
    httpStatus: Type.Union([Type.Integer(), Type.Null()], { description: 'The HTTP status that came back, or null if none did.' }),
    error: Type.Union([Type.String(), Type.Null()], { description: 'Why it failed; null if it was delivered.' }),
  }, { title: 'WebhookAttempt' }), { description: 'Its attempts, oldest first: the last 20 (attempts counts them all).' }),
}, { title: 'WebhookDelivery' });

const WebhookParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const DeliveryParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64 }),
  deliveryId: Type.String({ pattern: '^[1-9][0-9]{0,14}$', 'x-error': 'must be a delivery id' }),
});

const Url = Type.String({ description: 'Where to POST events: http(s); private addresses only with POSTBOX_WEBHOOK_ALLOW_PRIVATE=true.' });
const Events = Type.Array(EventType, { minItems: 1 });
const Description = Type.Union([Type.String({ maxLength: 500 }), Type.Null()]);

/** Registers the webhook routes. */
export function webhookRoutes(app: App, webhooks: WebhookService): void {
  app.post('/v1/webhooks', {
    config: { access: 'admin' },
    schema: {
      tags: ['webhooks'],
      summary: 'Create a webhook endpoint; its signing secret is shown only in this answer (admin)',
      body: Type.Object({ url: Url, events: Events, description: Type.Optional(Description) }, { title: 'NewWebhook' }),
      response: { 201: CreatedWebhookSchema },
    },
  }, async (request, reply) => {
    const created = await webhooks.create(request.actor, request.body);
    return reply.code(201).header('location', `/v1/webhooks/${created.id}`).send(created);
  });

  app.get('/v1/webhooks', {
    config: { access: 'admin' },
    schema: { tags: ['webhooks'], summary: 'List webhook endpoints (admin)', response: { 200: Type.Object({ webhooks: Type.Array(WebhookSchema) }, { title: 'WebhookList' }) } },
  }, async (request) => ({ webhooks: await webhooks.list(request.actor) }));

  app.get('/v1/webhooks/:id', {
    config: { access: 'admin' },
    schema: { tags: ['webhooks'], summary: 'Show a webhook endpoint (admin)', params: WebhookParams, response: { 200: WebhookSchema } },
  }, (request) => webhooks.get(request.actor, request.params.id));

  app.patch('/v1/webhooks/:id', {
    config: { access: 'admin' },
    schema: {
      tags: ['webhooks'],
      summary: 'Change a webhook endpoint; enabled: true turns a disabled one back on (admin)',
      params: WebhookParams,
      body: Type.Object({
        url: Type.Optional(Url), events: Type.Optional(Events), description: Type.Optional(Description), enabled: Type.Optional(Type.Boolean()),
      }, { title: 'WebhookChange' }),
      response: { 200: WebhookSchema },
    },
  }, (request) => webhooks.update(request.actor, request.params.id, request.body));

  app.delete('/v1/webhooks/:id', {
    config: { access: 'admin' },
    schema: { tags: ['webhooks'], summary: 'Remove a webhook endpoint and its deliveries (admin)', params: WebhookParams, response: { 204: NoContent('Removed.') } },
  }, async (request, reply) => {
    await webhooks.remove(request.actor, request.params.id);
    return reply.code(204).send();
  });

  app.get('/v1/webhooks/:id/deliveries', {
    config: { access: 'admin' },
    schema: {
      tags: ['webhooks'],
      summary: 'An endpoint\'s deliveries, newest first, each with its latest attempt (admin)',
      params: WebhookParams,
      querystring: Type.Object({
        before: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,14}$', 'x-error': 'must be a delivery id' })),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
      }),
      response: {
        200: Type.Object({
          deliveries: Type.Array(DeliverySchema),
          next: Type.Union([Type.String(), Type.Null()], { description: 'Pass as before= for older deliveries.' }),
        }, { title: 'WebhookDeliveryPage' }),
      },
    },
  }, (request) => webhooks.deliveries(request.actor, request.params.id, request.query));

  app.post('/v1/webhooks/:id/deliveries/:deliveryId/retry', {
    config: { access: 'admin' },
    schema: {
      tags: ['webhooks'],
      summary: 'Deliver again, now, whatever became of it (admin)',
      params: DeliveryParams,
      response: { 202: DeliverySchema },
    },
  }, async (request, reply) => reply.code(202).send(await webhooks.retry(request.actor, request.params.id, request.params.deliveryId)));
}
