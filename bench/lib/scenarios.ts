/**
 * What the benchmark measures: each scenario is one request shape, repeated by wrk, over a
 * store prefilled with what that request reads; or, for the chat mix, a send and then a read
 * of what it changed.
 */
import type { DatasetSpec } from './dataset.js';

/**
 * The read that follows each answered send in a mix: `path` with `{user}` standing for the
 * send's recipient.
 */
export interface FollowUpRead {
  path: string;
  /** The status every read must answer. */
  status: number;
  /** How many messages each read holds (the dataset gives every recipient at least this many). */
  items: number;
}

/** One benchmark scenario. */
export interface Scenario {
  name: string;
  title: string;
  method: 'GET' | 'POST';
  path: string;
  /** The stored messages before it starts. */
  dataset: DatasetSpec;
  /** The status every answer must have. */
  status: number;
  /** For reads: how many messages (or conversations) one answer must hold, checked before measuring. */
  items?: number;
  /** Part of the default set; the others run with --store-size or by name. */
  group: 'main' | 'store-size';
  /** Makes the scenario a mix: each answered send (method, path) is followed by this read. */
  followUp?: FollowUpRead;
}

/**
 * The main scenarios' data: one store that holds an inbox of 20, one of 1,000, a reader
 * with 200 (paged 50 at a time) and a user with 200 conversations, among 10,000 messages.
 */
const MAIN: DatasetSpec = {
  total: 10_000,
  inboxes: { inbox20: 20, inbox1000: 1000, reader: 200 },
  conversations: { user: 'popular', peers: 200 },
};

/** How many recipients the wrk script's sends spread over (recipient0…recipient99). */
const RECIPIENTS = 100;

/**
 * The chat mix's data: every recipient the sends go to already has 30 messages, so each read
 * of a newest page of 20 is a full page with a `next` cursor from the first request on, as
 * in a chat that has history. A store of its own, so the other scenarios' data stays as it was.
 */
const CHAT: DatasetSpec = {
  total: 10_000,
  inboxes: Object.fromEntries(Array.from({ length: RECIPIENTS }, (_, i) => [`recipient${i}`, 30])),
};

/** A store of `total` messages with a reader of 200 among them, for the growth scenarios. */
function sized(total: number): DatasetSpec {
  return { total, inboxes: { reader: 200 } };
}

function storeSize(label: string, total: number): Scenario[] {
  return [
    {
      name: `legacy-post@${label}`, title: `legacy post, ${total.toLocaleString('en-US')} stored messages`,
      method: 'POST', path: '/post-message', dataset: sized(total), status: 202, group: 'store-size',
    },
    {
      name: `inbox-50@${label}`, title: `inbox page of 50, ${total.toLocaleString('en-US')} stored messages`,
      method: 'GET', path: '/v1/users/reader/messages?limit=50', dataset: sized(total), status: 200, items: 50, group: 'store-size',
    },
  ];
}

/** Every scenario, in the order they run. */
export const SCENARIOS: readonly Scenario[] = [
  { name: 'legacy-post', title: 'legacy post (POST /post-message)', method: 'POST', path: '/post-message', dataset: MAIN, status: 202, group: 'main' },
  { name: 'v1-post', title: 'v1 post (POST /v1/messages)', method: 'POST', path: '/v1/messages', dataset: MAIN, status: 201, group: 'main' },
  { name: 'get-20', title: 'legacy get of 20 (GET /get-messages/{user})', method: 'GET', path: '/get-messages/inbox20', dataset: MAIN, status: 200, items: 20, group: 'main' },
  { name: 'get-1000', title: 'legacy get of 1,000 (GET /get-messages/{user})', method: 'GET', path: '/get-messages/inbox1000', dataset: MAIN, status: 200, items: 1000, group: 'main' },
  { name: 'inbox-50', title: 'inbox page of 50 (GET /v1/users/{user}/messages?limit=50)', method: 'GET', path: '/v1/users/reader/messages?limit=50', dataset: MAIN, status: 200, items: 50, group: 'main' },
  { name: 'conversations', title: 'conversation list (GET /v1/users/{user}/conversations)', method: 'GET', path: '/v1/users/popular/conversations', dataset: MAIN, status: 200, items: 50, group: 'main' },
  {
    name: 'chat-mix', title: 'chat mix (POST /v1/messages, then GET the recipient\'s newest 20)',
    method: 'POST', path: '/v1/messages', dataset: CHAT, status: 201, group: 'main',
    followUp: { path: '/v1/users/{user}/messages?before=latest&limit=20', status: 200, items: 20 },
  },
  ...storeSize('1k', 1000),
  ...storeSize('1M', 1_000_000),
];

/** A scenario by name, or undefined. */
export function scenarioNamed(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}

/** How many items a read's JSON answer holds: array length, page's messages, or conversations. */
export function itemsIn(body: unknown): number {
  if (Array.isArray(body)) return body.length;
  if (body && typeof body === 'object') {
    const o = body as Record<string, unknown>;
    if (Array.isArray(o.messages)) return o.messages.length;
    if (Array.isArray(o.conversations)) return o.conversations.length;
  }
  return -1;
}
