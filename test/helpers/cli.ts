/**
 * The `postbox` command line run in this process through `runCli`, with its standard
 * streams captured: what the executable does, without paying a process start (and tsx's
 * compile) per call. Only a test about the process itself (exit on a signal, the bin file)
 * spawns the real executable.
 */
import { Readable, Writable } from 'node:stream';
import { runCli } from '../../src/cli/cli.js';

/** The outcome of one command line. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link cli}. */
export interface CliOptions {
  /** Standard input (for `import` without a file); empty by default. */
  input?: string;
  /** The terminal's width; undefined for "not a terminal", like a pipe. */
  columns?: number;
  /** Stops a long-running command (`inbox --follow`), as Ctrl-C would. */
  signal?: AbortSignal;
  /** Called with everything written to stdout so far, after each write (to await output). */
  onStdout?: (stdout: string) => void;
}

/**
 * Runs `postbox ...args` with exactly `env` as its environment: nothing of the test
 * process's own variables leaks in.
 */
export async function cli(args: string[], env: Record<string, string> = {}, options: CliOptions = {}): Promise<CliRun> {
  const run: CliRun = { code: -1, stdout: '', stderr: '' };
  const out = (text: string) => {
    run.stdout += text;
    options.onStdout?.(run.stdout);
  };
  const output = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      out(chunk.toString());
      done();
    },
  });
  const ctx = {
    stdout: out,
    stderr: (text: string) => (run.stderr += text),
    columns: options.columns,
    output,
    input: Readable.from(options.input === undefined ? [] : [options.input]),
  };
  run.code = await runCli(args, env, ctx, options.signal);
  return run;
}
