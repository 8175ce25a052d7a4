/**
 * The commands that work on the store itself, no server needed: `users add|list|remove`
 * (so the first user of a token-mode server can be made before it starts), `export` and
 * `import` (JSON Lines, to move a store between SQLite and PostgreSQL), `backup` and
 * `restore` (a SQLite store, online), and `migrate`.
 *
 * They read the same storage settings as the server (`--db`/`DATABASE_URL`, …), and open
 * the store by the rules of store-open.ts: only a command meant to create a store creates one.
 * Exit codes: 0 done, 1 the store refused or could not be reached, 2 the command line is wrong.
 */
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ConfigError, loadStoreConfig, type StoreConfig } from '../config.js';
import { hasConflicts, importPlanned, NAMED_CONFLICTS, planImport, type ConflictPolicy, type ImportPlan } from '../domain/import-plan.js';
import { STORE_HOLDER } from '../domain/access.js';
import { readRecords, recordLine } from '../domain/transfer.js';
import { nonconformingIds, nonconformingNotice, UserService, type NonconformingId } from '../domain/users.js';
import { AppError } from '../errors.js';
import type { ExportRecord, Storage } from '../storage/storage.js';
import type { CliContext, Command } from './cli.js';
import { checkStoreExists, checkStoreSchema, explainOpenFailure, StoreOpenError, type OpenIntent } from './store-open.js';

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

/** Where the store setting came from, to name it when the store is not there. */
function storeSource(ctx: CliContext, args: string[]): string {
  return args.some((a) => a === '--db' || a.startsWith('--db=')) ? '--db' : ctx.env.DATABASE_URL ? 'DATABASE_URL' : 'the default';
}

/**
 * Opens the configured store for `fn` and closes it after. With intent `existing`, a SQLite
 * file that is not there is refused rather than created, and one that is not a Postbox store
 * at this schema is refused rather than migrated (store-open.ts); a store that cannot be
 * opened is explained in a sentence.
 */
export async function withStore<T>(
  config: StoreConfig,
  intent: OpenIntent,
  source: string,
  fn: (storage: Storage) => Promise<T>,
): Promise<T> {
  checkStoreExists(config.database, intent, source);
  await checkStoreSchema(config.database, intent);
  const { openStorage } = await backends();
  let storage: Storage;
  try {
    storage = await openStorage(config.database, { durability: config.durability, poolSize: Math.min(config.pgPoolSize, 2) });
  } catch (err) {
    throw explained(config, err);
  }
  try {
    return await fn(storage);
  } finally {
    await storage.close();
  }
}

/** A failure to open the store, as a sentence when a person can act on it. */
function explained(config: StoreConfig, err: unknown): unknown {
  const why = explainOpenFailure(config.database, err);
  return why === undefined ? err : new StoreOpenError(why, { cause: err });
}

/** Failures a person fixes by setup: said in one sentence, exit code 1. */
async function isSetupError(err: unknown): Promise<boolean> {
  if (err instanceof StoreOpenError || err instanceof AppError) return true;
  const [{ BackupError }, { StoreInUseError }] = await Promise.all([
    import('../storage/sqlite/backup.js'), import('../storage/sqlite/serve-lock.js'),
  ]);
  return err instanceof BackupError || err instanceof StoreInUseError;
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
    if (await isSetupError(err)) {
      ctx.io.stderr(`postbox ${name}: ${(err as Error).message}\n`);
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
  usage: 'postbox users add <id> | list | remove <id> [--purge] [--json] [--db <url>]',
  help: () => [
    'Subcommands:',
    '  add <id>        create a user and print its token (shown only this once)',
    '  list            list the users',
    '  remove <id>     remove a user: its tokens stop working and its streams end; its messages stay',
    '                  and its id stays reserved, so no one inherits them',
    '',
    'Options:',
    '  --purge         with remove: also delete every message to or from the user, and free the id',
    '  --json          print JSON instead of text for a person',
    ...STORE_HELP,
  ].join('\n'),
  run: (args, ctx) => guarded('users', ctx, async () => {
    const { config, flags, args: rest } = parse(args, ctx, { json: { type: 'boolean' }, purge: { type: 'boolean' } });
    const [sub, ...operands] = rest;
    if (sub !== 'add' && sub !== 'list' && sub !== 'remove') {
      throw new UsageError(sub === undefined ? 'give a subcommand: add, list or remove' : `unknown subcommand "${sub}"`);
    }
    if (flags.purge === true && sub !== 'remove') throw new UsageError('--purge goes with remove');
    // Making the first user is how a store begins; listing or removing needs one that exists.
    await withStore(config, sub === 'add' ? 'create' : 'existing', storeSource(ctx, args), async (storage) => {
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
          const purge = flags.purge === true;
          await service.remove(STORE_HOLDER, id, { purge });
          ctx.io.stderr(purge
            ? `removed user "${id}" and every message to or from it; the id is free again\n`
            : `removed user "${id}"; its messages stay and its id stays reserved (--purge deletes them and frees the id)\n`);
          return;
        }
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
  summary: 'write every user, reserved id, token and message as JSON Lines (to move a store)',
  usage: 'postbox export [--out <file>] [--db <url>]',
  help: () => ['Options:', '  --out <file>    write here instead of standard output', ...STORE_HELP, '',
    'Streams with flat memory. Token hashes are exported, never tokens. Import with postbox import.'].join('\n'),
  run: (args, ctx) => guarded('export', ctx, async () => {
    const { config, flags, args: rest } = parse(args, ctx, { out: { type: 'string' } });
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
    const counts = { user: 0, token: 0, message: 0, reservation: 0 };
    let out: Writable | undefined;
    await withStore(config, 'existing', storeSource(ctx, args), async (storage) => {
      // Opened only once the store has: a store that is not there leaves no empty file behind.
      const target = (out = flags.out ? createWriteStream(flags.out) : ctx.io.output);
      for await (const record of storage.exportAll()) {
        counts[record.type]++;
        await write(target, recordLine(record));
      }
    });
    const opened = out;
    if (flags.out && opened) await new Promise<void>((resolve, reject) => opened.end((err?: Error | null) => (err ? reject(err) : resolve())));
    ctx.io.stderr(`exported ${tally({ users: counts.user, tokens: counts.token, messages: counts.message, reservations: counts.reservation })}\n`);
  }),
};

/** "2 users, 1 token, 0 messages". */
function tally(c: { users: number; tokens: number; messages: number; reservations?: number }): string {
  const n = (k: number, one: string) => `${k} ${one}${k === 1 ? '' : 's'}`;
  // Most stores have no removed users: the line stays as it always was for them.
  const reserved = c.reservations ? `, ${n(c.reservations, 'reserved id')}` : '';
  return `${n(c.users, 'user')}, ${n(c.tokens, 'token')}, ${n(c.messages, 'message')}${reserved}`;
}

/** The records of an export file, read afresh (an import reads its file twice). */
async function* fileRecords(path: string): AsyncGenerator<ExportRecord> {
  // readline starts reading at once and drops lines nobody iterates yet: made only when
  // the first record is asked for, never while the reader is still awaiting something else.
  yield* readRecords(createInterface({ input: createReadStream(path), crlfDelay: Infinity }));
}

/** Names the conflicts of a plan, for a person. */
function describeConflicts(plan: Pick<ImportPlan, 'conflicting' | 'conflicts'>): string {
  const c = plan.conflicting;
  const total = c.users + c.tokens + c.messages + c.reservations;
  const lines = plan.conflicts.map((x) => `  ${x.kind} ${x.id}: ${x.why}`);
  if (total > plan.conflicts.length) lines.push(`  … and ${total - plan.conflicts.length} more (the first ${NAMED_CONFLICTS} are named)`);
  return `${total} record${total === 1 ? '' : 's'} of the file conflict with the store (${tally(c)}):\n${lines.join('\n')}\n`;
}

const importCommand: Command = {
  summary: 'read JSON Lines written by postbox export into the store, keeping ids',
  usage: 'postbox import [<file>] [--on-conflict fail|skip] [--db <url>]',
  help: () => ['Reads the file, or standard input without one.', '', 'Options:',
    '  --on-conflict fail   (default) refuse the whole import if any record conflicts with the store, naming them',
    '  --on-conflict skip   keep what the store holds and import the rest, naming what was skipped',
    ...STORE_HELP, '',
    'The whole file is checked before anything is written: a bad line stops the import naming it, and so does',
    'a conflict (a message id the store holds with other content, a user id it holds with another creation time,',
    'a token that would be added to a user the store already holds, a user id the store keeps reserved for a',
    'removed user, or a reserved id the store holds as a live user). Records the store already holds unchanged',
    'are skipped, so an import can be run again. It prints what it imported and what it skipped.'].join('\n'),
  run: (args, ctx) => guarded('import', ctx, async () => {
    const { config, flags, args: rest } = parse(args, ctx, { 'on-conflict': { type: 'string' } });
    if (rest.length > 1) throw new UsageError('give at most one file');
    const given = flags['on-conflict'] ?? 'fail';
    if (given !== 'fail' && given !== 'skip') throw new UsageError(`--on-conflict must be fail or skip, got "${given}"`);
    const policy: ConflictPolicy = given;
    let spool: string | undefined;
    let path = rest[0];
    try {
      if (path === undefined || path === '-') {
        // The file is read twice (checked, then imported): standard input is kept aside first.
        spool = await mkdtemp(join(tmpdir(), 'postbox-import-'));
        path = join(spool, 'stdin.jsonl');
        await pipeline(ctx.io.input, createWriteStream(path));
      }
      const file = path;
      await withStore(config, 'create', storeSource(ctx, args), async (storage) => {
        const plan = await planImport(storage, fileRecords(file));
        if (hasConflicts(plan) && policy === 'fail') {
          ctx.io.stderr(describeConflicts(plan));
          throw new StoreOpenError('nothing was imported. Resolve the conflicts in the file, or run again with ' +
            '--on-conflict skip to keep what the store holds and import the rest.');
        }
        const outcome = await importPlanned(storage, fileRecords(file), plan);
        ctx.io.stdout(`imported ${tally(outcome.imported)}; skipped ${tally(outcome.same)} already in the store` +
          (hasConflicts(plan) ? `, and ${tally(plan.conflicting)} that conflict with it (the store's kept)` : '') + '\n');
        if (hasConflicts(plan)) ctx.io.stderr(describeConflicts(plan));
        if (hasConflicts(outcome)) {
          ctx.io.stderr(describeConflicts(outcome));
          throw new StoreOpenError('the records above were not imported: the store took their ids while the import ran ' +
            '(is a server writing to it?). Everything else was imported; export them under new ids, or stop the server and run again.');
        }
      });
    } finally {
      if (spool) await rm(spool, { recursive: true, force: true });
    }
  }),
};

const backup: Command = {
  summary: 'copy a SQLite store to a file while the server keeps serving, and verify the copy',
  usage: 'postbox backup --out <file> [--force] [--db <url>]',
  help: () => ['Options:', '  --out <file>    where the backup goes (a SQLite file)',
    '  --force         replace the file if it exists (never the store itself or its files)', ...STORE_HELP, '',
    'Uses SQLite\'s online backup: the copy is one consistent moment of the store, taken while the server',
    'writes; it is checked (integrity check, counts) before it is put in place. Restore with postbox restore.',
    'On PostgreSQL, use pg_dump (or postbox export, which any backend can import).'].join('\n'),
  run: (args, ctx) => guarded('backup', ctx, async () => {
    const { config, flags, args: rest } = parse(args, ctx, { out: { type: 'string' }, force: { type: 'boolean' } });
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
    if (config.database.kind !== 'sqlite') {
      throw new StoreOpenError('backup copies a SQLite store. For PostgreSQL use its own tools, e.g. ' +
        'pg_dump -Fc -f postbox.dump <database>, or postbox export --out store.jsonl (which any backend can import).');
    }
    if (!flags.out) throw new UsageError('give --out <file>');
    checkStoreExists(config.database, 'existing', storeSource(ctx, args));
    // A store about to be migrated is just what wants a backup first: only its schema must be Postbox's.
    await checkStoreSchema(config.database, 'existing', { olderIsFine: true });
    const { backupSqlite } = await import('../storage/sqlite/backup.js');
    const report = await backupSqlite(config.database.path, flags.out, { replace: flags.force === true });
    ctx.io.stdout(`wrote ${report.path}: ${report.bytes} bytes, ${tally(report)}` +
      `${report.lastId === null ? '' : `, last message id ${report.lastId}`}; integrity check ok\n`);
  }),
};

/** Whether a store holds nothing at all. */
async function isEmpty(storage: Storage): Promise<boolean> {
  for await (const record of storage.exportAll()) {
    void record;
    return false;
  }
  return true;
}

const restore: Command = {
  summary: 'fill an empty store from a file written by postbox backup',
  usage: 'postbox restore <file> [--force] [--db <url>]',
  help: () => ['Options:', '  --force         replace a SQLite store that is not empty (everything in it is lost); SQLite only', ...STORE_HELP, '',
    'Refuses a store that holds anything unless --force, and a SQLite store a server is serving. The restored',
    'store keeps every message id. Into PostgreSQL, the backup\'s users, tokens and messages are imported into',
    'an empty database or schema; --force is refused there, since this command cannot tell whether a server',
    'on another machine is using it: stop every server, drop and recreate the database (or schema), then restore.'].join('\n'),
  run: (args, ctx) => guarded('restore', ctx, async () => {
    const { config, flags, args: rest } = parse(args, ctx, { force: { type: 'boolean' } });
    const file = one(rest, 'backup file');
    const { restoreSqlite, verifyStoreFile } = await import('../storage/sqlite/backup.js');
    const source = verifyStoreFile(file);
    if (config.database.kind === 'sqlite') {
      // The real file: a restore renamed over a symlink would replace the link, not the store.
      const { resolveStorePath } = await import('../storage/sqlite/store-path.js');
      const target = resolveStorePath(config.database.path);
      const { acquireServeLock } = await import('../storage/sqlite/serve-lock.js');
      // Held for the restore: no server may start on the store while it is being replaced.
      const lock = acquireServeLock(target);
      try {
        if (existsSync(target) && !flags.force) {
          const empty = await withStore(config, 'existing', storeSource(ctx, args), isEmpty);
          if (!empty) throw new StoreOpenError(`${target} is not empty; restore fills an empty store (--force replaces this one and everything in it)`);
        }
        const report = await restoreSqlite(file, target);
        ctx.io.stdout(`restored ${report.path} from ${source.path}: ${tally(report)}` +
          `${report.lastId === null ? '' : `, last message id ${report.lastId}`}; integrity check ok\n`);
      } finally {
        lock.release();
      }
      return;
    }
    // Emptying a PostgreSQL store under a server would leave it serving what is no longer
    // there, and unlike SQLite's serve lock nothing here can tell whether a server on another
    // machine uses the database: replacing one is left to a person who has stopped them all.
    if (flags.force) {
      throw new StoreOpenError('--force replaces SQLite stores only: on PostgreSQL this command cannot tell whether a server elsewhere ' +
        'is using the database, so stop every server, drop and recreate the database (or schema), then restore into it without --force');
    }
    const { openStorage } = await backends();
    // The backup is read through a copy: opening a store migrates it, and the backup stays as it was.
    const work = await mkdtemp(join(tmpdir(), 'postbox-restore-'));
    try {
      const copy = join(work, 'backup.db');
      await restoreSqlite(file, copy);
      const from = await openStorage({ kind: 'sqlite', path: copy }, { durability: 'relaxed' });
      try {
        const counts = await withStore(config, 'create', storeSource(ctx, args), async (storage) => {
          if (!(await isEmpty(storage))) throw new StoreOpenError('the PostgreSQL store is not empty; restore fills an empty store');
          return storage.importAll(from.exportAll());
        });
        ctx.io.stdout(`restored from ${source.path}: ${tally(counts)}\n`);
      } finally {
        await from.close();
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }),
};

const migrate: Command = {
  summary: 'bring the store to the newest schema (the server also does this at start)',
  usage: 'postbox migrate [--db <url>]',
  help: () => ['Options:', ...STORE_HELP].join('\n'),
  run: (args, ctx) => guarded('migrate', ctx, async () => {
    const { config, args: rest } = parse(args, ctx, {});
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
    let applied: number[];
    try {
      applied = await (await backends()).migrateStore(config.database);
    } catch (err) {
      throw explained(config, err);
    }
    ctx.io.stdout(applied.length === 0 ? 'the schema is up to date\n' : `applied migrations ${applied.join(', ')}\n`);
    // Reported, never changed: such an id names someone's messages (see nonconformingNotice).
    const odd = await withStore(config, 'existing', storeSource(ctx, args), async (storage) => nonconformingIds(storage.storedUserIds()));
    if (odd.length > 0) {
      ctx.io.stdout(`${nonconformingNotice(odd.length)}:\n`);
      for (const o of odd) ctx.io.stdout(noteOf(o));
    }
  }),
};

/** One line of a report of a stored id the rule refuses. */
function noteOf(o: NonconformingId): string {
  return `note: stored user id ${JSON.stringify(o.id)} ${o.problem}\n`;
}

const check: Command = {
  summary: 'check that the store is whole (SQLite integrity check; PostgreSQL schema and a read of each table)',
  usage: 'postbox check [--db <url>]',
  help: () => ['Changes nothing. Exits 1 if the store is damaged or its schema is not this version\'s, listing',
    'each problem. Also lists stored user ids that today\'s rule would refuse (never changed or deleted).',
    '', 'Options:', ...STORE_HELP].join('\n'),
  run: (args, ctx) => guarded('check', ctx, async () => {
    const { config, args: rest } = parse(args, ctx, {});
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
    checkStoreExists(config.database, 'existing', storeSource(ctx, args));
    const { checkStore } = await import('../storage/check.js');
    let report;
    try {
      report = await checkStore(config.database);
    } catch (err) {
      throw explained(config, err);
    }
    if (report.problems.length > 0) {
      for (const p of report.problems) ctx.io.stdout(`problem: ${p}\n`);
      throw new AppError('internal', `the store has ${report.problems.length} problem(s)`);
    }
    // Only a store at this version is opened, so that a check never migrates anything.
    const odd = await withStore(config, 'existing', storeSource(ctx, args), async (storage) => nonconformingIds(storage.storedUserIds()));
    for (const o of odd) ctx.io.stdout(noteOf(o));
    ctx.io.stdout(`the store is whole (schema version ${report.schemaVersion})\n`);
  }),
};

/** The store commands, for the command table. */
export function storeCommands(): Record<string, Command> {
  return { users, export: exportCommand, import: importCommand, backup, restore, migrate, check };
}
