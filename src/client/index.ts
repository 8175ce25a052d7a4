/**
 * The Postbox TypeScript client (`postbox/client`): every v1 call, typed from the wire types.
 *
 * It is built on `fetch` and imports nothing but `../protocol/`, so the same files run on
 * Node 20+, in browsers, and in any runtime with a WHATWG `fetch`; it has no dependencies.
 * By job: `types.ts` (what calls take and answer), `errors.ts` (what they reject with),
 * `client.ts` (the calls), `stream.ts` (the event-stream reader and the follow loop).
 */
export * from './types.js';
export { PostboxConnectionError, PostboxError } from './errors.js';
export { DEFAULT_URL, PostboxClient } from './client.js';
export { SseParser, type SseEvent } from './stream.js';
export { verifyWebhook, WebhookVerificationError, WEBHOOK_EVENTS } from '../protocol/webhooks.js';
