/**
 * Runs wrk, the load generator, and reads its figures.
 *
 * wrk is required: a different load generator gives different figures, so the harness
 * stops with the way to install it rather than falling back to something else.
 */
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cpuSeconds } from './proc.js';

const SCRIPT = fileURLToPath(new URL('../wrk/scenario.lua', import.meta.url));

/** What one wrk run measured. Latencies in microseconds. */
export interface WrkResult {
  requests: number;
  durationUs: number;
  bytes: number;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  /** Answers whose status was not 2xx or 3xx. */
  statusErrors: number;
  timeouts: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  meanUs: number;
  /** In a mix (a follow-up read after each send): the answered sends and reads, counted apart. */
  mix?: { sends: number; reads: number };
  /**
   * CPU wrk used, as a percentage of one CPU (read from /proc every 200 ms while it ran).
   * Near 100% means the load generator, not the server, may be what limits the figure.
   */
  cpuPercent: number;
}

/** Requests a second over the run. */
export function rps(r: WrkResult): number {
  return r.durationUs > 0 ? r.requests / (r.durationUs / 1e6) : 0;
}

/** Every failed request of a run (socket errors, timeouts, non-2xx/3xx answers). */
export function errorCount(r: WrkResult): number {
  return r.connectErrors + r.readErrors + r.writeErrors + r.statusErrors + r.timeouts;
}

/** wrk's version line, or null when wrk is not installed. */
export function wrkVersion(): string | null {
  const out = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  if (out.error) return null;
  const line = `${out.stdout}${out.stderr}`.split('\n')[0]?.trim() ?? '';
  return /^wrk /.test(line) ? line.replace(/\s*Copyright.*$/, '') : null;
}

/** The message shown when wrk is missing. */
export const WRK_MISSING = [
  'wrk is not installed, and the benchmark needs it: its figures come from wrk and are not',
  'comparable with another load generator\'s, so there is no fallback.',
  'Install it with:  apt-get install -y wrk   (Debian/Ubuntu; `brew install wrk` on macOS)',
].join('\n');

/** One load run against `url` + `path`. */
export interface WrkOptions {
  baseUrl: string;
  method: 'GET' | 'POST';
  path: string;
  /** Makes the run a mix: after each answered send, a GET of this path, `{user}` being its recipient. */
  followUp?: string;
  connections: number;
  seconds: number;
  /** Runs wrk under `taskset -c CPU` when given. */
  cpu?: number;
}

/** Runs wrk once; rejects if it fails or prints no result. */
export function runWrk(o: WrkOptions): Promise<WrkResult> {
  const wrkArgs = [
    '-t1', `-c${o.connections}`, `-d${o.seconds}s`, '--latency', '--timeout', '10s',
    '-s', SCRIPT, o.baseUrl, '--', o.method, o.path, ...(o.followUp === undefined ? [] : [o.followUp]),
  ];
  const [cmd, args] = o.cpu === undefined ? ['wrk', wrkArgs] : ['taskset', ['-c', String(o.cpu), 'wrk', ...wrkArgs]];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    // taskset execs wrk, so the child's pid is wrk's.
    const started = performance.now();
    let cpu = { seconds: 0, at: started };
    const timer = setInterval(() => {
      const seconds = cpuSeconds(child.pid ?? -1);
      if (Number.isFinite(seconds)) cpu = { seconds, at: performance.now() };
    }, 200);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      const line = /^BENCH_RESULT (.*)$/m.exec(out);
      if (code !== 0 || !line) {
        reject(new Error(`wrk failed (exit ${code}):\n${out}`));
        return;
      }
      const elapsed = (cpu.at - started) / 1000;
      const cpuPercent = elapsed > 0 ? (100 * cpu.seconds) / elapsed : NaN;
      resolve({ ...(JSON.parse(line[1]!) as Omit<WrkResult, 'cpuPercent'>), cpuPercent });
    });
  });
}
