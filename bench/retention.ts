/**
 * Send latency while retention prunes (a script, not a test): does a send during a large
 * prune wait past its normal latency? A store is filled with N old messages (spread over
 * many conversations, so every prune write repairs conversation rows too); then, on the
 * built server as a child process:
 *   1. baseline: a server without retention takes closed-loop sends for a few seconds;
 *   2. during a prune: a server with `POSTBOX_RETENTION=10s` (a period of 1 s) on the same
 *      store takes the same sends while its first run removes the N old messages; the run's
 *      start and end come from its log line, and only the sends issued inside that window
 *      count as "during".
 * Each send's latency is from just before the POST to its 201 (durable commit included).
 * The load generator shares the machine with the server (and PostgreSQL), so the figures
 * describe the machine at hand.
 *
 * Usage: npm run build && npx tsx bench/retention.ts [old=200000] [clients=4] [baselineSeconds=5] [--postgres]
 * PostgreSQL: POSTBOX_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres), a
 * role that may create databases; the database made for the run is dropped after it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { openPostgresStorage } from '../src/storage/postgres/postgres-storage.js';
import { openSqliteStorage } from '../src/storage/sqlite/sqlite-storage.js';
import type { ExportRecord, Storage } from '../src/storage/storage.js';
import { describeMachine } from './lib/machine.js';
import { createDatabase, dropDatabase, LOCAL_POSTGRES, postgresVersion } from './lib/postgres.js';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const postgres = process.argv.includes('--postgres');
const old = Number(args[0] ?? 200_000);
const clients = Number(args[1] ?? 4);
const baselineSeconds = Number(args[2] ?? 5);
const adminUrl = process.env.POSTBOX_BENCH_PG_URL ?? LOCAL_POSTGRES;

if (!existsSync('dist/cli/main.js')) throw new Error('no dist/: run `npm run build` first');

/** N messages 30 days old, over 1,000 recipients and 50 senders each. */
function oldMessages(n: number): AsyncIterable<ExportRecord> {
  const sentAt = new Date(Date.now() - 30 * 86_400_000).toISOString();
  function* records(): Generator<ExportRecord> {
    for (let i = 1; i <= n; i++) {
      yield { type: 'message', message: { id: String(i), fromUser: `s${i % 50}`, toUser: `r${i % 1000}`, message: `old message ${i}`, sentAt, readAt: null } };
    }
  }
  return Readable.from(records()) as AsyncIterable<ExportRecord>;
}

/** A running server and the log lines it wrote. */
interface Child {
  url: string;
  proc: ChildProcess;
  logs: Record<string, unknown>[];
  onLog: (fn: (line: Record<string, unknown>) => void) => void;
}

async function serve(db: string, env: Record<string, string>): Promise<Child> {
  const proc = spawn(process.execPath, ['dist/cli/main.js', 'serve'], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', DATABASE_URL: db, LOG_LEVEL: 'info', POSTBOX_RATE_LIMIT: '0', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const logs: Record<string, unknown>[] = [];
  const watchers: ((line: Record<string, unknown>) => void)[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    createInterface({ input: proc.stdout }).on('line', (text) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(line);
      for (const w of watchers) w(line);
      const m = typeof line.msg === 'string' ? /listening on (http:\/\/\S+)/.exec(line.msg) : null;
      if (m) resolve(m[1]!);
    });
  });
  return { url, proc, logs, onLog: (fn) => watchers.push(fn) };
}

async function stop(child: Child): Promise<void> {
  const exited = new Promise((r) => child.proc.once('exit', r));
  child.proc.kill('SIGTERM');
  await exited;
}

/** One send's start (wall clock, ms) and latency (ms). */
interface Sample {
  at: number;
  ms: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function send(url: string, i: number): Promise<Sample> {
  const body = JSON.stringify({ fromUser: `w${i % 20}`, toUser: `r${i % 1000}`, message: `bench ${i}` });
  const at = Date.now();
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v1/messages`, {
      method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume().on('end', () => {
        if (res.statusCode !== 201) reject(new Error(`send answered ${res.statusCode}`));
        else resolve({ at, ms: performance.now() - t0 });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Closed-loop clients sending until `done()` holds; answers every sample. */
async function load(url: string, done: () => boolean): Promise<Sample[]> {
  const samples: Sample[] = [];
  let n = 0;
  await Promise.all(Array.from({ length: clients }, async () => {
    while (!done()) samples.push(await send(url, n++));
  }));
  return samples;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function summary(label: string, samples: readonly Sample[]): string {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  const f = (x: number) => x.toFixed(2);
  return `| ${label} | ${ms.length} | ${f(quantile(ms, 0.5))} | ${f(quantile(ms, 0.99))} | ${f(ms[ms.length - 1] ?? NaN)} |`;
}

async function fill(open: () => Promise<Storage>): Promise<number> {
  const t0 = performance.now();
  const store = await open();
  try {
    await store.importAll(oldMessages(old));
  } finally {
    await store.close();
  }
  return (performance.now() - t0) / 1000;
}

const dir = await mkdtemp(join(tmpdir(), 'postbox-bench-retention-'));
const pgName = `postbox_bench_retention_${randomBytes(4).toString('hex')}`;
try {
  let db: string;
  let backend: string;
  let filled: number;
  if (postgres) {
    const url = await createDatabase(adminUrl, pgName);
    db = url;
    backend = `PostgreSQL ${await postgresVersion(adminUrl)}`;
    filled = await fill(() => openPostgresStorage({ url, durability: 'relaxed', poolSize: 2 }));
  } else {
    const path = join(dir, 'store.db');
    db = `sqlite:${path}`;
    backend = 'SQLite';
    filled = await fill(() => Promise.resolve(openSqliteStorage({ path, durability: 'relaxed' })));
  }
  process.stderr.write(`filled ${old} old messages in ${filled.toFixed(1)} s\n`);

  // 1. Baseline: no retention at all.
  const plain = await serve(db, {});
  // A second of warm-up first, so the baseline is not that of cold code.
  const warm = Date.now() + 1000;
  await load(plain.url, () => Date.now() > warm);
  const until = Date.now() + baselineSeconds * 1000;
  const baseline = await load(plain.url, () => Date.now() > until);
  await stop(plain);

  // 2. During a prune: the first run starts a period (1 s) after start.
  const pruning = await serve(db, { POSTBOX_RETENTION: '10s' });
  let run: { end: number; ms: number; removed: number } | undefined;
  pruning.onLog((line) => {
    if (line.msg === 'retention removed old messages' && run === undefined) {
      run = { end: Number(line.time), ms: Number(line.ms), removed: Number(line.removed) };
    }
  });
  const deadline = Date.now() + 30 * 60_000;
  let settledAt: number | undefined;
  const all = await load(pruning.url, () => {
    if (run && settledAt === undefined) settledAt = Date.now();
    if (Date.now() > deadline) throw new Error('the prune did not finish within 30 minutes');
    return settledAt !== undefined && Date.now() > settledAt + 500;
  });
  await stop(pruning);
  const r = run!;
  const start = r.end - r.ms;
  const during = all.filter((s) => s.at >= start && s.at <= r.end);
  const before = all.filter((s) => s.at < start);

  const machine = describeMachine();
  const lines = [
    `Backend: ${backend}; ${old} old messages (filled in ${filled.toFixed(1)} s); ${clients} closed-loop clients; durability fsync.`,
    `Machine: ${machine.cpus} CPUs, ${machine.cpuModel}; ${machine.memory}; disk ${machine.disk}; ${machine.kernel}; Node ${machine.node}; SQLite ${machine.sqlite}; load ${machine.loadAverage}.`,
    `Prune: removed ${r.removed} in ${(r.ms / 1000).toFixed(1)} s (${Math.round(r.removed / (r.ms / 1000))} messages/s).`,
    '',
    '| Sends | count | p50 ms | p99 ms | max ms |',
    '|---|---|---|---|---|',
    summary(`no prune (${baselineSeconds} s, own server)`, baseline),
    summary('same server, before the run', before),
    summary('during the prune', during),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  agent.destroy();
  if (postgres) await dropDatabase(adminUrl, pgName).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}
