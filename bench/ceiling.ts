/**
 * The ceiling: what a bare `node:http` server does for the benchmark's requests with the
 * messages in memory. Postbox's figures are read against it, from the same run.
 *
 * It does the work a straightforward server must do for the same answers, and no less:
 * reads the whole body, decodes it as strict UTF-8, parses the JSON (or form fields), applies
 * the contract's rules (user ids of 1–128 characters without "/" or control characters, a
 * message string within 65536 UTF-8 bytes and without NUL), assigns an id and a timestamp,
 * keeps the message in memory (by id, in the recipient's inbox, in both sides' conversation
 * lists), and answers 202 + Location (legacy) or 201 + Location + the Message (v1). Reads
 * serialize the stored Message objects with JSON.stringify on every request, as a simple
 * server would; nothing is cached between requests. It does not persist anything: that,
 * plus a router, schemas, logging and hooks, is the difference Postbox pays for.
 *
 * Not in it (no scenario calls them): auth, idempotency keys, streams, delete, read state.
 *
 * Usage: node --import tsx bench/ceiling.ts --port 8081 [--host 127.0.0.1] [--dataset '<json spec>']
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { datasetMessages, type DatasetMessage, type DatasetSpec } from './lib/dataset.js';

type Message = DatasetMessage;

const MAX_MESSAGE_BYTES = 65536;
/** Postbox's body limit for that message size (src/app.ts: bodyLimitFor). */
const BODY_LIMIT = Math.max(1024 * 1024, MAX_MESSAGE_BYTES * 6 + 16 * 1024);
const DEFAULT_PAGE = 50;
const MAX_PAGE = 500;
// The contract's user id, as src/domain/rules.ts states it.
// eslint-disable-next-line no-control-regex -- rejecting control characters is the rule itself
const USER_ID_RE = /^[^/\u0000-\u001F\u007F-\u009F]{1,128}$/u;
const CURSOR_RE = /^[1-9][0-9]{0,15}$/;
const JSON_TYPE = 'application/json; charset=utf-8';
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A request that cannot be served, with its status and what is wrong. */
class Problem extends Error {
  constructor(readonly status: number, readonly field: string, detail: string) {
    super(detail);
  }
}

function bad(field: string, message: string): Problem {
  return new Problem(400, field, `${field} ${message}`);
}

function toUserId(value: unknown, field: string): string {
  let id: string;
  if (typeof value === 'string') id = value;
  else if (typeof value === 'number' && Number.isFinite(value)) id = String(value);
  else if (value === undefined || value === null) throw bad(field, 'is required');
  else throw bad(field, 'must be a string or a number');
  if (id.length === 0) throw bad(field, 'must not be empty');
  if (!id.isWellFormed()) throw bad(field, 'must be valid Unicode text');
  // The pattern counts code points (the u flag), as the contract's "characters" means.
  if (!USER_ID_RE.test(id)) throw bad(field, 'must be 1 to 128 characters, none of them "/" or a control character');
  return id;
}

function toMessageText(value: unknown): string {
  if (value === undefined || value === null) throw bad('message', 'is required');
  if (typeof value !== 'string') throw bad('message', 'must be a string');
  if (!value.isWellFormed()) throw bad('message', 'must be valid Unicode text');
  if (value.includes('\u0000')) throw bad('message', 'must not contain the NUL character (U+0000)');
  if (value.length * 3 > MAX_MESSAGE_BYTES && Buffer.byteLength(value, 'utf8') > MAX_MESSAGE_BYTES) {
    throw new Problem(413, 'message', `message must be at most ${MAX_MESSAGE_BYTES} UTF-8 bytes`);
  }
  return value;
}

/** A user's received messages, oldest first, with their sequence numbers for paging. */
interface Inbox {
  seqs: number[];
  messages: Message[];
}

interface Conversation {
  peer: string;
  lastSeq: number;
  lastMessage: Message;
  unread: number;
}

/** Everything the server knows, in memory. */
class MemoryStore {
  private nextSeq = 1;
  private readonly byId = new Map<string, Message>();
  private readonly inboxes = new Map<string, Inbox>();
  private readonly conversations = new Map<string, Map<string, Conversation>>();

  add(message: Message): void {
    const seq = Number(message.id);
    this.nextSeq = Math.max(this.nextSeq, seq + 1);
    this.byId.set(message.id, message);
    let inbox = this.inboxes.get(message.toUser);
    if (!inbox) this.inboxes.set(message.toUser, (inbox = { seqs: [], messages: [] }));
    inbox.seqs.push(seq);
    inbox.messages.push(message);
    this.noteConversation(message.toUser, message.fromUser, seq, message, message.readAt === null ? 1 : 0);
    if (message.fromUser !== message.toUser) this.noteConversation(message.fromUser, message.toUser, seq, message, 0);
  }

  send(fromUser: string, toUser: string, text: string): Message {
    const message: Message = {
      id: String(this.nextSeq), fromUser, toUser, message: text, sentAt: new Date().toISOString(), readAt: null,
    };
    this.add(message);
    return message;
  }

  all(user: string): readonly Message[] {
    return this.inboxes.get(user)?.messages ?? [];
  }

  /** The contract's paging over a user's inbox (after= forward, before= backward, else from the oldest). */
  page(user: string, after: number | undefined, before: number | undefined, limit: number): { messages: Message[]; next: string | null } {
    const inbox = this.inboxes.get(user);
    if (!inbox) return { messages: [], next: null };
    const { seqs, messages } = inbox;
    if (after === undefined && before !== undefined) {
      const end = firstAbove(seqs, before - 1);
      const start = Math.max(0, end - limit);
      const page = messages.slice(start, end);
      return { messages: page, next: start > 0 && page.length > 0 ? page[0]!.id : null };
    }
    const start = after === undefined ? 0 : firstAbove(seqs, after);
    let end = start + limit;
    if (before !== undefined) end = Math.min(end, firstAbove(seqs, before - 1));
    const stop = before === undefined ? seqs.length : firstAbove(seqs, before - 1);
    const page = messages.slice(start, end);
    return { messages: page, next: end < stop && page.length > 0 ? page[page.length - 1]!.id : null };
  }

  /** A user's conversations, most recent first; sorted on each call, as a simple server would. */
  conversationList(user: string, limit: number): { conversations: { peer: string; lastMessage: Message; unread: number }[]; next: string | null } {
    const all = [...(this.conversations.get(user)?.values() ?? [])].sort((a, b) => b.lastSeq - a.lastSeq);
    const page = all.slice(0, limit);
    return {
      conversations: page.map((c) => ({ peer: c.peer, lastMessage: c.lastMessage, unread: c.unread })),
      next: all.length > limit && page.length > 0 ? page[page.length - 1]!.lastMessage.id : null,
    };
  }

  private noteConversation(owner: string, peer: string, seq: number, message: Message, unread: number): void {
    let mine = this.conversations.get(owner);
    if (!mine) this.conversations.set(owner, (mine = new Map<string, Conversation>()));
    const c = mine.get(peer);
    if (!c) {
      mine.set(peer, { peer, lastSeq: seq, lastMessage: message, unread });
      return;
    }
    if (seq > c.lastSeq) {
      c.lastSeq = seq;
      c.lastMessage = message;
    }
    c.unread += unread;
  }
}

/** Index of the first element of ascending `seqs` greater than `value`. */
function firstAbove(seqs: readonly number[], value: number): number {
  let lo = 0;
  let hi = seqs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (seqs[mid]! <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Writes a whole answer with its Content-Length, as Fastify does (no chunked encoding). */
function send(res: http.ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  send(res, status, JSON_TYPE, body, headers);
}

function sendProblem(res: http.ServerResponse, p: Problem, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ type: '/problems/benchmark', title: 'Error', status: p.status, detail: p.message, errors: [{ field: p.field, message: p.message }] });
  send(res, p.status, 'application/problem+json; charset=utf-8', body, headers);
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > BODY_LIMIT) {
        reject(new Problem(413, 'body', `the body is larger than the ${BODY_LIMIT}-byte limit`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The body as the send's fields: JSON whatever the label, form fields when labelled so. */
function decodeSend(req: http.IncomingMessage, raw: Buffer): { fromUser: string; toUser: string; message: string } {
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch {
    throw bad('body', 'is not valid UTF-8');
  }
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  let body: unknown;
  if (type === 'application/x-www-form-urlencoded' && !text.trimStart().startsWith('{')) {
    body = Object.fromEntries(new URLSearchParams(text));
  } else {
    try {
      body = JSON.parse(text) as unknown;
    } catch {
      throw bad('body', 'is not valid JSON');
    }
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('body', 'must be a JSON object');
  const fields = body as Record<string, unknown>;
  return {
    fromUser: toUserId(fields.fromUser, 'fromUser'),
    toUser: toUserId(fields.toUser, 'toUser'),
    message: toMessageText(fields.message),
  };
}

function userFromPath(segment: string): string {
  let user: string;
  try {
    user = decodeURIComponent(segment);
  } catch {
    throw bad('user', 'is not valid percent-encoded UTF-8');
  }
  return toUserId(user, 'user');
}

function limitOf(params: URLSearchParams): number {
  const raw = params.get('limit');
  if (raw === null) return DEFAULT_PAGE;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > MAX_PAGE) throw bad('limit', `must be a whole number from 1 to ${MAX_PAGE}`);
  return n;
}

function cursorOf(params: URLSearchParams, name: 'after' | 'before'): number | undefined {
  const raw = params.get(name);
  if (raw === null) return undefined;
  if (name === 'before' && raw === 'latest') return Infinity;
  if (!CURSOR_RE.test(raw)) throw bad(name, 'must be a message id');
  return Number(raw);
}

async function handle(store: MemoryStore, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
  const parts = path.split('/');

  if (path === '/post-message' || path === '/v1/messages') {
    if (req.method !== 'POST') return sendProblem(res, new Problem(405, 'method', 'method not allowed'), { allow: 'POST' });
    const fields = decodeSend(req, await readBody(req));
    const message = store.send(fields.fromUser, fields.toUser, fields.message);
    const location = `/v1/messages/${message.id}`;
    if (path === '/post-message') {
      res.writeHead(202, { location, 'content-length': 0 });
      res.end();
    } else {
      sendJson(res, 201, JSON.stringify(message), { location });
    }
    return;
  }
  if (req.method !== 'GET') return sendProblem(res, new Problem(405, 'method', 'method not allowed'), { allow: 'GET' });
  if (parts.length === 3 && parts[1] === 'get-messages') {
    return sendJson(res, 200, JSON.stringify(store.all(userFromPath(parts[2]!))));
  }
  if (parts.length === 5 && parts[1] === 'v1' && parts[2] === 'users' && parts[4] === 'messages') {
    const user = userFromPath(parts[3]!);
    const page = store.page(user, cursorOf(params, 'after'), cursorOf(params, 'before'), limitOf(params));
    return sendJson(res, 200, JSON.stringify(page));
  }
  if (parts.length === 5 && parts[1] === 'v1' && parts[2] === 'users' && parts[4] === 'conversations') {
    const user = userFromPath(parts[3]!);
    return sendJson(res, 200, JSON.stringify(store.conversationList(user, limitOf(params))));
  }
  if (path === '/healthz') return sendJson(res, 200, '{"status":"ok"}');
  sendProblem(res, new Problem(404, 'url', `no route for ${path}`));
}

function main(): void {
  const { values } = parseArgs({
    options: { port: { type: 'string', default: '8081' }, host: { type: 'string', default: '127.0.0.1' }, dataset: { type: 'string' } },
  });
  const store = new MemoryStore();
  if (values.dataset) {
    for (const m of datasetMessages(JSON.parse(values.dataset) as DatasetSpec)) store.add(m);
  }
  const server = http.createServer((req, res) => {
    handle(store, req, res).catch((err: unknown) => {
      if (err instanceof Problem) sendProblem(res, err);
      else sendProblem(res, new Problem(500, 'server', 'internal error'));
    });
  });
  // Fastify's default, so idle keep-alive connections live as long on both targets.
  server.keepAliveTimeout = 72_000;
  server.listen(Number(values.port), values.host, () => {
    process.stdout.write(`ceiling listening on http://${values.host}:${values.port}\n`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
