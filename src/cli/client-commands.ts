/**
 * The client commands of `postbox` (send, inbox, sent, conversations, read, delete): thin
 * shells over the TypeScript client, so the command line and programs see one behaviour.
 *
 * A person gets tables sized to the terminal; `--json` gives scripts the wire shapes.
 * Exit codes: 0 done, 1 the call failed (the server said no, or could not be reached),
 * 2 the command line itself is wrong.
 */
import { parseArgs } from 'node:util';
import {
  PostboxClient, PostboxConnectionError, PostboxError, type Message, type MessagePage,
} from '../client/index.js';
import { clientSettings, ConfigError } from '../config.js';
import { WEBHOOK_EVENTS, type WebhookEventType } from '../protocol/webhooks.js';
import type { CliContext, CliIO, Command } from './cli.js';

/** A mistake in the command line: reported with a pointer to `--help`, exit code 2. */
class UsageError extends Error {
  override name = 'UsageError';
}

/** One line of an option list, the descriptions lined up. */
function opt(flag: string, text: string): string {
  return `  ${flag.padEnd(24)} ${text}`;
}

type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>;

const CONNECTION_OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
} as const satisfies OptionSpec;

const CONNECTION_HELP = [
  opt('--url <url>', 'the server (default: POSTBOX_URL, else http://localhost:8080)'),
  opt('--token <token>', 'bearer token for token mode (default: POSTBOX_TOKEN)'),
];

const JSON_HELP = opt('--json', 'print JSON (the API\'s shapes) instead of text for a person');

/** What a client command's body receives. */
interface Invocation<O extends OptionSpec> {
  values: ParsedValues<O>;
  positionals: string[];
  client: PostboxClient;
  io: CliIO;
  signal: AbortSignal | undefined;
}

type ParsedValues<O extends OptionSpec> = {
  [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string;
};

/** A client command: parsing, settings, the client and error reporting are shared; `run` is the call. */
function clientCommand<O extends OptionSpec>(spec: {
  name: string;
  summary: string;
  usage: string;
  options: O;
  /** Lines describing `options`, shown by `--help` above the connection options. */
  optionHelp: string[];
  /** Paragraphs shown by `--help` below the options. */
  notes?: string[];
  run: (call: Invocation<O>) => Promise<void>;
}): Command {
  return {
    summary: spec.summary,
    usage: spec.usage,
    help: () => ['Options:', ...spec.optionHelp, ...CONNECTION_HELP, ...(spec.notes ? ['', ...spec.notes] : [])].join('\n'),
    run: async (args, ctx) => {
      try {
        const { values, positionals } = parseCommandLine(args, { ...spec.options, ...CONNECTION_OPTIONS });
        const connection = values as ParsedValues<typeof CONNECTION_OPTIONS>;
        const settings = clientSettings(ctx.env, { url: connection.url, token: connection.token });
        // null: the CLI has already settled on its settings, so the client must not consult the environment again.
        const client = new PostboxClient({ url: settings.url, token: settings.token ?? null });
        await spec.run({ values, positionals, client, io: ctx.io, signal: ctx.signal });
        return 0;
      } catch (err) {
        return report(err, spec.name, ctx);
      }
    },
  };
}

function parseCommandLine<O extends OptionSpec>(args: string[], options: O): { values: ParsedValues<O>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args, options, strict: true, allowPositionals: true });
    return { values, positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Writes a failure for a person and picks the exit code. */
function report(err: unknown, command: string, ctx: CliContext): number {
  const { stderr } = ctx.io;
  if (err instanceof UsageError || err instanceof ConfigError) {
    stderr(`postbox ${command}: ${err.message}\nRun "postbox ${command} --help" for its options.\n`);
    return 2;
  }
  if (err instanceof PostboxError) {
    const lines = [`postbox: ${err.detail} (HTTP ${err.status} ${err.title})`];
    // Validation details already spell out "field message"; repeat only what they leave out.
    for (const e of err.errors) {
      if (!err.detail.includes(`${e.field} ${e.message}`)) lines.push(`  ${e.field}: ${e.message}`);
    }
    if (err.status === 401) lines.push('  (set POSTBOX_TOKEN or pass --token)');
    stderr(`${lines.join('\n')}\n`);
    return 1;
  }
  if (err instanceof StreamEnded) {
    stderr(`postbox: the server ended the stream: ${err.message}\n`);
    return 1;
  }
  if (err instanceof PostboxConnectionError) {
    stderr(`postbox: ${err.message}\n  (is the server running? set POSTBOX_URL or pass --url)\n`);
    return 1;
  }
  throw err;
}

// ---- argument helpers --------------------------------------------------------------------

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

function wholeNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  // The server checks the range and says so; here only what cannot be sent at all is refused.
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag} must be a whole number, got "${value}"`);
  return Number(value);
}

function onePositional(positionals: string[], what: string): string {
  if (positionals.length === 0) throw new UsageError(`give the ${what}`);
  if (positionals.length > 1) throw new UsageError(`give one ${what}, got ${positionals.length}: ${positionals.join(' ')}`);
  return positionals[0]!;
}

function printJson(io: CliIO, value: unknown): void {
  io.stdout(`${JSON.stringify(value, null, 2)}\n`);
}

// ---- tables ------------------------------------------------------------------------------

/** Terminal cells a string takes, counting code points: close enough for ids, names and the text column. */
function width(text: string): number {
  return [...text].length;
}

/** One line of text that cannot break the table or steer the terminal: a sender controls the message text. */
function cellText(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/[\u0000-\u001F\u007F-\u009F]+/g, ' ');
}

function fit(text: string, cells: number): string {
  const chars = [...text];
  if (chars.length <= cells) return text.padEnd(cells + (text.length - chars.length));
  return `${chars.slice(0, Math.max(0, cells - 1)).join('')}…`;
}

/**
 * Lays rows out in columns. The last column takes what the terminal has left, so long
 * messages are cut with … rather than wrapped; the others are as wide as their widest
 * cell, within `caps`.
 */
function renderTable(headers: string[], rows: string[][], columns: number, caps: number[]): string {
  const cells = rows.map((row) => row.map(cellText));
  const fixed = headers.slice(0, -1).map((h, i) =>
    Math.min(caps[i] ?? Infinity, Math.max(width(h), ...cells.map((r) => width(r[i] ?? '')))));
  const rest = Math.max(12, columns - fixed.reduce((a, b) => a + b + 2, 0));
  const line = (row: string[]) => [...fixed.map((w, i) => fit(row[i] ?? '', w)), fit(row[fixed.length] ?? '', rest).trimEnd()]
    .join('  ').trimEnd();
  return `${[line(headers), ...cells.map(line)].join('\n')}\n`;
}

/** `2026-11-24 12:00` in the reader's time zone: a person reads a table, and their clock is local. */
function localTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const two = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`;
}

const USER_CAP = 20;

function terminalWidth(io: CliIO): number {
  return io.columns !== undefined && io.columns > 0 ? io.columns : 80;
}

/** A page (or every page) of messages for a person; `who` picks the sender or recipient column. */
function printMessages(io: CliIO, messages: Message[], who: 'fromUser' | 'toUser'): void {
  if (messages.length === 0) {
    io.stdout('(no messages)\n');
    return;
  }
  const rows = messages.map((m) => [m.id, localTime(m.sentAt), m[who], m.readAt === null ? 'no' : 'yes', m.message]);
  io.stdout(renderTable(['ID', 'TIME', who === 'fromUser' ? 'FROM' : 'TO', 'READ', 'MESSAGE'], rows, terminalWidth(io),
    [Infinity, Infinity, USER_CAP, Infinity]));
}

// ---- the commands ------------------------------------------------------------------------

const PAGE_OPTIONS = {
  after: { type: 'string' },
  before: { type: 'string' },
  limit: { type: 'string' },
  all: { type: 'boolean' },
  json: { type: 'boolean' },
} as const satisfies OptionSpec;

const PAGE_HELP = [
  opt('--after <id>', 'the messages just after this id (forward)'),
  opt('--before <id>', 'the messages just before this id, or "latest" for the newest (backward)'),
  opt('--limit <n>', 'page size, 1-500 (default 50)'),
  opt('--all', 'follow every page, not just the first'),
  JSON_HELP,
];

/**
 * A page of messages as the command line asked for it, or all pages with `--all`; the
 * result is always page-shaped so `--json` prints one shape either way.
 */
async function loadPages(
  values: { after?: string | undefined; before?: string | undefined; limit?: string | undefined; all?: boolean | undefined },
  page: (q: { after?: string; before?: string; limit?: number }) => Promise<MessagePage>,
  every: (q: { after?: string; before?: string; limit?: number }) => AsyncGenerator<Message, void, undefined>,
): Promise<{ page: MessagePage; backward: boolean }> {
  const query: { after?: string; before?: string; limit?: number } = {};
  if (values.after !== undefined) query.after = values.after;
  if (values.before !== undefined) query.before = values.before;
  const limit = wholeNumber(values.limit, '--limit');
  if (limit !== undefined) query.limit = limit;
  const backward = query.after === undefined && query.before !== undefined;
  if (!values.all) return { page: await page(query), backward };
  const messages: Message[] = [];
  for await (const m of every(query)) messages.push(m);
  // The iterator runs newest first when paging backward; a page is always oldest first.
  if (backward) messages.reverse();
  return { page: { messages, next: null }, backward };
}

function printPage(io: CliIO, page: MessagePage, backward: boolean, who: 'fromUser' | 'toUser', json: boolean | undefined): void {
  if (json) {
    printJson(io, page);
    return;
  }
  printMessages(io, page.messages, who);
  if (page.next !== null) io.stdout(`(more: ${backward ? '--before' : '--after'} ${page.next}, or --all)\n`);
}

const send = clientCommand({
  name: 'send',
  summary: 'send a message',
  usage: 'postbox send [--from <user>] --to <user> [--json] <text...>',
  options: {
    from: { type: 'string' },
    to: { type: 'string' },
    'idempotency-key': { type: 'string' },
    json: { type: 'boolean' },
  },
  optionHelp: [
    opt('--from <user>', 'the sender (in token mode, the token\'s user when omitted)'),
    opt('--to <user>', 'the recipient'),
    opt('--idempotency-key <key>', 'a retry with the same key sends nothing new'),
    JSON_HELP,
  ],
  notes: [
    'The text is the remaining arguments joined by spaces ("--" before text that starts with "-").',
    'Prints the new message\'s id.',
  ],
  run: async ({ values, positionals, client, io }) => {
    const to = required(values.to, '--to');
    if (positionals.length === 0) throw new UsageError('give the message text');
    const message = await client.send(
      { ...(values.from === undefined ? {} : { fromUser: values.from }), toUser: to, message: positionals.join(' ') },
      values['idempotency-key'] === undefined ? {} : { idempotencyKey: values['idempotency-key'] },
    );
    if (values.json) printJson(io, message);
    else io.stdout(`${message.id}\n`);
  },
});

const inbox = clientCommand({
  name: 'inbox',
  summary: 'list the messages sent to a user',
  usage: 'postbox inbox <user> [--after <id>] [--before <id>|latest] [--limit <n>] [--from <user>] [--unread] [--all] [--follow] [--json]',
  options: {
    ...PAGE_OPTIONS,
    from: { type: 'string' },
    unread: { type: 'boolean' },
    follow: { type: 'boolean', short: 'f' },
  },
  optionHelp: [
    ...PAGE_HELP,
    opt('--from <user>', 'only messages from this user'),
    opt('--unread', 'only messages not yet read'),
    opt('--follow', 'then print each new message as it arrives, until Ctrl-C'),
  ],
  notes: [
    'With --follow and no --after/--before, the newest page is shown first. --follow --json prints one',
    'Message per line (JSON Lines). The stream resumes by itself after a dropped connection.',
  ],
  run: async ({ values, positionals, client, io, signal }) => {
    const user = onePositional(positionals, 'user whose inbox to list');
    const filters = {
      ...(values.from === undefined ? {} : { from: values.from }),
      ...(values.unread ? { unread: true } : {}),
    };
    if (values.follow && (values.from !== undefined || values.unread || values.all)) {
      throw new UsageError('--follow shows every new message; it does not combine with --from, --unread or --all');
    }
    const paging = values.follow && values.after === undefined && values.before === undefined
      ? { ...values, before: 'latest' }
      : values;
    const { page, backward } = await loadPages(paging,
      (q) => client.inbox(user, { ...q, ...filters }),
      (q) => client.messages(user, { ...q, ...filters }));
    if (!values.follow) {
      printPage(io, page, backward, 'fromUser', values.json);
      return;
    }
    const shown = page.messages;
    if (values.json) for (const m of shown) io.stdout(`${JSON.stringify(m)}\n`);
    else printMessages(io, shown, 'fromUser');
    await follow(client, user, shown[shown.length - 1]?.id ?? values.after ?? '0', io, values.json, signal);
  },
});

/**
 * Prints each new message to `user` as it arrives, until Ctrl-C (or `signal`); reconnects
 * are told on stderr. Fails if the server ends the stream for good.
 */
async function follow(client: PostboxClient, user: string, after: string, io: CliIO, json: boolean | undefined, signal: AbortSignal | undefined): Promise<void> {
  const stop = new AbortController();
  const interrupt = () => stop.abort();
  if (signal) signal.addEventListener('abort', interrupt, { once: true });
  else process.once('SIGINT', interrupt);
  let ended: string | undefined;
  try {
    const subscription = client.subscribe(user, {
      after,
      signal: stop.signal,
      onMessage: (m) => {
        if (json) io.stdout(`${JSON.stringify(m)}\n`);
        else io.stdout(`${m.id}  ${localTime(m.sentAt)}  ${cellText(m.fromUser)}: ${cellText(m.message)}\n`);
      },
      onEvent: (event) => {
        if (event.type === 'disconnected') io.stderr('(connection lost; reconnecting…)\n');
        if (event.type === 'end') ended = event.reason;
      },
    });
    await subscription.closed;
  } finally {
    if (signal) signal.removeEventListener('abort', interrupt);
    else process.removeListener('SIGINT', interrupt);
  }
  if (ended !== undefined) throw new StreamEnded(ended);
}

/** The server ended a followed stream for good: exit code 1, with its reason. */
class StreamEnded extends Error {
  override name = 'StreamEnded';
}

const sent = clientCommand({
  name: 'sent',
  summary: 'list the messages a user sent',
  usage: 'postbox sent <user> [--after <id>] [--before <id>|latest] [--limit <n>] [--all] [--json]',
  options: PAGE_OPTIONS,
  optionHelp: PAGE_HELP,
  run: async ({ values, positionals, client, io }) => {
    const user = onePositional(positionals, 'user whose sent messages to list');
    const { page, backward } = await loadPages(values, (q) => client.sent(user, q), (q) => client.sentMessages(user, q));
    printPage(io, page, backward, 'toUser', values.json);
  },
});

const conversations = clientCommand({
  name: 'conversations',
  summary: 'list a user\'s conversations, most recent first',
  usage: 'postbox conversations <user> [--before <id>] [--limit <n>] [--json]',
  options: {
    before: { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
  },
  optionHelp: [
    opt('--before <id>', 'older conversations: the "more" id of the previous list'),
    opt('--limit <n>', 'how many, 1-500 (default 50)'),
    JSON_HELP,
  ],
  run: async ({ values, positionals, client, io }) => {
    const user = onePositional(positionals, 'user whose conversations to list');
    const limit = wholeNumber(values.limit, '--limit');
    const list = await client.conversations(user, {
      ...(values.before === undefined ? {} : { before: values.before }),
      ...(limit === undefined ? {} : { limit }),
    });
    if (values.json) {
      printJson(io, list);
      return;
    }
    if (list.conversations.length === 0) {
      io.stdout('(no conversations)\n');
      return;
    }
    const rows = list.conversations.map((c) => [
      c.peer, String(c.unread), localTime(c.lastMessage.sentAt),
      `${c.lastMessage.fromUser === user ? 'you: ' : ''}${c.lastMessage.message}`,
    ]);
    io.stdout(renderTable(['PEER', 'UNREAD', 'LAST', 'MESSAGE'], rows, terminalWidth(io), [USER_CAP]));
    if (list.next !== null) io.stdout(`(more: --before ${list.next})\n`);
  },
});

const read = clientCommand({
  name: 'read',
  summary: 'mark messages to a user read; prints how many are still unread',
  usage: 'postbox read <user> (--up-to <id> | --ids <id,id,...>) [--json]',
  options: {
    'up-to': { type: 'string' },
    ids: { type: 'string' },
    json: { type: 'boolean' },
  },
  optionHelp: [
    opt('--up-to <id>', 'every message up to and including this id'),
    opt('--ids <list>', 'these message ids, separated by commas'),
    JSON_HELP,
  ],
  run: async ({ values, positionals, client, io }) => {
    const user = onePositional(positionals, 'user whose messages to mark read');
    const upTo = values['up-to'];
    if ((upTo === undefined) === (values.ids === undefined)) throw new UsageError('give either --up-to or --ids');
    let result;
    if (upTo !== undefined) {
      result = await client.markRead(user, { upTo });
    } else {
      const ids = (values.ids ?? '').split(',').map((id) => id.trim()).filter((id) => id !== '');
      if (ids.length === 0) throw new UsageError('--ids names no message ids');
      result = await client.markRead(user, { ids });
    }
    if (values.json) printJson(io, result);
    else io.stdout(`${result.unread}\n`);
  },
});

const remove = clientCommand({
  name: 'delete',
  summary: 'delete a message for its sender and its recipient',
  usage: 'postbox delete <id>',
  options: {},
  optionHelp: [],
  run: async ({ positionals, client, io }) => {
    const id = onePositional(positionals, 'id of the message to delete');
    await client.deleteMessage(id);
    io.stdout(`deleted ${id}\n`);
  },
});

const webhooks = clientCommand({
  name: 'webhooks',
  summary: 'manage webhook endpoints (admin token): add, list, remove, deliveries, retry',
  usage: 'postbox webhooks add <url> --events <e,e,...> [--description <text>] | list | remove <id> | deliveries <id> [--limit <n>] [--before <id>] | retry <id> <deliveryId>  [--json]',
  options: {
    events: { type: 'string' },
    description: { type: 'string' },
    limit: { type: 'string' },
    before: { type: 'string' },
    json: { type: 'boolean' },
  },
  optionHelp: [
    opt('--events <list>', `add: the events to send, separated by commas (${WEBHOOK_EVENTS.join(', ')})`),
    opt('--description <text>', 'add: a note for people'),
    opt('--limit <n>', 'deliveries: how many (1-500, default 50)'),
    opt('--before <id>', 'deliveries: older than this delivery id'),
    JSON_HELP,
  ],
  notes: [
    'The signing secret is printed once, by add: keep it where the receiver can use it (verifyWebhook in postbox/client).',
    'retry queues one delivery (an id from deliveries) to go again now, whatever became of it.',
  ],
  run: async ({ values, positionals, client, io }) => {
    const [action, ...rest] = positionals;
    const arg = (what: string) => onePositional(rest, what);
    switch (action) {
      case 'add': {
        const events = required(values.events, '--events').split(',').map((e) => e.trim()).filter(Boolean);
        const created = await client.createWebhook({
          url: arg('URL to send events to'), events: events as WebhookEventType[],
          ...(values.description === undefined ? {} : { description: values.description }),
        });
        if (values.json) printJson(io, created);
        else io.stdout(`added ${created.id} for ${created.events.join(', ')}\nsigning secret (shown only now): ${created.secret}\n`);
        return;
      }
      case 'list': {
        if (rest.length > 0) throw new UsageError('list takes no arguments');
        const list = await client.listWebhooks();
        if (values.json) return printJson(io, { webhooks: list });
        if (list.length === 0) return void io.stdout('(no webhooks)\n');
        const rows = list.map((w) => [w.id, w.enabled ? 'yes' : 'NO', w.events.join(','), w.url, w.disabledReason ?? w.description ?? '']);
        io.stdout(renderTable(['ID', 'ENABLED', 'EVENTS', 'URL', 'NOTE'], rows, terminalWidth(io), []));
        return;
      }
      case 'remove': {
        const id = arg('id of the webhook to remove');
        await client.deleteWebhook(id);
        io.stdout(`removed ${id}\n`);
        return;
      }
      case 'deliveries': {
        const limit = wholeNumber(values.limit, '--limit');
        const page = await client.webhookDeliveries(arg('id of the webhook'), {
          ...(limit === undefined ? {} : { limit }), ...(values.before === undefined ? {} : { before: values.before }),
        });
        if (values.json) return printJson(io, page);
        if (page.deliveries.length === 0) return void io.stdout('(no deliveries)\n');
        const rows = page.deliveries.map((d) => [
          d.id, d.type, d.status, String(d.attempts), d.lastAttemptAt ? localTime(d.lastAttemptAt) : '-',
          d.lastError ?? (d.lastStatus === null ? '' : `HTTP ${d.lastStatus}`),
          // Each kept attempt's HTTP status, oldest first ("-": no answer came back).
          d.history.map((a) => (a.httpStatus === null ? '-' : String(a.httpStatus))).join(' '),
        ]);
        io.stdout(renderTable(['ID', 'EVENT', 'STATUS', 'TRIES', 'LAST TRY', 'RESULT', 'HISTORY'], rows, terminalWidth(io), []));
        if (page.next !== null) io.stdout(`(more: --before ${page.next})\n`);
        return;
      }
      case 'retry': {
        if (rest.length !== 2) throw new UsageError(`give the id of the webhook and the id of the delivery, got ${rest.length} argument(s)`);
        const [id, deliveryId] = rest as [string, string];
        const delivery = await client.retryWebhookDelivery(id, deliveryId);
        if (values.json) return printJson(io, delivery);
        io.stdout(`delivery ${delivery.id} (${delivery.type}) goes again now\n`);
        return;
      }
      default:
        throw new UsageError(action === undefined
          ? 'give add, list, remove, deliveries or retry'
          : `unknown webhooks action "${action}": use add, list, remove, deliveries or retry`);
    }
  },
});

/** The client commands, in the order `postbox --help` lists them. */
export function clientCommands(): Record<string, Command> {
  return { send, inbox, sent, conversations, read, delete: remove, webhooks };
}
