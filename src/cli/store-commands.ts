/**
 * The commands that work on the store itself, no server needed: `users add|list|remove`
 * (so the first user of a token-mode server can be made before it starts), `export` and
 * `import` (JSON Lines, to move a store between SQLite and PostgreSQL), and `migrate`.
 *
 * They read the same storage settings as the server (`--db`/`DATABASE_URL`, …).
 * Exit codes: 0 done, 1 the store refused or could not be reached, 2 the command line is wrong.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { ConfigError, loadStoreConfig, type StoreConfig } from '../config.js';
import { STORE_HOLDER } from '../domain/access.js';
import { readRecords, recordLine } from '../domain/transfer.js';
import { UserService } from '../domain/users.js';
import { AppError } from '../errors.js';
import type { Storage } from '../storage/storage.js';
import type { CliContext, Command } from './cli.js';

type Flags = Record<string, { type: 'string' | 'boolean' }>;

const STORE_HELP = [
  '  --db <url>      the store (default: DATABASE_URL, else sqlite:./data/postbox.db)',
];

/** A command line the command cannot use: exit code 2. */
class UsageError extends Error {
  override name = 'UsageError';
}

/** Settings and arguments of a store command, its flags parsed. */
function parse<F extends Flags>(args: string[], ctx: CliContext, flags: F) {
  return loadStoreConfig({ argv: args, env: ctx.env }, flags);
}

/** The storage modules, loaded only by the commands that use them (they bring native drivers). */
const backends = () => import('../storage/open.js');

async function withStore<T>(config: StoreConfig, fn: (storage: Storage) => Promise<T>): Promise<T> {
  const { openStorage } = await backends();
  const storage = await openStorage(config.database, { durability: config.durability, poolSize: Math.min(config.pgPoolSize, 2) });
  try {
    return await fn(storage);
  } finally {
    await storage.close();
  }
}

/** Runs a store command, turning failures into a message for a person and an exit code. */
async function guarded(name: string, ctx: CliContext, body: () => Promise<void>): Promise<number> {
  try {
    await body();
    return 0;
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      ctx.io.stderr(`postbox ${name}: ${err.message}\nRun "postbox ${name} --help" for its options.\n`);
      return 2;
    }
    if (err instanceof AppError) {
      ctx.io.stderr(`postbox ${name}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

function one(args: string[], what: string): string {
  if (args.length !== 1) throw new UsageError(args.length === 0 ? `give the ${what}` : `give one ${what}, got ${args.length}`);
  return args[0]!;
}

const users: Command = {
  summary: 'add, list or remove users directly in the store (no server needed)',
  usage: 'postbox users add <id> | list | remove <id> [--json] [--db <url>]',
  help: () => [
    'Subcommands:',
    '  add <id>        create a user and print its token (shown only this once)',
    '  list            list the users',
    '  remove <id>     remove a user: its tokens stop working and its streams end; its messages stay',
    '',
    'Options:',
    '  --json          print JSON instead of text for a person',
    ...STORE_HELP,
  ].join('\n'),
  run: (args, ctx) => guarded('users', ctx, async () => {
    const { config, flags, args: rest } = parse(args, ctx, { json: { type: 'boolean' } });
    const [sub, ...operands] = rest;
    await withStore(config, async (storage) => {
      // Whoever holds the store acts on its accounts as the admin would; no one is authenticated here.
      const service = new UserService(storage);
      switch (sub) {
        case 'add': {
          const created = await service.create(STORE_HOLDER, one(operands, 'user id'));
          if (flags.json) ctx.io.stdout(`${JSON.stringify(created)}\n`);
          else {
            ctx.io.stdout(`${created.token}\n`);
            ctx.io.stderr(`created user "${created.id}"; its token is shown only this once\n`);
          }
          return;
        }
        case 'list': {
          if (operands.length > 0) throw new UsageError('list takes no arguments');
          const list = await storage.listUsers();
          if (flags.json) ctx.io.stdout(`${JSON.stringify({ users: list })}\n`);
          else if (list.length === 0) ctx.io.stdout('(no users)\n');
          else for (const u of list) ctx.io.stdout(`${u.id}\t${u.createdAt}\n`);
          return;
        }
        case 'remove': {
          const id = one(operands, 'user id');
          await service.remove(STORE_HOLDER, id);
          ctx.io.stderr(`removed user "${id}"\n`);
          return;
        }
        default:
          throw new UsageError(sub === undefined ? 'give a subcommand: add, list or remove' : `unknown subcommand "${sub}"`);
      }
    });
  }),
};

/** Writes and waits when the destination is full, so memory stays flat for any store size. */
async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await new Promise<void>((resolve, reject) => {
    // Each wait takes its listeners away again: a long export waits thousands of times.
    const drained = () => {
      out.off('error', failed);
      resolve();
    };
    const failed = (err: Error) => {
      out.off('drain', drained);
      reject(err);
    };
    out.once('drain', drained);
    out.once('error', failed);
  });
}

const exportCommand: Command = {
  summary: 'write every user, token and message as JSON Lines (to move a store)',
  usage: 'postbox export [--out <file>] [--db <url>]',
  help: () => ['Options:', '  --out <file>    write here instead of standard output', ...STORE_HELP, '',
    'Streams with flat memory. Token hashes are exported, never tokens. Import with postbox import.'].join('\n'),
  run: (args, ctx) => guarded('export', ctx, async () => {
    const { config, flags, args: rest } = parse(args, ctx, { out: { type: 'string' } });
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
    const out: Writable = flags.out ? createWriteStream(flags.out) : ctx.io.output;
    const counts = { user: 0, token: 0, message: 0 };
    await withStore(config, async (storage) => {
      for await (const record of storage.exportAll()) {
        counts[record.type]++;
        await write(out, recordLine(record));
      }
    });
    if (flags.out) await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    ctx.io.stderr(`exported ${counts.user} users, ${counts.token} tokens, ${counts.message} messages\n`);
  }),
};

const importCommand: Command = {
  summary: 'read JSON Lines written by postbox export into the store, keeping ids',
  usage: 'postbox import [<file>] [--db <url>]',
  help: () => ['Reads the file, or standard input without one.', '', 'Options:', ...STORE_HELP, '',
    'Every record is checked first; a bad one stops the import naming its line (the records before it',
    'are stored). Records already in the store are skipped, so an import can be run again.'].join('\n'),
  run: (args, ctx) => guarded('import', ctx, async () => {
    const { config, args: rest } = parse(args, ctx, {});
    if (rest.length > 1) throw new UsageError('give at most one file');
    const input: Readable = rest[0] === undefined || rest[0] === '-' ? ctx.io.input : createReadStream(rest[0]);
    const counts = await withStore(config, (storage) =>
      // readline starts reading at once and drops lines nobody iterates yet: made only here,
      // where they are read, not before the store has opened.
      storage.importAll(readRecords(createInterface({ input, crlfDelay: Infinity }))));
    ctx.io.stdout(`imported ${counts.users} users, ${counts.tokens} tokens, ${counts.messages} messages\n`);
  }),
};

const migrate: Command = {
  summary: 'bring the store to the newest schema (the server also does this at start)',
  usage: 'postbox migrate [--db <url>]',
  help: () => ['Options:', ...STORE_HELP].join('\n'),
  run: (args, ctx) => guarded('migrate', ctx, async () => {
    const { config, args: rest } = parse(args, ctx, {});
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
    const applied = await (await backends()).migrateStore(config.database);
    ctx.io.stdout(applied.length === 0 ? 'the schema is up to date\n' : `applied migrations ${applied.join(', ')}\n`);
  }),
};

/** The store commands, for the command table. */
export function storeCommands(): Record<string, Command> {
  return { users, export: exportCommand, import: importCommand, migrate };
}
