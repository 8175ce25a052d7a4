/**
 * Live delivery across instances (a script, not a test): two built servers as child
 * processes on one PostgreSQL database made for the run (and dropped after it). Every
 * subscriber user has one stream on instance B and one on instance A; messages go through A
 * at a fixed rate, each to a random subscriber. Each message thus yields two latencies, from
 * just before the POST to the event's arrival (durable commit included):
 *   - across instances: the event on B, which hears A's commit through LISTEN/NOTIFY;
 *   - within one instance: the event on A, measured at the same moment under the same load.
 * Both servers, PostgreSQL and this load generator share the machine, so the figures are an
 * upper bound for the machine at hand, not Postbox's own cost.
 *
 * Usage: npm run build && npx tsx bench/multi-instance.ts [subscribers=200] [rate=500] [seconds=10]
 * PostgreSQL: POSTBOX_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres), a
 * role that may create databases.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { openStreams, subscribe } from './lib/sse.js';

const subscribers = Number(process.argv[2] ?? 200);
const rate = Number(process.argv[3] ?? 500);
const seconds = Number(process.argv[4] ?? 10);
const adminUrl = process.env.POSTBOX_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/** Sent before measuring, so the first figures are not those of cold connections and code. */
const WARMUP_SECONDS = 1;

const CLI = 'dist/cli/main.js';
if (!existsSync(CLI)) {
  console.error(`${CLI} is missing: run \`npm run build\` first`);
  process.exit(1);
}

/** Runs one statement on the maintenance connection (CREATE/DROP DATABASE cannot run in a transaction). */
async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

interface Child {
  name: string;
  process: ChildProcess;
  url: string;
  exited: Promise<void>;
}

/** Starts `postbox serve` on `databaseUrl`, resolving once it says where it listens. */
function startServer(name: string, databaseUrl: string): Promise<Child> {
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: {
      ...process.env, PORT: '0', HOST: '127.0.0.1', DATABASE_URL: databaseUrl, LOG_LEVEL: 'info',
      POSTBOX_RATE_LIMIT: '0', POSTBOX_STREAMS_MAX: String(Math.max(20_000, subscribers + 100)),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const output: string[] = [];
  return new Promise((resolve, reject) => {
    const onLine = (line: string) => {
      if (output.length < 200) output.push(line);
      const m = /Postbox listening on (http:\/\/[^"\s]+)/.exec(line);
      if (m) resolve({ name, process: child, url: m[1]!, exited });
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', onLine);
    void exited.then(() => reject(new Error(`${name} exited before listening:\n${output.join('\n')}`)));
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
/** Posts one message; resolves with the time to the answer, rejects on anything but 201. */
function post(url: string, body: string): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v1/messages`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 201 ? resolve(performance.now() - started) : reject(new Error(`send: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function summary(values: number[]): string {
  const sorted = [...values].sort((x, y) => x - y);
  return `p50 ${percentile(sorted, 50).toFixed(2)} ms, p99 ${percentile(sorted, 99).toFixed(2)} ms, ` +
    `max ${(sorted[sorted.length - 1] ?? NaN).toFixed(2)} ms`;
}

/** Sends `count` messages through `url` at `rate` a second, paced against the clock so a stall is followed by catching up. */
async function paced(url: string, count: number, phase: 'w' | 'm', acks: number[], failures: string[]): Promise<number> {
  const started = performance.now();
  const sends: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const wait = started + (i * 1000) / rate - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const to = `sub${Math.floor(Math.random() * subscribers)}`;
    const text = `${phase}:${performance.now()}`;
    sends.push(post(url, JSON.stringify({ fromUser: 'bench', toUser: to, message: text })).then(
      (ms) => {
        if (phase === 'm') acks.push(ms);
      },
      (err: unknown) => {
        failures.push(String(err));
      },
    ));
  }
  await Promise.all(sends);
  return count / ((performance.now() - started) / 1000);
}

const database = `pbbench_${randomBytes(5).toString('hex')}`;
const databaseUrl = (() => {
  const u = new URL(adminUrl);
  u.pathname = `/${database}`;
  return u.toString();
})();

await admin(`CREATE DATABASE ${database}`);
const children: Child[] = [];
const streams: http.ClientRequest[] = [];
try {
  // Started together, as a fleet would be: they migrate the empty database between them.
  const started = await Promise.allSettled([startServer('A', databaseUrl), startServer('B', databaseUrl)]);
  for (const s of started) if (s.status === 'fulfilled') children.push(s.value);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
  const [a, b] = children as [Child, Child];

  const across: number[] = [];
  const within: number[] = [];
  const record = (into: number[]) => (data: string) => {
    const text = (JSON.parse(data) as { message: string }).message;
    if (text.startsWith('m:')) into.push(performance.now() - Number(text.slice(2)));
  };
  for (let i = 0; i < subscribers; i += 100) {
    const batch = Array.from({ length: Math.min(100, subscribers - i) }, (_, k) => `sub${i + k}`);
    streams.push(...await Promise.all(batch.flatMap((user) => [subscribe(b.url, user, record(across)), subscribe(a.url, user, record(within))])));
  }
  while ((await openStreams(a.url)) < subscribers || (await openStreams(b.url)) < subscribers) {
    await new Promise((r) => setTimeout(r, 50));
  }

  const failures: string[] = [];
  const load = loadavg();
  await paced(a.url, Math.round(rate * WARMUP_SECONDS), 'w', [], failures);
  const acks: number[] = [];
  const total = Math.round(rate * seconds);
  const achieved = await paced(a.url, total, 'm', acks, failures);
  const deadline = Date.now() + 10_000;
  while ((across.length < acks.length || within.length < acks.length) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const after = loadavg();

  console.log(`two instances on one PostgreSQL database: ${subscribers} subscribers with a stream on each instance; ` +
    `${total} messages through A over ${seconds} s at ${achieved.toFixed(0)}/s (asked ${rate}/s), after ${WARMUP_SECONDS} s of warm-up`);
  console.log(`  sends answered 201: ${acks.length}; failed: ${failures.length}${failures.length ? ` (first: ${failures[0]})` : ''}`);
  console.log(`  send → event, across instances (stream on B): ${summary(across)}; received ${across.length}`);
  console.log(`  send → event, within one instance (stream on A): ${summary(within)}; received ${within.length}`);
  console.log(`  send → 201 answer on A: ${summary(acks)}`);
  console.log(`  machine: ${cpus().length} cores, load average ${load[0]!.toFixed(2)} before and ${after[0]!.toFixed(2)} after ` +
    '(both servers, PostgreSQL and this generator share it)');
} finally {
  for (const s of streams) s.destroy();
  agent.destroy();
  for (const c of children) c.process.kill('SIGTERM');
  await Promise.all(children.map((c) => c.exited));
  await admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
}
