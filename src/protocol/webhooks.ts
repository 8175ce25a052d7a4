/**
 * Webhooks on the wire: the shapes of endpoints, deliveries and events, and the one
 * implementation of their Standard Webhooks signature (https://www.standardwebhooks.com):
 * the server signs with it and receivers verify with it (`verifyWebhook`, exported by the
 * client). Web Crypto only, no Node imports, so a browser or an edge runtime can use it too.
 */

/** Every event a webhook can subscribe to. */
export const WEBHOOK_EVENTS = ['message.created', 'message.deleted', 'message.read', 'user.created', 'user.removed'] as const;

/** An event type. */
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];

/** A webhook endpoint as the API shows it (never its secret, after creation). */
export interface Webhook {
  id: string;
  url: string;
  events: WebhookEventType[];
  description: string | null;
  /** False once it failed for 24 hours (or was switched off); `disabledReason` says why. */
  enabled: boolean;
  disabledReason: string | null;
  /** Since when every attempt has failed, or null. */
  failingSince: string | null;
  createdAt: string;
}

/** A new endpoint, with its signing secret, shown only in this answer. */
export interface CreatedWebhook extends Webhook {
  /** `whsec_` and base64: the Standard Webhooks form. */
  secret: string;
}

/** One attempt to deliver an event. */
export interface WebhookAttempt {
  at: string;
  /** The HTTP status that came back, or null if none did. */
  httpStatus: number | null;
  /** Why it failed; null if it was delivered. */
  error: string | null;
}

/** One event on its way to one endpoint, with its attempts. */
export interface WebhookDelivery {
  /** Also the `webhook-id` header, the same on every attempt. */
  id: string;
  type: WebhookEventType;
  /** `pending` (to be tried, or tried again), `delivered`, or `failed` (gave up after 24 hours). */
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  createdAt: string;
  nextAttemptAt: string | null;
  lastAttemptAt: string | null;
  /** The HTTP status of the latest attempt, or null if none came back. */
  lastStatus: number | null;
  lastError: string | null;
  /** Its attempts, oldest first: the last 20 (`attempts` counts them all). */
  history: WebhookAttempt[];
}

/** The body of a webhook call. */
export interface WebhookEvent<T = unknown> {
  type: WebhookEventType;
  /** When the change committed, ISO 8601. */
  timestamp: string;
  data: T;
}

/** The `webhook-id` of a delivery. */
export function webhookMessageId(deliveryId: string): string {
  return `msg_${deliveryId}`;
}

function base64ToBytes(text: string): Uint8Array<ArrayBuffer> {
  const bin = atob(text);
  // Backed by a plain ArrayBuffer, as the DOM's BufferSource (for the browser build) requires.
  const out = new Uint8Array(new ArrayBuffer(bin.length));
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bytesToBase64(bytes: ArrayBuffer): string {
  let bin = '';
  for (const b of new Uint8Array(bytes)) bin += String.fromCharCode(b);
  return btoa(bin);
}

async function hmac(secret: string, content: string): Promise<string> {
  const raw = base64ToBytes(secret.startsWith('whsec_') ? secret.slice(6) : secret);
  const key = await crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return bytesToBase64(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(content)));
}

/**
 * The Standard Webhooks headers for one attempt: the HMAC-SHA256 of
 * `${id}.${timestamp}.${body}` under the secret, as `v1,<base64>`.
 */
export async function signWebhook(secret: string, id: string, timestampSeconds: number, body: string): Promise<Record<string, string>> {
  const signature = await hmac(secret, `${id}.${timestampSeconds}.${body}`);
  return { 'webhook-id': id, 'webhook-timestamp': String(timestampSeconds), 'webhook-signature': `v1,${signature}` };
}

/** Why {@link verifyWebhook} refused a call. */
export class WebhookVerificationError extends Error {
  override name = 'WebhookVerificationError';
}

function header(headers: Record<string, string | string[] | undefined> | { get(name: string): string | null }, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') return (headers as { get(n: string): string | null }).get(name) ?? undefined;
  const v = (headers as Record<string, string | string[] | undefined>)[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Compares two strings in time that depends only on their length. */
function sameText(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * For a receiver: checks a webhook call's signature and age, and answers its event. Pass the
 * body exactly as received (the raw text, not re-serialized JSON) and the request's headers
 * (a plain object, as Node gives them, or a fetch `Headers`). Throws
 * {@link WebhookVerificationError} for a call that is unsigned, signed with another secret,
 * altered, or older (or newer) than `toleranceSeconds` (default 5 minutes), which stops replays.
 */
export async function verifyWebhook<T = unknown>(
  secret: string,
  headers: Record<string, string | string[] | undefined> | { get(name: string): string | null },
  body: string,
  options: { toleranceSeconds?: number; now?: () => number } = {},
): Promise<WebhookEvent<T>> {
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  if (!id || !timestamp || !signatures) throw new WebhookVerificationError('missing webhook-id, webhook-timestamp or webhook-signature');
  const ts = Number(timestamp);
  const now = Math.floor((options.now ?? Date.now)() / 1000);
  if (!/^\d+$/.test(timestamp) || Math.abs(now - ts) > (options.toleranceSeconds ?? 300)) {
    throw new WebhookVerificationError('the webhook-timestamp is too old or too new');
  }
  const expected = await hmac(secret, `${id}.${timestamp}.${body}`);
  // Several signatures may be sent at once while a secret is rotated; any one may match.
  const ok = signatures.split(' ').some((s) => s.startsWith('v1,') && sameText(s.slice(3), expected));
  if (!ok) throw new WebhookVerificationError('no signature matches');
  return JSON.parse(body) as WebhookEvent<T>;
}
