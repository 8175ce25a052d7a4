/**
 * The servers under load, each in its own process: the ceiling (bench/ceiling.ts) and
 * Postbox as users run it (`node dist/cli/main.js serve`), optionally pinned to one CPU.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import type { DatasetSpec } from './dataset.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const POSTBOX_CLI = `${ROOT}dist/cli/main.js`;
/** The ceiling's sources, and where each goes in its build (the imports already say .js). */
const CEILING_SOURCES: readonly [string, string][] = [
  [fileURLToPath(new URL('../ceiling.ts', import.meta.url)), 'ceiling.js'],
  [fileURLToPath(new URL('./dataset.ts', import.meta.url)), 'lib/dataset.js'],
];

/**
 * Compiles the ceiling to plain JavaScript in `outDir` and answers its entry file.
 *
 * It then runs on bare `node`, as Postbox runs from dist/: under tsx, Node 20 would run a
 * module-loader thread beside it, and its memory and start-up would be counted against the
 * ceiling.
 */
export function buildCeiling(outDir: string): string {
  for (const [source, target] of CEILING_SOURCES) {
    const out = ts.transpileModule(readFileSync(source, 'utf8'), {
      fileName: source,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
    });
    const path = join(outDir, target);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, out.outputText);
  }
  writeFileSync(join(outDir, 'package.json'), '{"type":"module"}\n');
  return join(outDir, 'ceiling.js');
}

/** A server process under test. */
export interface RunningTarget {
  pid: number;
  baseUrl: string;
  /** Where its stdout and stderr go. */
  logPath: string;
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Asks the kernel for a free loopback port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      s.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function tail(path: string, lines = 30): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** How to start one server process. */
interface Launch {
  nodeArgs: string[];
  env: Record<string, string>;
  logPath: string;
  /** Pins the process (every thread of it) to this CPU with taskset. */
  cpu?: number;
  /** The URL path that answers 200 once it is ready. */
  readyPath: string;
  port: number;
  /** How long it may take to be ready (loading a million messages takes a while). */
  startTimeoutMs: number;
}

async function launch(l: Launch): Promise<RunningTarget> {
  const node = [process.execPath, ...l.nodeArgs];
  // taskset execs the program, so the child's pid is the server's pid.
  const [cmd, ...args] = l.cpu === undefined ? node : ['taskset', '-c', String(l.cpu), ...node];
  const log = createWriteStream(l.logPath);
  await once(log, 'open');
  const child: ChildProcess = spawn(cmd!, args, { cwd: ROOT, env: { ...process.env, ...l.env }, stdio: ['ignore', log, log] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  const baseUrl = `http://127.0.0.1:${l.port}`;

  const stop = async (graceMs = 15_000) => {
    if (!gone) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }
    log.end();
  };

  const deadline = Date.now() + l.startTimeoutMs;
  for (;;) {
    if (gone) {
      log.end();
      throw new Error(`the server exited before it was ready; its log (${l.logPath}) ends:\n${tail(l.logPath)}`);
    }
    try {
      const res = await fetch(`${baseUrl}${l.readyPath}`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await stop(2000);
      throw new Error(`the server was not ready within ${l.startTimeoutMs} ms; its log (${l.logPath}) ends:\n${tail(l.logPath)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { pid: child.pid!, baseUrl, logPath: l.logPath, stop };
}

/** Options shared by every target. */
export interface TargetOptions {
  logPath: string;
  cpu?: number;
  /** Writes V8 CPU profiles (one per thread) into this directory. */
  cpuProfileDir?: string;
}

function profileArgs(dir: string | undefined): string[] {
  return dir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${dir}`];
}

/** Starts the ceiling (`script`, from {@link buildCeiling}) with `dataset` loaded in memory. */
export async function startCeiling(script: string, dataset: DatasetSpec, o: TargetOptions): Promise<RunningTarget> {
  const port = await freePort();
  return launch({
    nodeArgs: [...profileArgs(o.cpuProfileDir), script, '--port', String(port), '--dataset', JSON.stringify(dataset)],
    env: {},
    logPath: o.logPath,
    cpu: o.cpu,
    readyPath: '/healthz',
    port,
    startTimeoutMs: 120_000,
  });
}

/**
 * Starts the built Postbox on `databaseUrl` with its default settings, except those a
 * benchmark must change: a port of its own, quiet logs, and no rate limit (the default
 * 6000 a minute per client address would answer 429 within the first second).
 */
export async function startPostbox(databaseUrl: string, o: TargetOptions): Promise<RunningTarget> {
  const port = await freePort();
  return launch({
    nodeArgs: [...profileArgs(o.cpuProfileDir), POSTBOX_CLI, 'serve'],
    env: {
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: databaseUrl,
      LOG_LEVEL: 'warn',
      POSTBOX_RATE_LIMIT: '0',
      POSTBOX_DURABILITY: 'fsync',
      POSTBOX_AUTH: 'open',
    },
    logPath: o.logPath,
    cpu: o.cpu,
    readyPath: '/readyz',
    port,
    startTimeoutMs: 60_000,
  });
}

/** True when `npm run build` has produced the server the benchmark runs. */
export function postboxBuilt(): boolean {
  try {
    readFileSync(POSTBOX_CLI);
    return true;
  } catch {
    return false;
  }
}
