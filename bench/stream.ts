/**
 * Live delivery figures (a script, not a test):
 *  1. latency from send to event: S subscribers (one stream each, on its own user), and
 *     messages sent at R per second to random subscribers; each latency runs from just
 *     before the POST to the event's arrival, so it includes the durable commit;
 *  2. server memory with N idle streams open.
 * The built server (dist/) runs as a child process with default settings.
 *
 * Usage: npx tsx bench/stream.ts [subscribers=1000] [rate=1000] [seconds=10] [idle=10000]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStreams, subscribe } from './lib/sse.js';

const subscribers = Number(process.argv[2] ?? 1000);
const rate = Number(process.argv[3] ?? 1000);
const seconds = Number(process.argv[4] ?? 10);
const idle = Number(process.argv[5] ?? 10_000);

function rssMb(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

async function startServer(dir: string) {
  const child = spawn(process.execPath, ['dist/cli/main.js', 'serve'], {
    env: {
      ...process.env, PORT: '0', HOST: '127.0.0.1', DATABASE_URL: `sqlite:${join(dir, 'p.db')}`,
      LOG_LEVEL: 'info', POSTBOX_RATE_LIMIT: '0', POSTBOX_STREAMS_MAX: String(Math.max(20_000, idle + 100)),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      const m = /listening on (http:\/\/[^"\s]+)/.exec(d.toString());
      if (m) resolve(m[1]!);
    });
  });
  return { child, url };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
function post(url: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v1/messages`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 201 ? resolve() : reject(new Error(`send: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function latencyRun(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'postbox-stream-'));
  const { child, url } = await startServer(dir);
  try {
    const latencies: number[] = [];
    const streams: http.ClientRequest[] = [];
    for (let i = 0; i < subscribers; i += 100) {
      streams.push(...await Promise.all(Array.from({ length: Math.min(100, subscribers - i) }, (_, k) =>
        subscribe(url, `sub${i + k}`, (data) => {
          const sentAt = Number((JSON.parse(data) as { message: string }).message);
          latencies.push(performance.now() - sentAt);
        }))));
    }
    while ((await openStreams(url)) < subscribers) await new Promise((r) => setTimeout(r, 50));
    const total = rate * seconds;
    const started = performance.now();
    const sends: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      // Paced against the clock, so a slow moment is followed by catching up, as real load is.
      const due = started + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const to = `sub${Math.floor(Math.random() * subscribers)}`;
      sends.push(post(url, JSON.stringify({ fromUser: 'bench', toUser: to, message: String(performance.now()) })));
    }
    await Promise.all(sends);
    const achieved = total / ((performance.now() - started) / 1000);
    const deadline = Date.now() + 10_000;
    while (latencies.length < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    latencies.sort((a, b) => a - b);
    console.log(`delivery: ${subscribers} subscribers, ${total} messages at ${achieved.toFixed(0)}/s (asked ${rate}/s); ` +
      `received ${latencies.length}`);
    console.log(`  send → event latency: p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms, ` +
      `max ${latencies[latencies.length - 1]?.toFixed(2)} ms; server RSS ${rssMb(child.pid!).toFixed(1)} MB`);
    for (const s of streams) s.destroy();
  } finally {
    child.kill('SIGTERM');
    agent.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}

async function idleRun(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'postbox-idle-'));
  const { child, url } = await startServer(dir);
  try {
    const baseline = rssMb(child.pid!);
    const streams: http.ClientRequest[] = [];
    for (let i = 0; i < idle; i += 200) {
      streams.push(...await Promise.all(Array.from({ length: Math.min(200, idle - i) }, (_, k) =>
        subscribe(url, `idle${i + k}`, () => undefined))));
    }
    while ((await openStreams(url)) < idle) await new Promise((r) => setTimeout(r, 50));
    // Let the allocations of setting them up settle before reading memory.
    await new Promise((r) => setTimeout(r, 2000));
    const withStreams = rssMb(child.pid!);
    console.log(`idle streams: ${idle} open; server RSS ${baseline.toFixed(1)} MB before, ${withStreams.toFixed(1)} MB with them ` +
      `(${(((withStreams - baseline) * 1024) / idle).toFixed(1)} KB a stream)`);
    for (const s of streams) s.destroy();
  } finally {
    child.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }
}

await latencyRun();
if (idle > 0) await idleRun();
