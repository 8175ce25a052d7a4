/**
 * The `postbox` command line: a table of commands, each with its own `--help`.
 *
 * Output to a person goes to stdout/stderr directly: it is the program's answer, not logging.
 */
import type { Readable, Writable } from 'node:stream';
import { settingsHelp } from '../config.js';
import { packageVersion } from '../version.js';
import { clientCommands } from './client-commands.js';
import { storeCommands } from './store-commands.js';

/** Where a command reads and writes: the process's standard streams, or a test's. */
export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Width of the terminal stdout writes to; undefined when it is not a terminal. */
  columns?: number | undefined;
  /** Standard output as a stream, for output too large to hold (`export`); the same place `stdout` writes. */
  output: Writable;
  /** Standard input (`import` without a file). */
  input: Readable;
}

/** The process's own standard streams. */
export function processIO(): CliIO {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    columns: process.stdout.isTTY ? process.stdout.columns : undefined,
    output: process.stdout,
    input: process.stdin,
  };
}

/** What every command receives. */
export interface CliContext {
  env: Readonly<Record<string, string | undefined>>;
  io: CliIO;
  /** Stops a long-running command (`inbox --follow`); without it, such a command stops on Ctrl-C. */
  signal?: AbortSignal;
}

/** One command of the table. */
export interface Command {
  summary: string;
  usage: string;
  /** Extra help below the usage line. */
  help?: () => string;
  run: (args: string[], ctx: CliContext) => Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  serve: {
    summary: 'run the server (what npm start runs)',
    usage: 'postbox serve [options]',
    help: () => `Every setting can be given as a flag or an environment variable; flags win.\n\n${settingsHelp()}`,
    // Loaded only here: the other commands should not pay for Fastify and the server's start-up.
    run: async (args, ctx) => (await import('../main.js')).runServer(args, ctx.env, ctx.io),
  },
  ...clientCommands(),
  ...storeCommands(),
};

function overview(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'postbox: a self-hosted messaging API',
    '',
    'Usage: postbox <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run "postbox <command> --help" for the options of one command, "postbox --version" for the version.',
    'Client commands read POSTBOX_URL (default http://localhost:8080) and POSTBOX_TOKEN.',
    '',
  ].join('\n');
}

/**
 * Runs one command line; resolves with the process exit code. `signal` stops a
 * long-running command (an embedder's or a test's Ctrl-C).
 */
export async function runCli(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: CliIO = processIO(),
  signal?: AbortSignal,
): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(overview());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    io.stdout(`${packageVersion()}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.stderr(`postbox: unknown command "${name}"\n\n${overview()}`);
    return 2;
  }
  if (args.includes('--help') || args.includes('-h')) {
    io.stdout(`Usage: ${command.usage}\n\n${command.summary}\n${command.help ? `\n${command.help()}\n` : ''}`);
    return 0;
  }
  return command.run(args, { env, io, ...(signal ? { signal } : {}) });
}
