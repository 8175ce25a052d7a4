/**
 * Postbox as a real child process (`postbox serve`), for restart and `kill -9` tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

/** A server running in its own process. */
export interface ChildServer {
  process: ChildProcess;
  url: string;
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Output lines so far (stdout and stderr). */
  output: string[];
}

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;

const alive = new Set<ChildProcess>();
let guarding = false;

/**
 * Makes `child` die with this test process: at its exit, and when the runner cancels the
 * file (it sends SIGTERM, whose default action would skip exit handlers and leave the child,
 * a listening server perhaps, running). Answers the child.
 */
export function dieWithTest<T extends ChildProcess>(child: T): T {
  alive.add(child);
  child.once('exit', () => alive.delete(child));
  if (!guarding) {
    guarding = true;
    const killAll = () => {
      for (const c of alive) c.kill('SIGKILL');
    };
    process.once('exit', killAll);
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
      process.once(signal, () => {
        killAll();
        process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGHUP' ? 1 : 15));
      });
    }
  }
  return child;
}

/**
 * Starts `postbox serve` with `env`, resolving once it says where it listens. `nodeArgs` go
 * to node before the CLI (a test's own `--import` preload, say).
 */
export async function spawnServer(
  env: Record<string, string>,
  args: string[] = [],
  options: { nodeArgs?: string[] } = {},
): Promise<ChildServer> {
  const nodeArgs = ['--import', 'tsx', ...(options.nodeArgs ?? [])];
  const child = dieWithTest(spawn(process.execPath, [...nodeArgs, CLI, 'serve', ...args], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  const output: string[] = [];
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  const url = await new Promise<string>((resolve, reject) => {
    const onLine = (line: string) => {
      output.push(line);
      const m = /Postbox listening on (http:\/\/[^"\s]+)/.exec(line);
      if (m) resolve(m[1]!);
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', onLine);
    void exited.then((e) => reject(new Error(`server exited before listening (${JSON.stringify(e)}):\n${output.join('\n')}`)));
  });
  return { process: child, url, exited, output };
}
